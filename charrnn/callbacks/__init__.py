"""The project's Lightning callbacks, named in configs as ``charrnn.callbacks.X``. ``RunDirectory`` is not
named here: the CLI puts it first in every run."""

from charrnn.callbacks.divergence import DivergenceStop
from charrnn.callbacks.model_checkpoint import UpToDateCheckpoint
from charrnn.callbacks.stop_checkpoint import StopCheckpoint
from charrnn.callbacks.text_samples import TextSamples
from charrnn.callbacks.throughput import CharsPerSecond

__all__ = ["CharsPerSecond", "DivergenceStop", "StopCheckpoint", "TextSamples", "UpToDateCheckpoint"]
