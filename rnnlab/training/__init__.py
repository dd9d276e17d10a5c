"""Training plumbing: what the entry point ``rnnlab.train`` relies on beside Lightning.

* :mod:`rnnlab.training.resume`: what a resumed run may change, takes from its checkpoint, refuses.
* :mod:`rnnlab.training.run_folder`: a run folder's lock, atomic writes, ``metrics.json``, multirun job errors.
* :mod:`rnnlab.training.checkpointing`: ``AtomicCheckpointIO`` (atomic writes), ``RunCheckpoint`` (a NaN stop keeps
  last.ckpt), ``read_checkpoint`` (weights-only).
* :mod:`rnnlab.training.callbacks`: ``EpochTimer``, ``RunConfig`` (the run config in every checkpoint),
  ``DivergenceStop``.
* :mod:`rnnlab.training.resumable`: ``ResumableLoader`` (mid-epoch resume), ``restart_interrupted_validation``.

It imports no other rnnlab package (``rnnlab.data`` and ``rnnlab.models`` import it).
"""
