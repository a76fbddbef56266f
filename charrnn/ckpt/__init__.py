"""The life of a checkpoint, one step per module. Nothing is imported here: the loading modules need no
Lightning, so sample.py and the server import them without it.

1. **Write.** The callbacks that decide when live in :mod:`charrnn.callbacks`: ``UpToDateCheckpoint``
   (Lightning's ``ModelCheckpoint`` with a ``last.ckpt`` that is current when training ends),
   ``StopCheckpoint`` (``interrupted.ckpt`` on SIGTERM) and ``RunDirectory`` (one run per checkpoint
   directory, an earlier run's files moved aside, so ``last.ckpt`` is always the latest run's). Every file
   goes through ``write.py`` (the Trainer's CheckpointIO) to :mod:`charrnn.atomic`, the one way this
   project writes a file: a temporary file beside the target, fsynced, renamed over it; a full disk is
   one clear error.
2. **Resume state.** A Lightning checkpoint holds weights, optimizer, schedule and loop counters. What an
   exact resume needs beyond that is added by the model through ``resume_state.py``: the global random
   generators (``rng.py``, as plain tensors so ``weights_only`` loading accepts them) and the carried
   hidden state. :mod:`charrnn.stream_loader` puts the position in the data into the loop state.
3. **Find.** ``find.py`` resolves ``--ckpt_path``: ``last`` is the newest usable file of the run's
   checkpoint directories (a damaged one is skipped with a warning, none is an error); a checkpoint of
   another model is refused, and model flags that contradict it are refused or take effect, never ignored.
   An explicit file is read once per run: the CLI hands what it read to ``write.py``, which gives it to
   Lightning instead of reading the file again.
4. **Load.** ``load.py`` is the one door for every reader (resume, ``--model.init_from``, sample.py, the
   server, the export): ``torch.load(weights_only=True)`` for checkpoints, safetensors for exports,
   ``torch7.py`` + ``torch_rnn.py`` for torch-rnn's ``.t7``, each file read once. ``read_model`` gives the
   network built from the file's ``Architecture`` (``net_spec.py``; a checkpoint saves it under
   ``architecture``, one written before that has it among its hyperparameters), ``read_checkpoint`` the
   training checkpoint's dictionary for Lightning; both check sizes and dtypes before a network is built,
   and every error names the file.
"""
