"""Train, validate, test or predict: ``python train.py fit --config configs/shakespeare.yaml``."""

from charrnn.cli import cli_main

if __name__ == "__main__":
    cli_main()
