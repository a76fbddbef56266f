"""The LightningCLI behind ``python train.py fit|validate|test|predict``."""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from charrnn.data import CharDataModule
from charrnn.model import CharRNN


class CharRNNCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The vocabulary comes from the data, never from the config.
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")


def cli_main(args: list[str] | None = None) -> CharRNNCLI:
    return CharRNNCLI(
        CharRNN,
        CharDataModule,
        # Rerunning or resuming into the same log directory must not abort on its config.yaml.
        save_config_kwargs={"overwrite": True},
        args=args,
    )
