from charrnn.callbacks.stop_checkpoint import StopCheckpoint
from charrnn.callbacks.text_samples import TextSamples

__all__ = ["StopCheckpoint", "TextSamples"]
