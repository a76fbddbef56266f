"""The resumable training loader: where an interrupted epoch goes on, with and without workers."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from charrnn.stream_loader import ResumableLoader


class Numbered(Dataset):
    def __len__(self) -> int:
        return 6

    def __getitem__(self, k: int) -> torch.Tensor:
        return torch.tensor(k)


def firsts(loader: ResumableLoader) -> list[int]:
    return [int(b) for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_epoch_continues_and_the_next_one_starts_over(workers):
    trained = 4  # what the Trainer reports at save time
    saving = ResumableLoader(Numbered(), lambda: trained, workers)
    state = saving.state_dict()
    assert state == {"next_batch": 4, "num_batches": 6}
    resumed = ResumableLoader(Numbered(), lambda: 0, workers)
    resumed.load_state_dict(state)
    assert len(resumed) == 6  # Lightning counts the resumed epoch from its restored position
    assert firsts(resumed) == [4, 5]
    assert firsts(resumed) == [0, 1, 2, 3, 4, 5]


def test_a_finished_epoch_resumes_at_the_start_of_the_next():
    loader = ResumableLoader(Numbered(), lambda: 0)
    loader.load_state_dict({"next_batch": 6, "num_batches": 6})
    assert firsts(loader) == list(range(6))


def test_an_epoch_of_another_length_starts_over_with_a_warning():
    loader = ResumableLoader(Numbered(), lambda: 0)
    with pytest.warns(UserWarning, match="had 9 batches, this one has 6"):
        loader.load_state_dict({"next_batch": 4, "num_batches": 9})
    assert firsts(loader) == list(range(6))


def test_making_the_iterator_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    firsts(ResumableLoader(Numbered(), lambda: 0, num_workers=2))
    assert torch.equal(torch.get_rng_state(), before)


def test_the_cli_keeps_lightning_from_replacing_the_sampler(capsys):
    """Under DDP Lightning would swap in a DistributedSampler, which the resumable loader refuses."""
    from charrnn.cli import cli_main
    from tests.support.paths import DEBUG

    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", DEBUG, "--print_config"])
    assert "use_distributed_sampler: false" in capsys.readouterr().out
