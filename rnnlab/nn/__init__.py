"""rnnlab.nn: hand-written recurrent cells, exact peers of torch.nn.

``from rnnlab.nn import LSTM, CIFGLSTM, GRU, RNN, IndRNN``; the one-step cells ``LSTMCell, CIFGCell, GRUCell, RNNCell``.
The modules and their API live here (``base``, ``lstm``, ``gru``, ``rnn``, ``cells``, ``errors``, ``init``,
``registry``, ``norms``); the recurrence itself is in :mod:`rnnlab.nn.backends`, whose reference
is :func:`rnnlab.nn.backends.loop.run_layer`.
"""
from rnnlab.nn.base import BACKENDS, RNNBase
from rnnlab.nn.cells import CIFGCell, GRUCell, LSTMCell, RNNCell
from rnnlab.nn.errors import DTypeError, ShapeError, SizeTypeError
from rnnlab.nn.gru import GRU
from rnnlab.nn.indrnn import IndRNN
from rnnlab.nn.lstm import LSTM, CIFGLSTM
from rnnlab.nn.rnn import RNN
from rnnlab.nn.registry import CELLS, build_cell

__all__ = ["LSTM", "CIFGLSTM", "GRU", "RNN", "IndRNN", "LSTMCell", "CIFGCell", "GRUCell", "RNNCell", "RNNBase", "BACKENDS",
           "CELLS", "build_cell", "ShapeError", "DTypeError", "SizeTypeError"]
