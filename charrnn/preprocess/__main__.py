"""``python -m charrnn.preprocess``."""

from charrnn.preprocess.cli import main

raise SystemExit(main())
