"""Speed choices measured on the machine: the choice logic with timings given (so it is covered on every
CPU), the AVX2-only switches the other tests rely on, and the server's float/int8 measurement."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest
import torch

from charrnn import precision
from charrnn.kernel_choice import Choice, choose, cpu_features, time_alternating
from charrnn.model import CharRNN
from charrnn.net import CharRNNNet
from charrnn.net_spec import Architecture
from charrnn.stepper import choose_products
from tests.support.paths import ROOT
from tests.support.processes import AVX2_ONLY


def test_the_default_stays_unless_another_candidate_is_clearly_faster():
    assert choose({"float": 1.0, "int8": 0.9}, default="float").chosen == "float"  # within the noise margin
    assert choose({"float": 1.0, "int8": 0.5}, default="float").chosen == "int8"
    assert choose({"float": 0.5, "int8": 1.0}, default="float").chosen == "float"
    assert choose({"a": 1.0, "b": 0.8, "c": 0.5}, default="a").chosen == "c"


def test_a_choice_says_what_it_measured():
    faster = Choice("int8", "float", {"float": 1.9, "int8": 1.0})
    assert faster.describe() == "1.90x faster than float here, measured at start"
    kept = Choice("32-true", "32-true", {"32-true": 1.0, "bf16-mixed": 6.6})
    assert kept.describe() == "bf16-mixed 6.60x the time here, measured at start"
    assert kept.ratio("bf16-mixed") == pytest.approx(6.6)


def test_candidates_alternate_and_a_slow_one_stops_the_rounds():
    calls: list[str] = []
    seconds = time_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3)
    assert calls == ["a", "b"] * 4  # a warm-up each, then three rounds in turn
    assert set(seconds) == {"a", "b"} and all(s >= 0 for s in seconds.values())
    calls.clear()
    slow = time_alternating({"a": lambda: calls.append("a"), "slow": lambda: time.sleep(0.05)}, rounds=3,
                            budget=0.01)
    assert calls == ["a", "a"] and slow["slow"] >= 0.05  # the warm-up and one round, then the budget is spent


def test_the_cpu_flags_that_matter_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni\n")
    assert cpu_features(cpuinfo) == ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"]
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")  # aarch64
    assert cpu_features(cpuinfo) == ["asimd", "bf16", "i8mm"]
    assert cpu_features(tmp_path / "missing") == []


def test_the_avx2_switches_give_an_avx2_only_cpu():
    """What tests/support/'s AVX2_ONLY does, checked rather than assumed: ATen's kernels are AVX2's, and
    oneDNN has no bfloat16 LSTM (as on a real AVX2 CPU), while a GRU still runs under autocast."""
    code = ("import json, torch; from charrnn.kernel_choice import lowp_lstm_runs; "
            "gru = torch.nn.GRU(4, 4, batch_first=True); ac = torch.autocast('cpu', dtype=torch.bfloat16); "
            "ac.__enter__(); gru(torch.zeros(1, 2, 4)); ac.__exit__(None, None, None); "
            "print(json.dumps([torch.backends.cpu.get_cpu_capability(), lowp_lstm_runs()]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, **AVX2_ONLY})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == ["AVX2", False]


def test_the_probe_leaves_the_random_generators_and_gradients_as_found():
    net = CharRNNNet(Architecture(20, "gru", 8, 16, 1, dropout=0.5))
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    seconds = precision.step_seconds(net, 4, 16)
    assert set(seconds) == {"32-true", "bf16-mixed"}
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize(("given", "timings", "said", "expected"), [
    ("bf16-mixed", {"32-true": 0.1, "bf16-mixed": 0.7}, "this CPU only emulates bfloat16", None),
    ("16-mixed", {"32-true": 0.1, "bf16-mixed": 0.7}, "this CPU only emulates bfloat16", None),
    ("bf16-mixed", {"32-true": 0.2, "bf16-mixed": 0.1}, None, None),
    (None, {"32-true": 0.2, "bf16-mixed": 0.1}, "--trainer.precision bf16-mixed (2.00x faster", "bf16-mixed"),
])
def test_a_mixed_precision_that_is_slower_here_is_kept_with_a_word(monkeypatch, caplog, recwarn, given, timings,
                                                                   said, expected):
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv(precision.ENV, raising=False)
    monkeypatch.setattr(precision, "step_seconds", lambda *a: timings)
    net = CharRNNNet(Architecture(20, "gru", 8, 16, 1))
    chosen = precision.settle({"accelerator": "cpu", "precision": given}, net, 4, 8, fitting=True)
    assert chosen == expected
    lines = [r.getMessage() for r in caplog.records] + [str(w.message) for w in recwarn]
    warned = [line for line in lines if "measured" in line]
    assert (said is not None) == bool(warned) and (said is None or said in warned[0])


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_a_run_trains_with_the_measured_precision_and_a_graph_run_with_the_given(monkeypatch, cuda_graph):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv(precision.ENV, raising=False)
    monkeypatch.setattr(precision, "step_seconds", lambda *a: {"32-true": 1.0, "bf16-mixed": 0.5})
    model = CharRNN(vocab=list("abc"), model_type="gru", wordvec_size=8, rnn_size=16, num_layers=1,
                    cuda_graph=cuda_graph)
    chosen = precision.for_run({"accelerator": "cpu", "precision": None}, model, 4, 8, fitting=True)
    assert chosen == (None if cuda_graph else "bf16-mixed")
    assert precision.for_run({"accelerator": "cpu", "precision": "32-true"}, model, 4, 8, fitting=True) == "32-true"


def test_ddp_processes_take_the_first_process_measurement(monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(precision, "step_seconds", lambda *a: pytest.fail("a launched process measured again"))
    net = CharRNNNet(Architecture(20, "gru", 8, 16, 1))
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv(precision.ENV, "bf16-mixed:1.6")
    assert precision.settle({"accelerator": "cpu", "precision": None}, net, 4, 8, fitting=True) == "bf16-mixed"
    monkeypatch.delenv(precision.ENV)  # launched by torchrun: nothing to inherit, so no guess either
    assert precision.settle({"accelerator": "cpu", "precision": None}, net, 4, 8, fitting=True) is None
    assert "a process launched by another measures nothing" in caplog.text


def test_the_server_takes_the_faster_products_it_measured(monkeypatch):
    import charrnn.stepper

    net = CharRNNNet(Architecture(20, "gru", 8, 16, 2)).eval()
    assert choose_products(net).chosen in ("float", "int8")  # really timed; which one depends on the CPU
    monkeypatch.setattr(charrnn.stepper, "time_alternating", lambda c, budget: {"float": 1.0, "int8": 0.4})
    assert choose_products(net).chosen == "int8"
    monkeypatch.setattr(charrnn.stepper, "time_alternating", lambda c, budget: {"float": 1.0, "int8": 6.6})
    choice = choose_products(net)
    assert choice.chosen == "float" and choice.describe() == "int8 6.60x the time here, measured at start"


@pytest.mark.parametrize(("flags", "said"), [
    ([], "products ("),                    # measured: which one depends on the CPU, and the line says why
    (["--no-int8"], "float products (--no-int8)"),
    (["--int8"], "int8 products (--int8)"),
])
def test_the_server_start_line_says_which_products_and_why(tmp_path, flags, said):
    from tests.support.server import CORPUS, running_server, train_tiny_checkpoint

    ckpt = train_tiny_checkpoint(tmp_path / "tiny.ckpt", CORPUS, steps=5)
    log = tmp_path / "server.log"
    with running_server(ckpt, "--workers", "1", *flags, log=log):
        pass
    line = next(line for line in log.read_text().splitlines() if line.startswith("charrnn: lstm"))
    assert said in line
    if not flags:
        assert "measured at start" in line
