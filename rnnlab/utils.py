"""Small process-wide switches shared by the entry points (train, evaluate, predict)."""
from __future__ import annotations

import numbers
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


def end_distributed() -> None:
    """Destroy the process group that Lightning's DDP started, if any, before the process exits.

    Left to interpreter shutdown, gloo's threads were torn down while still joinable and a 2-process CPU run of
    ``rnnlab.evaluate trainer=ddp`` aborted at exit in 2 of 6 tries ("terminate called without an active exception").
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # no rank leaves while another still talks to it
        torch.distributed.destroy_process_group()


def is_int_at_least(value, least: int) -> bool:
    """``value`` is an integer (Python or numpy, not a bool) of at least ``least``: the test behind the data
    settings' argument checks, which each word their own message."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least
