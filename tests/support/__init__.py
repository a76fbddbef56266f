"""What tests share besides fixtures (those are in tests/conftest.py), one module per concern:
``paths`` (the repository and its configs), ``texts`` (small corpora), ``processes`` (running the
project's commands in a fresh process, free ports), ``resume`` (a fast run to stop, resume and compare),
``stop``, ``ddp``, ``server``, ``torch7`` (what those tests need). Test modules import from here, never
from each other."""
