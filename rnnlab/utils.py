"""Small process-wide switches shared by the entry points (train, evaluate, predict)."""
from __future__ import annotations

import numbers
import os
import sys
from contextlib import ContextDecorator, contextmanager

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


# What a user's mistake raises (a wrong path or value, data missing or corrupt, a bad checkpoint, a full disk, a run
# that diverged): the entry points print its message alone. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def _user_error(error: BaseException) -> BaseException | None:
    """``error``, or the user error that a Hydra instantiation error wraps, if it is one of :data:`USER_ERRORS`."""
    from hydra.errors import InstantiationException

    while error is not None and not isinstance(error, USER_ERRORS):
        if not isinstance(error, InstantiationException):  # Hydra wraps the error of a _target_'s constructor
            return None
        error = error.__cause__
    return error


def instantiate(config, **kwargs):
    """``hydra.utils.instantiate(config, **kwargs)``, raising a user error of the ``_target_``'s constructor (a
    :data:`USER_ERRORS` that Hydra wraps in its ``InstantiationException``) as itself, so it reads as it was raised."""
    import hydra.utils
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(config, **kwargs)
    except InstantiationException as e:
        user = _user_error(e)
        if user is None:
            raise
        raise user from e


class user_errors(ContextDecorator):
    """Inside the block, a user's mistake ends the process with ``error: <message>`` on stderr and exit status 2,
    instead of a traceback; ``HYDRA_FULL_ERROR=1`` re-raises it with the full trace. Used by the entry points
    (``train``, ``evaluate``, ``predict``) around their work, as a decorator under ``@hydra.main``:
    ``@user_errors()``. (A class, not a generator: Hydra's joblib launcher pickles the decorated function.)
    """

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if not isinstance(error, Exception):
            return False
        error = _user_error(error)
        if error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            return False
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
