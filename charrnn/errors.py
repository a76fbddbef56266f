"""The user's mistakes: errors every entry point prints as one line ``error: ...`` and exits with status 2.

A traceback is for a bug in charrnn; a flag or file the user gave that cannot be used raises one of these,
with a message that names the flag or file and says what to do instead.
"""

from __future__ import annotations

import os

# The most worker processes a flag may ask for (--data.num_workers, the server's --workers): more would not
# run any faster, and a huge number would start processes until the machine stops.
MAX_PROCESSES = max(16, 4 * (os.cpu_count() or 1))


class UsageError(ValueError):
    """A flag or file the user gave cannot be used; the message names it."""


class MissingFileError(UsageError, FileNotFoundError):
    """A file the user named does not exist."""
