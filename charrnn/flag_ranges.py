"""The ranges of train.py's number flags, as jsonargparse types for the signatures of CharRNN and
CharDataModule (and ``--seed_everything``): ``--help`` shows each limit, and the parser refuses a value
outside it, naming the flag, before anything is read or built.

jsonargparse's own ``PositiveInt``, ``NonNegativeInt`` and ``ClosedUnitInterval`` serve where they fit;
the floats below are also finite, since an infinite learning rate or decay means nothing. Built directly
in Python, these types are plain ints and floats.
"""

from __future__ import annotations

import math

from jsonargparse.typing import restricted_number_type

FiniteNonNegativeFloat = restricted_number_type("FiniteNonNegativeFloat", float, [(">=", 0), ("<", math.inf)])
FinitePositiveFloat = restricted_number_type("FinitePositiveFloat", float, [(">", 0), ("<", math.inf)])
# DropConnect of every recurrent weight (1) would leave nothing to train.
HalfOpenUnitInterval = restricted_number_type("HalfOpenUnitInterval", float, [(">=", 0), ("<", 1)])
# What NumPy's seed accepts.
Seed = restricted_number_type("Seed", int, [(">=", 0), ("<", 2**32)])
