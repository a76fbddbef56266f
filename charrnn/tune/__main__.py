"""``python -m charrnn.tune``, which says what to install when the tune extra is missing."""

import sys

try:
    import optuna  # noqa: F401
    import yaml  # noqa: F401
except ImportError as e:
    print(f"error: python -m charrnn.tune needs the tune extra ({e.name} is missing): "
          'pip install -e ".[tune]"', file=sys.stderr)
    raise SystemExit(2) from None

from charrnn.tune.cli import main  # noqa: E402

raise SystemExit(main())
