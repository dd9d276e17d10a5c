"""GRU, gates and reset placement as torch.nn.GRU."""
from __future__ import annotations

from torch import nn

from rnnlab.nn._docs import args_doc, shapes_doc
from rnnlab.nn.base import RNNBase


class GRU(RNNBase):
    __doc__ = r"""Multi-layer gated recurrent unit (GRU) RNN, a drop-in peer of :class:`torch.nn.GRU`.

    For each element in the input sequence, each layer computes:

    .. math::
        \begin{array}{ll}
            r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{(t-1)} + b_{hr}) \\
            z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{(t-1)} + b_{hz}) \\
            n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{(t-1)}+ b_{hn})) \\
            h_t = (1 - z_t) \odot n_t + z_t \odot h_{(t-1)}
        \end{array}

    where :math:`h_t` is the hidden state at time `t`, :math:`x_t` the input (for layer :math:`l > 0`, the
    output of the layer below, with dropout in training if ``dropout > 0``), :math:`h_{(t-1)}` the hidden state
    at `t-1` (or :math:`h_0`), and :math:`r_t, z_t, n_t` the reset, update and new gates. :math:`\sigma` is the
    sigmoid and :math:`\odot` the Hadamard product. As in torch (and Keras' ``reset_after=True``), the reset gate
    multiplies :math:`W_{hn} h_{(t-1)} + b_{hn}`, not :math:`h_{(t-1)}`.
    """ + args_doc("GRU") + shapes_doc(lstm=False) + r"""
    Attributes:
        weight_ih_l[k]: :math:`(W_{ir}|W_{iz}|W_{in})`, ``(3*hidden_size, input_size)`` for k = 0, else
            ``(3*hidden_size, num_directions * hidden_size)``
        weight_hh_l[k]: :math:`(W_{hr}|W_{hz}|W_{hn})`, ``(3*hidden_size, hidden_size)``
        bias_ih_l[k]: :math:`(b_{ir}|b_{iz}|b_{in})`, ``(3*hidden_size)``
        bias_hh_l[k]: :math:`(b_{hr}|b_{hz}|b_{hn})`, ``(3*hidden_size)``
        weight_*_l[k]_reverse: the same for the reverse direction (``bidirectional=True``).

    Examples::

        >>> rnn = GRU(10, 20, 2)
        >>> output, hn = rnn(torch.randn(5, 3, 10), torch.randn(2, 3, 20))
        >>> output.shape, hn.shape
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
    """

    cell = "gru"
    torch_peer = nn.GRU

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None, *, init="torch", backend="auto", proj_size=None,
                 **regularizers):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype,
                         init=init, backend=backend, proj_size=proj_size, **regularizers)
