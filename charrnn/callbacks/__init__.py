from charrnn.callbacks.stop_checkpoint import StopCheckpoint
from charrnn.callbacks.text_samples import TextSamples
from charrnn.callbacks.throughput import CharsPerSecond

__all__ = ["CharsPerSecond", "StopCheckpoint", "TextSamples"]
