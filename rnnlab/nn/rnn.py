"""Elman RNN with tanh, ReLU or identity (linear) activation."""
from __future__ import annotations

from torch import nn

from rnnlab.nn._docs import args_doc, shapes_doc
from rnnlab.nn.base import RNNBase


class RNN(RNNBase):
    __doc__ = r"""Multi-layer Elman RNN, a drop-in peer of :class:`torch.nn.RNN`, plus a linear variant.

    For each element in the input sequence, each layer computes:

    .. math::
        h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{(t-1)} + b_{hh})

    where :math:`h_t` is the hidden state at time `t`, :math:`x_t` the input (for layer :math:`l > 0`, the
    output of the layer below, with dropout in training if ``dropout > 0``), :math:`h_{(t-1)}` the hidden state
    at `t-1` (or :math:`h_0`), and :math:`\phi` is :math:`\tanh`, :math:`\text{ReLU}` or the identity. With the
    identity the RNN is linear: :math:`\partial h_T / \partial h_t = (W_{hh}^\top)^{T-t}`, so the gradient
    vanishes or explodes with the spectral radius of :math:`W_{hh}`, exactly.
    """ + args_doc("RNN", nonlinearity=True) + shapes_doc(lstm=False) + r"""
    Attributes:
        weight_ih_l[k]: ``(hidden_size, input_size)`` for k = 0, else ``(hidden_size, num_directions * hidden_size)``
        weight_hh_l[k]: ``(hidden_size, hidden_size)``
        bias_ih_l[k], bias_hh_l[k]: ``(hidden_size)``
        weight_*_l[k]_reverse: the same for the reverse direction (``bidirectional=True``).

    ``nonlinearity='identity'`` has no ``torch.nn`` peer, so :meth:`to_torch` raises for it.

    Examples::

        >>> rnn = RNN(10, 20, 2, nonlinearity='relu')
        >>> output, hn = rnn(torch.randn(5, 3, 10), torch.randn(2, 3, 20))
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    cell = "rnn"
    torch_peer = nn.RNN

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, init="torch", backend="auto",
                 proj_size=None, **regularizers):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype,
                         nonlinearity=nonlinearity, init=init, backend=backend, proj_size=proj_size, **regularizers)
