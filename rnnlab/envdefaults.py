"""Environment defaults of rnnlab's command-line jobs (train, evaluate, predict), set before torch loads.

Each is read once, at torch's first allocation or the first CPU kernel, so a config key would come too late; a value
the environment already has wins.

- ``THP_MEM_ALLOC_ENABLE=1``: torch puts tensors of 2 MB and more on transparent huge pages.
- ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=8`` and ``LRU_CACHE_CAPACITY=8``: the two caches of built CPU kernels, oneDNN's
  and ideep's (oneDNN's C++ wrapper inside torch), keep 8 entries each instead of 1024. Length-bucketed batches have
  hundreds of shapes, each shape builds its own kernels, and each kernel keeps its buffers: with the default
  capacities the main job's memory grows with every new shape. Measurements: docs/data.md.
"""
from __future__ import annotations

import os

DEFAULTS = {"THP_MEM_ALLOC_ENABLE": "1", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8", "LRU_CACHE_CAPACITY": "8"}


def set_defaults() -> None:
    """Set each of :data:`DEFAULTS` the environment does not set already."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
