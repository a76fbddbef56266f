"""On CUDA: configs/debug.yaml trained for a few dozen steps under each precision (and with the whole step
as one CUDA graph), resumed from its checkpoint, and sampled on CUDA and on the CPU.

Marked `cuda`: skipped, with the reason shown, without a GPU; `pytest -m cuda` on a GPU machine runs them
(bench/gpu_check.py does, and reads the figures each one records: validation loss, characters/s).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
import torch

from charrnn.ckpt.load import read_checkpoint, read_model
from charrnn.cli import cli_main
from charrnn.events import read_scalars
from charrnn.sampling import encode_prime, generate_text
from tests.support.paths import ROOT

DEBUG = str(ROOT / "configs" / "debug.yaml")
FIRST, RESUMED = 40, 60  # steps of the first run, and where the resumed run stops


def fit(corpus: Path, device: str, precision: str, cuda_graph: bool, *extra: str):
    return cli_main(["fit", "--config", DEBUG, "--data.input_txt", str(corpus), "--data.url", "null",
                     "--trainer.accelerator", "gpu" if device == "cuda" else "cpu", "--trainer.devices", "1",
                     "--trainer.precision", precision, "--model.cuda_graph", str(cuda_graph).lower(),
                     "--trainer.val_check_interval", "20", "--trainer.enable_progress_bar", "false", *extra])


@pytest.mark.cuda
@pytest.mark.parametrize(("precision", "cuda_graph"), [("16-mixed", False), ("bf16-mixed", False),
                                                       ("32-true", False), ("32-true", True)],
                         ids=["16-mixed", "bf16-mixed", "32-true", "32-true-graph"])
def test_trains_resumes_and_samples(precision, cuda_graph, cuda_device, shakespeare, tmp_path, monkeypatch,
                                    record_property):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    cli = fit(shakespeare, cuda_device, precision, cuda_graph, "--trainer.max_steps", str(FIRST))
    assert cli.trainer.global_step == FIRST
    assert cli.trainer.strategy.root_device.type == cuda_device
    first_val = float(cli.trainer.callback_metrics["val/loss"])
    assert math.isfinite(first_val) and first_val < math.log(len(cli.model.vocab))  # learnt something

    last = tmp_path / "checkpoints" / "debug" / "last.ckpt"
    assert read_checkpoint(last)["global_step"] == FIRST
    cli = fit(shakespeare, cuda_device, precision, cuda_graph, "--trainer.max_steps", str(RESUMED),
              "--ckpt_path", "last")
    assert cli.trainer.global_step == RESUMED and read_checkpoint(last)["global_step"] == RESUMED
    val = float(cli.trainer.callback_metrics["val/loss"])
    assert math.isfinite(val) and val < first_val + 0.05  # the resumed run went on from where it was

    # The same checkpoint on CUDA and on the CPU: the same next-character distribution, and text.
    nets = {device: read_model(last, device).net for device in (cuda_device, "cpu")}
    vocab = read_model(last).vocab
    prime = torch.tensor([encode_prime(vocab, "First Citizen:\n")])
    logits = {device: net(prime.to(device))[0][0, -1].float().cpu() for device, net in nets.items()}
    torch.testing.assert_close(logits[cuda_device], logits["cpu"], atol=2e-2, rtol=2e-2)  # cuDNN may use TF32
    for device, net in nets.items():
        texts = generate_text(net, vocab, "First", 100, num_samples=2, seed=0)
        assert [len(t) for t in texts] == [100, 100] and set("".join(texts)) <= set(vocab.tokens), device

    rates = [p.value for p in read_scalars(tmp_path / "lightning_logs" / "version_0")["train/chars_per_sec"]]
    record_property("val_loss", round(val, 5))
    record_property("chars_per_sec", round(statistics.median(rates)))
    record_property("device", torch.cuda.get_device_name() if cuda_device == "cuda" else "cpu")
