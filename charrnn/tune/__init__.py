"""``python -m charrnn.tune``: a budgeted search for the best settings of a corpus on a machine, on Optuna.

- ``space``: the search space (``space.yaml``, laid over by ``--space`` files) and the overlay's nesting.
- ``budget``: a trial's training budget as steps, from the measured speed of its step.
- ``trial``: one trial, a real ``train.py fit`` in a child process, its validation losses read back.
- ``study``: the Optuna study and its storage (SQLite, or a shared PostgreSQL), requeued interruptions.
- ``report``: the line per trial, ``tuned.yaml`` and the report.
- ``cli``: the command line and the search loop.

Optuna is the ``tune`` extra: ``pip install -e ".[tune]"``.
"""
