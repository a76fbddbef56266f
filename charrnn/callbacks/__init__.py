"""The callbacks configs name as ``charrnn.callbacks.X``. The two that belong to a checkpoint's life live
in :mod:`charrnn.ckpt` and are named here too, so every config keeps loading."""

from charrnn.callbacks.divergence import DivergenceStop
from charrnn.callbacks.text_samples import TextSamples
from charrnn.callbacks.throughput import CharsPerSecond
from charrnn.ckpt.model_checkpoint import ModelCheckpoint
from charrnn.ckpt.stop_checkpoint import StopCheckpoint

__all__ = ["CharsPerSecond", "DivergenceStop", "ModelCheckpoint", "StopCheckpoint", "TextSamples"]
