"""Small process-wide switches shared by the entry points (train, evaluate, predict)."""
from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def flush_denormals(enabled: bool = True):
    """Flush subnormal floats to zero on CPU inside the block, then leave the process as it was.

    Recurrent nets drive many activations and gradients into the subnormal range (|x| < 1.2e-38 in float32),
    where x86 CPUs are ~100x slower: a torch BiLSTM training epoch took 952 s without flushing and 255 s with it
    on this project's 2-core CPU, with the same results; evaluating the test set without it was ~20x slower.
    A no-op on CPUs without the SSE3 switch and for CUDA tensors.
    """
    flushed = bool(enabled) and torch.set_flush_denormal(True)
    try:
        yield flushed
    finally:
        if flushed:  # tests and notebooks call the entry points in-process
            torch.set_flush_denormal(False)
