"""rnnlab.nn: hand-written recurrent cells, exact peers of torch.nn.

``from rnnlab.nn import LSTM, CIFGLSTM, GRU, RNN``; the recurrence itself is :func:`rnnlab.nn.loop.run_layer`.
"""
from rnnlab.nn.base import BACKENDS, RNNBase
from rnnlab.nn.gru import GRU
from rnnlab.nn.lstm import LSTM, CIFGLSTM
from rnnlab.nn.rnn import RNN
from rnnlab.nn.registry import CELLS, build_cell

__all__ = ["LSTM", "CIFGLSTM", "GRU", "RNN", "RNNBase", "BACKENDS", "CELLS", "build_cell"]
