"""What a run shows: TensorBoard scalars, hparams and samples, the console, and the loss plot."""

from __future__ import annotations

import math

from charrnn.callbacks.text_samples import as_markdown_code
from charrnn.events import read_scalars, read_texts
from charrnn.plot import main as plot_main


def test_tensorboard_has_every_scalar(debug_run):
    scalars = read_scalars(debug_run / "lightning_logs" / "version_0")
    for tag in ("train/loss", "train/bpc", "val/loss", "val/bpc", "lr-AdamW", "train/grad_norm",
                "train/chars_per_sec", "hp_metric"):
        assert scalars.get(tag), f"{tag} missing; have {sorted(scalars)}"
    loss, bpc = scalars["val/loss"][-1].value, scalars["val/bpc"][-1].value
    assert math.isclose(bpc, loss / math.log(2), rel_tol=1e-5)
    assert all(p.value > 0 for p in scalars["train/chars_per_sec"] + scalars["train/grad_norm"])
    # hp_metric ends as the best validation loss (Lightning's placeholder -1 comes first)
    assert math.isclose(scalars["hp_metric"][-1].value, min(p.value for p in scalars["val/loss"]), rel_tol=1e-6)


def test_samples_are_printed_and_logged_as_verbatim_text(debug_run):
    out = (debug_run / "stdout.txt").read_text()
    assert "----- sample at step 15 -----" in out and "----- sample at step 30 -----" in out
    texts = read_texts(debug_run / "lightning_logs" / "version_0")
    assert [step for step, _ in texts] == [15, 30]
    assert all(line.startswith("    ") for line in texts[0][1].split("\n"))


def test_markdown_escaping_keeps_text_verbatim():
    assert as_markdown_code("# not a heading\n*not bold*") == "    # not a heading\n    *not bold*"


def test_fit_ends_by_pointing_at_the_best_checkpoint(debug_run):
    out = (debug_run / "stdout.txt").read_text()
    assert "Best checkpoint:" in out and "best-step=" in out and "python sample.py --ckpt" in out


def test_plot_writes_a_png(debug_run, tmp_path):
    out = tmp_path / "loss.png"
    assert plot_main([str(debug_run / "lightning_logs" / "version_0"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_plot_explains_a_missing_directory(tmp_path, capsys):
    assert plot_main([str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
