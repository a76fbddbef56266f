"""The autocomplete server: ``python -m charrnn.serve --ckpt PATH [--host 127.0.0.1] [--port 8080]``.

See :mod:`charrnn.server` for the protocol, the JSON API and the writing page.
"""

import sys

from charrnn.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
