"""sample.py's flags, in process, on the debug run's checkpoint."""

from __future__ import annotations

import pytest

from charrnn.sample_cli import main


@pytest.fixture
def ckpt(debug_run) -> str:
    return str(debug_run / "checkpoints" / "debug" / "last.ckpt")


def run(capsys, *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_length_counts_new_characters_and_the_prime_is_optional(ckpt, capsys):
    with_start = run(capsys, "--ckpt", ckpt, "--start_text", "All:", "--length", "40", "--seed", "1")
    without = run(capsys, "--ckpt", ckpt, "--start_text", "All:", "--length", "40", "--seed", "1", "--no-include_start")
    assert with_start == "All:" + without
    assert len(without) == 41  # 40 characters and a newline


def test_start_file_holds_a_multi_line_prime(ckpt, capsys, tmp_path):
    prime = tmp_path / "prime.txt"
    prime.write_text("First Citizen:\nSpeak, speak.\n")
    from_file = run(capsys, "--ckpt", ckpt, "--start_file", str(prime), "--length", "30", "--seed", "2")
    inline = run(capsys, "--ckpt", ckpt, "--start_text", prime.read_text(), "--length", "30", "--seed", "2")
    assert from_file == inline and from_file.startswith("First Citizen:\nSpeak, speak.\n")


def test_num_samples_are_a_batch_each_with_its_own_text(ckpt, capsys):
    out = run(capsys, "--ckpt", ckpt, "--num_samples", "3", "--length", "80", "--seed", "3")
    parts = out.split("===== sample ")[1:]
    assert len(parts) == 3 and len({p.split("\n", 1)[1] for p in parts}) == 3


def test_top_k_1_equals_argmax(ckpt, capsys):
    greedy = run(capsys, "--ckpt", ckpt, "--sample", "0", "--start_text", "All", "--length", "30")
    assert greedy == run(capsys, "--ckpt", ckpt, "--top_k", "1", "--start_text", "All", "--length", "30", "--seed", "9")
    assert greedy == run(capsys, "--ckpt", ckpt, "--top_p", "0.000001", "--start_text", "All", "--length", "30")


@pytest.mark.parametrize("args, flag", [
    (["--length", "-1"], "--length"),
    (["--top_p", "1.5"], "--top_p"),
    (["--top_k", "0"], "--top_k"),
    (["--temperature", "-1"], "--temperature"),
    (["--temperature", "nan"], "--temperature nan"),
    (["--temperature", "inf"], "--temperature inf"),
    (["--top_p", "nan"], "--top_p nan"),
    (["--top_k", "-5"], "--top_k -5"),
    (["--seed", str(2**64)], "--seed 18446744073709551616"),
    (["--seed", str(-(2**63) - 1)], "--seed -9223372036854775809"),
    (["--device", "bogus"], "--device bogus"),
    (["--device", "meta"], "--device meta"),
    (["--length", "ten"], "--length"),
    (["--start_file", "/dev/zero"], "--start_file /dev/zero is longer than 64 MiB"),
    (["--start_file", "/"], "--start_file / is a directory; give a file"),
    (["--num_samples", "0"], "--num_samples"),
    (["--start_file", "/nonexistent/prime.txt"], "--start_file"),
])
def test_bad_flags_are_named(ckpt, capsys, args, flag):
    with pytest.raises(SystemExit) as exit_:
        main(["--ckpt", ckpt, *args])
    assert exit_.value.code == 2 and flag in capsys.readouterr().err


def test_extreme_seeds_and_a_tiny_top_p_work(ckpt, capsys):
    greedy = run(capsys, "--ckpt", ckpt, "--sample", "0", "--start_text", "All", "--length", "30")
    assert greedy == run(capsys, "--ckpt", ckpt, "--top_p", "1e-60", "--start_text", "All", "--length", "30")
    for seed in (str(2**64 - 1), str(-(2**63))):
        assert len(run(capsys, "--ckpt", ckpt, "--seed", seed, "--length", "10", "--no-include_start")) == 11


def test_streams_characters_as_they_are_generated(ckpt, monkeypatch):
    writes: list[str] = []

    class Recorder:
        def write(self, s: str) -> None:
            writes.append(s)

        def flush(self) -> None:
            writes.append("<flush>")

    monkeypatch.setattr("sys.stdout", Recorder())
    assert main(["--ckpt", ckpt, "--length", "25", "--seed", "0", "--no-include_start"]) == 0
    assert writes.count("<flush>") == 25  # one character at a time, each flushed


def test_a_reader_that_stops_early_gets_no_traceback(ckpt):
    import subprocess
    import sys

    from tests.support.paths import ROOT

    proc = subprocess.Popen([sys.executable, "sample.py", "--ckpt", ckpt, "--length", "200000", "--seed", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and len(proc.stdout.read(100)) == 100
    proc.stdout.close()  # as `| head -c 100` does
    stderr = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
