"""The backends: each runs one recurrent layer in one direction, with the signature of :func:`loop.run_layer`.

==============================  ====================================================================================
module                          what it is
==============================  ====================================================================================
``loop``                        the reference: the cell equations under autograd, a Python loop over time
``bptt``                        the fused backends' shared autograd Function: the input projection of all steps in
                                one matmul, a hand-written BPTT backward, the weight gradients in one matmul each;
                                the per-step loops are handed to it (glossary of their buffers there)
``fused``                       backend ``'fused'``: the per-step loops in Python, or in C++ once built
``cpp``, ``csrc/``              the C++ per-step loops (``csrc/fused_loops.cpp``), built once and cached
``triton/``                     backend ``'triton'``: per-step kernels (``step``), persistent kernels walking all
                                steps (``persistent``, ``split_kernels``), and the ahead-of-time compile tool (``aot``)
==============================  ====================================================================================

:class:`rnnlab.nn.RNNBase` maps the backend names to their ``run_layer`` (``rnnlab.nn.base.BACKENDS``).

The constants below are the integer codes the loops take (``kind`` of the LSTM-like loops, ``act`` of the Elman
loops); the C++ loops and the Triton kernels compare against the same numbers.
"""

# The cell kinds a backend runs (every name of rnnlab.nn.registry.CELLS that is rnnlab's runs as one of them)
KERNEL_CELLS = ("lstm", "cifg", "gru", "rnn")
LSTM, LSTM_NOFORGET, CIFG = 0, 1, 2  # `kind`: the LSTM with a forget gate, without one (1997), coupled gates
TANH, RELU, IDENTITY = 0, 1, 2  # `act`: the Elman RNN's nonlinearity
ACTS = {"tanh": TANH, "relu": RELU, "identity": IDENTITY}
