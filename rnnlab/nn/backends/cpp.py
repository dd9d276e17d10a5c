"""The fused backend's per-step loops in C++ (optional, built on first use, cached).

``csrc/fused_loops.cpp`` implements the six loops of :mod:`rnnlab.nn.backends.fused` (``lstm_fwd``, ``lstm_bwd``,
``gru_fwd``, ``gru_bwd``, ``rnn_fwd``, ``rnn_bwd``) on the same buffers, plus ``lstm_bwd_inline`` (the LSTM backward
computing its derivative factors inside the loop) and ``wgrad`` (the weight gradients' ``dG^T X``). On CPU, float32
and float64, a step is the recurrent matmul plus one vectorised pass over the step's gates; other devices and dtypes
run the same ATen ops as the Python loops, without the interpreter between them.

Built and loaded by :class:`rnnlab.nn.backends.inline_ext.InlineExtension` (ATen only, ~20 s of CPU, cached per source
version; ``python -m rnnlab.nn.backends.cpp`` builds ahead of time, as ``make install`` does). Until it is built, or
without a compiler, the fused backend runs its Python loops. ``RNNLAB_FUSED_EXT``: ``auto`` (default: build in
the background on first use), ``wait`` (build now, blocking: for benchmarks and tests), ``0`` (never).
``RNNLAB_FUSED_PRETEND`` makes the loops take their public fallbacks for torch internals (see the source).
"""
import os

from rnnlab.nn.backends.inline_ext import InlineExtension

SOURCES = [os.path.join(os.path.dirname(__file__), "csrc", "fused_loops.cpp")]


def _cflags():
    """-O3 -ffast-math (compile only: linking with it would set flush-to-zero for the whole process) so the
    gate loops vectorise with glibc's vector exp; AVX2/FMA where this CPU has them."""
    flags = ["-O3", "-ffast-math"]
    try:
        with open("/proc/cpuinfo") as f:
            cpu = f.read()
        if " avx2" in cpu and " fma" in cpu:
            flags += ["-mavx2", "-mfma"]
    except OSError:
        pass
    return flags


CFLAGS = _cflags()
EXT = InlineExtension("rnnlab_fused", SOURCES, CFLAGS, env="RNNLAB_FUSED_EXT",
                      module="rnnlab.nn.backends.cpp", fallback="the Python loops")


def loops():
    """The C++ loops' ``torch.ops`` namespace if built (starting a background build on the first call), else None."""
    return EXT.ops()


if __name__ == "__main__":  # the background build (or `python -m rnnlab.nn.backends.cpp` to build ahead of time)
    EXT.main()
