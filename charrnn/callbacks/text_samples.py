"""Prints and logs a text sample every N training steps; a stop asked meanwhile cuts it short."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from charrnn.callbacks.stop_checkpoint import stop_asked
from charrnn.errors import UsageError
from charrnn.sampling import check_settings, stream_text


def as_markdown_code(text: str) -> str:
    """TensorBoard renders text as markdown: indenting every line makes it a code block, shown verbatim."""
    return "\n".join("    " + line for line in text.split("\n"))


class TextSamples(L.Callback):
    """Shows what the model writes as it trains.

    Args:
        every_n_steps: sample every this many optimizer steps; 0 turns sampling off.
        length: characters per sample.
        start_text: the prime ("" starts from a random character).
        temperature: sampling temperature.
        seed: sampling seed (added to the step), so samples are repeatable and training's random
            stream is untouched.
    """

    def __init__(self, every_n_steps: int = 500, length: int = 300, start_text: str = "",
                 temperature: float = 0.8, seed: int = 0) -> None:
        try:
            check_settings(temperature)
            if every_n_steps < 0 or length < 0 or not 0 <= seed < 2**63:
                raise ValueError(f"every_n_steps {every_n_steps} and length {length} must be ≥0, seed {seed} "
                                 f"from 0 to {2**63 - 1}")
        except ValueError as e:  # found now, not after hundreds of training steps
            raise UsageError(f"TextSamples callback: {e}") from None
        self.every_n_steps, self.length, self.start_text = every_n_steps, length, start_text
        self.temperature, self.seed = temperature, seed

    @rank_zero_only
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step % self.every_n_steps:
            return
        pieces: list[str] = []
        stream = stream_text(pl_module.net, pl_module.vocab, self.start_text, self.length,
                        temperature=self.temperature, seed=self.seed + step)
        for (piece,) in stream:  # a character at a time, so that a stop asked meanwhile ends it within a second
            pieces.append(piece)
            if stop_asked(trainer):
                stream.close()  # puts the network back in training mode
                pieces.append(f" [cut short after {len(pieces)} characters: a stop was asked]")
                break
        text = "".join(pieces)
        print(f"\n----- sample at step {step} -----\n{self.start_text}{text}\n-----", flush=True)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_text("samples", as_markdown_code(self.start_text + text), step)
