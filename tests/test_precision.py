"""Mixed precision on CPU: an LSTM trains, resumes and samples under bf16 autocast on this CPU and on an
AVX2-only one (whose oneDNN has no bfloat16 LSTM kernel, so the LSTM layers run in float32)."""

from __future__ import annotations

import json
import math

import pytest

from charrnn.kernel_choice import lowp_lstm_runs
from tests.support.ddp import TIMEOUT, record, train_args
from tests.support.paths import ROOT
from tests.support.processes import AVX2_ONLY, run_ok
from tests.support.texts import TINY_TEXT

FLOAT32_LSTM = "the LSTM layers run in float32"


@pytest.mark.parametrize("cpu", ["this CPU", "AVX2 only"])
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_an_lstm_trains_resumes_and_samples_in_mixed_precision(tmp_path, precision, cpu):
    extra_env = AVX2_ONLY if cpu == "AVX2 only" else {}
    float32_lstm = cpu == "AVX2 only" or not lowp_lstm_runs()
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    flags = ["--model.model_type", "lstm", "--trainer.precision", precision, "--checkpoint.every_n_train_steps", "6"]
    first = run_ok(train_args(*flags, "--trainer.max_steps", "6", *record("rec1"), ddp=False), tmp_path, TIMEOUT,
                   extra_env)
    again = run_ok(train_args(*flags, "--trainer.max_steps", "12", "--ckpt_path", "last", *record("rec2"),
                              ddp=False), tmp_path, TIMEOUT, extra_env)
    for proc, out_dir, steps in ((first, "rec1", 6), (again, "rec2", 6)):
        rec = json.loads((tmp_path / out_dir / "rank0.json").read_text())
        assert rec["precision"] == "bf16-mixed"  # on a CPU Lightning runs 16-mixed as bf16-mixed
        assert len(rec["losses"]) == steps and all(math.isfinite(v) for v in rec["losses"] + rec["val_losses"])
        assert (FLOAT32_LSTM in proc.stderr) == float32_lstm
    assert rec["losses"][-1] < json.loads((tmp_path / "rec1" / "rank0.json").read_text())["losses"][0]
    ckpt = tmp_path / "checkpoints" / "debug" / "last.ckpt"
    out = run_ok([str(ROOT / "sample.py"), "--ckpt", str(ckpt), "--start_text", "First", "--length", "40",
                  "--seed", "0"], tmp_path, TIMEOUT, extra_env).stdout
    assert out.startswith("First") and len(out) == len("First") + 40 + 1  # the start, 40 new characters, a newline
