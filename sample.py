"""Generate text from a checkpoint: ``python sample.py --ckpt checkpoints/shakespeare/last.ckpt``."""

import sys

from charrnn.sample_cli import main

if __name__ == "__main__":
    sys.exit(main())
