"""Mixed precision on CPU: bf16 autocast trains to a finite loss and its checkpoint samples."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers import ROOT, TINY_TEXT
from tests.test_ddp import launch_ok, record, train_args


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_and_its_checkpoint_samples(tmp_path, precision):
    (tmp_path / "tiny.txt").write_text(TINY_TEXT)
    proc = launch_ok(train_args("--trainer.precision", precision, "--trainer.max_steps", "12", *record(),
                                ddp=False), tmp_path)
    rec = json.loads((tmp_path / "rec" / "rank0.json").read_text())
    # On a CPU Lightning runs 16-mixed as bf16-mixed (float16 autocast is for CUDA).
    assert rec["precision"] == "bf16-mixed"
    if precision == "16-mixed":
        assert "bf16-mixed" in proc.stderr
    assert len(rec["losses"]) == 12 and all(math.isfinite(v) for v in rec["losses"] + rec["val_losses"])
    assert rec["losses"][-1] < rec["losses"][0]
    ckpt = tmp_path / "checkpoints" / "debug" / "last.ckpt"
    out = launch_ok([str(ROOT / "sample.py"), "--ckpt", str(ckpt), "--start_text", "First", "--length", "40",
                     "--seed", "0"], tmp_path).stdout
    assert out.startswith("First") and len(out.rstrip("\n")) >= 40
