"""charrnn: character-level RNN/GRU/LSTM language models on PyTorch Lightning."""

__version__ = "0.1.0"
