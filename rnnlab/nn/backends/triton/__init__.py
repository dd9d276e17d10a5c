r"""Backend ``'triton'``: the fused backend's BPTT with the per-step loops as Triton kernels.

==========================  ==========================================================================================
module                      what it is
==========================  ==========================================================================================
``step``                    :class:`~.step.TritonLoops`: per step a cuBLAS matmul plus one Triton kernel for the gates
``step_kernels``            those per-step kernels
``persistent``              :class:`~.persistent.PersistentLoops`: one kernel launch walks all T steps
``persistent_kernels``      those kernels, one program per block of batch rows
``split_kernels``           the column-split variant: each program owns a slice of hidden units (off by default)
``aot``                     ``python -m rnnlab.nn.backends.triton.aot``: compile every kernel for a GPU without one
==========================  ==========================================================================================

Runs on CUDA tensors; on CPU tensors only under the Triton interpreter (``TRITON_INTERPRET=1`` set before the first
call), which is how the tests check it without a GPU. Needs the optional ``triton`` package
(``pip install rnnlab[gpu]``); importing this package does not import it.
"""
from rnnlab.nn.backends.bptt import run_layer_with
from rnnlab.nn.backends.triton import persistent, step

__all__ = ["run_layer", "available"]


def available() -> bool:
    """Whether the ``triton`` package is installed."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def run_layer(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
              *, nonlinearity="tanh", forget_gate=True, grad_norms=None):
    """Same contract as :func:`rnnlab.nn.backends.loop.run_layer`, with Triton kernels: one persistent kernel per
    loop (:mod:`.persistent`) where it applies, else one kernel per step (:class:`~.step.TritonLoops`)."""
    if not available():
        raise RuntimeError("backend='triton' needs the triton package: pip install 'rnnlab[gpu]'")
    if x.device.type != "cuda" and not step.interpreting():
        raise RuntimeError(f"backend='triton' runs on CUDA tensors (or on CPU under TRITON_INTERPRET=1): "
                           f"got input on {x.device}; use backend='fused' there")
    loops = persistent.PersistentLoops if persistent.ENABLED else step.TritonLoops
    return run_layer_with(loops, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                          reverse, nonlinearity=nonlinearity, forget_gate=forget_gate, grad_norms=grad_norms)
