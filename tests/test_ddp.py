"""DDP on CPU: two processes (gloo) launched by ``train.py`` through Lightning, or two "nodes" on
127.0.0.1 started by torchrun or by Lightning from MASTER_ADDR/MASTER_PORT/NODE_RANK. Each run is a
subprocess under a timeout; ``tests.support.ddp.Record`` writes what every process saw to
``rec/rank<R>.json``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.support.ddp import SEQ, TIMEOUT, flat_params, record, train_args
from tests.support.processes import finish, free_port, run, run_ok, start
from tests.support.texts import TINY_TEXT


def ranks(work: Path, out_dir: str = "rec") -> list[dict]:
    return [json.loads((work / out_dir / f"rank{r}.json").read_text()) for r in range(2)]


def fresh_dir(tmp: Path, source: Path) -> Path:
    """A new working directory with the corpus and its .h5/.json from ``source``."""
    tmp.mkdir()
    for name in ("tiny.txt", "tiny.h5", "tiny.json"):
        shutil.copy2(source / name, tmp / name)
    return tmp


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One whole epoch (18 steps) on 2 processes, validating every 6 steps; checkpoints every 10."""
    work = tmp_path_factory.mktemp("ddp")
    (work / "tiny.txt").write_text(TINY_TEXT)
    run_ok(train_args("--trainer.max_epochs", "1", "--trainer.max_steps", "-1",
                      "--trainer.val_check_interval", "6", *record()), work, TIMEOUT)
    return work


def test_each_rank_owns_contiguous_disjoint_streams_that_cover_the_split(ddp_run):
    recs = ranks(ddp_run)
    with h5py.File(ddp_run / "tiny.h5") as f:
        train = f["train"][:].astype(np.int64) - 1
    assert len(recs[0]["batches"]) == len(recs[1]["batches"]) > 1  # equal batch counts
    rows = []
    for rec in recs:
        assert [b["batch_idx"] for b in rec["batches"]] == list(range(len(rec["batches"])))
        x = np.concatenate([np.array(b["x"]) for b in rec["batches"]], axis=1)  # (B, row_length)
        y_last = np.array(rec["batches"][-1]["y"])[:, -1:]
        rows += list(np.concatenate([x, y_last], axis=1))
    row_length = len(rows[0]) - 1
    # Rank 0's rows, then rank 1's, tile the split from its start: disjoint, contiguous, in order.
    for i, row in enumerate(rows):
        assert np.array_equal(row, train[i * row_length : (i + 1) * row_length + 1]), f"row {i}"
    # Only a remainder shorter than one step of all rows is left out.
    assert len(train) - 1 - len(rows) * row_length < len(rows) * SEQ


def test_parameters_are_identical_on_both_ranks_and_hidden_states_are_not(ddp_run):
    r0, r1 = ranks(ddp_run)
    assert r0["global_step"] == r1["global_step"] == 18
    assert torch.equal(flat_params(r0), flat_params(r1))
    assert r0["buffers"] == r1["buffers"] == []  # the carried state is no buffer DDP would broadcast
    assert r0["hidden"] is not None and r1["hidden"] is not None
    assert r0["hidden"] != r1["hidden"]  # each rank carries the state of its own streams
    assert r0["losses"] != r1["losses"]  # ... and trains on its own data


def test_validation_is_synced_so_every_rank_keeps_the_same_best_checkpoint(ddp_run):
    r0, r1 = ranks(ddp_run)
    assert len(r0["val_losses"]) == 3
    assert r0["val_losses"] == r1["val_losses"]
    assert r0["best_model_path"] == r1["best_model_path"]
    best = Path(r0["best_model_path"][0])
    assert best.is_file() and f"val_loss={min(r0['val_losses']):.4f}" in best.name


@pytest.mark.slow
def test_a_ddp_checkpoint_resumes_mid_epoch_on_two_processes(ddp_run, tmp_path):
    work = fresh_dir(tmp_path / "resume2", ddp_run)
    ckpt = ddp_run / "checkpoints" / "debug" / "step=10.ckpt"
    run_ok(train_args("--trainer.max_epochs", "1", "--trainer.max_steps", "-1", "--ckpt_path", str(ckpt),
                      *record()), work, TIMEOUT)
    before, after = ranks(ddp_run), ranks(work)
    for b, a in zip(before, after, strict=True):
        assert a["global_step"] == 18
        # Each rank goes on with its own streams at the batch after the checkpoint.
        assert [x["batch_idx"] for x in a["batches"]] == list(range(10, 18))
        assert [x["x"] for x in a["batches"]] == [x["x"] for x in b["batches"][10:]]
    assert torch.equal(flat_params(after[0]), flat_params(after[1]))


@pytest.mark.slow
def test_a_ddp_checkpoint_resumes_on_one_process(ddp_run, tmp_path):
    work = fresh_dir(tmp_path / "resume1", ddp_run)
    ckpt = ddp_run / "checkpoints" / "debug" / "step=10.ckpt"
    proc = run_ok(train_args("--trainer.max_steps", "14", "--ckpt_path", str(ckpt), *record(), ddp=False), work,
                  TIMEOUT)
    rec = json.loads((work / "rec" / "rank0.json").read_text())
    assert rec["world_size"] == 1 and rec["global_step"] == 14 and len(rec["batches"]) == 4
    assert all(np.isfinite(rec["losses"]))
    assert "resuming a multi-process run" in proc.stderr


@pytest.mark.slow
def test_one_failing_rank_ends_the_job_without_a_hang(ddp_run, tmp_path):
    work = fresh_dir(tmp_path / "fail", ddp_run)
    args = train_args("--trainer.max_steps", "50", "--trainer.callbacks+=tests.support.ddp.FailOnRank",
                      "--trainer.callbacks.rank", "1", "--trainer.callbacks.step", "3")
    proc = run(args, work, timeout=60)  # a hang raises TimeoutExpired and fails the test
    assert proc.returncode != 0
    assert "deliberate failure on rank 1 at step 3" in proc.stderr


def node_command(launcher: str, rank: int, port: str) -> tuple[list[str], dict[str, str]]:
    """How node ``rank`` of 2 starts (its arguments and environment variables): under torchrun, or by Lightning
    itself from the MASTER_*/NODE_RANK env."""
    train = train_args("--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.max_steps", "4", *record())
    if launcher == "torchrun":
        return ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--node_rank", str(rank),
                "--master_addr", "127.0.0.1", "--master_port", port, *train], {}
    return train, {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": str(rank)}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "env"])
def test_two_nodes_on_localhost(ddp_run, tmp_path, launcher):
    work = fresh_dir(tmp_path / "nodes", ddp_run)
    port = str(free_port())
    nodes = []
    for rank in range(2):
        args, node_env = node_command(launcher, rank, port)
        nodes.append(start(args, work, node_env))
    try:
        done = [finish(node, check=False, timeout=TIMEOUT) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in done] == [0, 0], done[0].stderr[-2000:] + done[1].stderr[-2000:]
    r0, r1 = ranks(work)
    assert r0["world_size"] == r1["world_size"] == 2 and r0["global_step"] == r1["global_step"] == 4
    assert torch.equal(flat_params(r0), flat_params(r1))
    assert r0["batches"][0]["x"] != r1["batches"][0]["x"]
