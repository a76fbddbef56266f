from charrnn.callbacks.model_checkpoint import ModelCheckpoint
from charrnn.callbacks.stop_checkpoint import StopCheckpoint
from charrnn.callbacks.text_samples import TextSamples
from charrnn.callbacks.throughput import CharsPerSecond

__all__ = ["CharsPerSecond", "ModelCheckpoint", "StopCheckpoint", "TextSamples"]
