r"""One-step cells, peers of :class:`torch.nn.LSTMCell`, :class:`~torch.nn.GRUCell`, :class:`~torch.nn.RNNCell`, and
:class:`CIFGCell`: what custom loops over time are written with.

A cell is one layer, one direction, one step: ``cell(x_t, state) -> state``. Its equations are those of the
matching layer (:class:`rnnlab.nn.LSTM`, :class:`~rnnlab.nn.CIFGLSTM`, :class:`~rnnlab.nn.GRU`,
:class:`~rnnlab.nn.RNN`), computed by the same code, :func:`rnnlab.nn.backends.loop.run_layer` over one step,
so a cell stepped over a sequence gives the layer's numbers (tests/test_nn_cells.py).

Args:
    input_size: The number of expected features in the input `x`
    hidden_size: The number of features in the hidden state `h`
    bias: If ``False``, the cell does not use ``bias_ih`` and ``bias_hh``. Default: ``True``
    nonlinearity (:class:`RNNCell` only): ``'tanh'``, ``'relu'`` or ``'identity'``. Default: ``'tanh'``
    device, dtype: of the parameters.
    forget_bias (:class:`LSTMCell`, :class:`CIFGCell`, keyword-only): added to the forget-gate slice of ``bias_ih``
        after initialisation. Default: 0.0 (torch's draws)

Inputs: input, hx
    * **input**: :math:`(N, H_{in})` or :math:`(H_{in})` unbatched.
    * **hx**: ``h_0`` :math:`(N, H)` or :math:`(H)`, or ``(h_0, c_0)`` for :class:`LSTMCell` and :class:`CIFGCell`;
      zeros if not given.

Outputs: ``h_1``, or ``(h_1, c_1)`` for :class:`LSTMCell` and :class:`CIFGCell`, shaped as ``h_0``.

Attributes:
    weight_ih: ``(G*hidden_size, input_size)``, the gates packed as in the layers (G = 4 LSTM (i, f, g, o),
        3 GRU (r, z, n), 3 CIFG (f, g, o), 1 RNN)
    weight_hh: ``(G*hidden_size, hidden_size)``
    bias_ih, bias_hh: ``(G*hidden_size)``

All parameters are drawn from :math:`\mathcal{U}(-\sqrt{k}, \sqrt{k})`, :math:`k = 1/\text{hidden\_size}`, in
torch's order, so the same seed gives torch's weights.

Examples::

    >>> cell = LSTMCell(10, 20)
    >>> x, (h, c) = torch.randn(6, 3, 10), (torch.zeros(3, 20), torch.zeros(3, 20))
    >>> for t in range(6):
    ...     h, c = cell(x[t], (h, c))
    >>> h.shape
    torch.Size([3, 20])
"""
from __future__ import annotations

import numbers
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn.backends import loop
from rnnlab.nn.base import check_sizes
from rnnlab.nn.errors import DTypeError, ShapeError
from rnnlab.nn.init import reset_parameters_

__all__ = ["LSTMCell", "GRUCell", "RNNCell", "CIFGCell"]


class RNNCellBase(nn.Module):
    """What the four cells share: argument checks, parameters, the state checks, one step of ``run_layer``."""

    cell: str = ""  # 'lstm' | 'cifg' | 'gru' | 'rnn'
    num_gates: int = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None, *,
                 nonlinearity: str = "tanh", forget_bias: float = 0.0) -> None:
        super().__init__()
        check_sizes(input_size=input_size, hidden_size=hidden_size)
        if nonlinearity not in loop.NONLINEARITIES:
            raise ValueError(f"`nonlinearity` must be one of {list(loop.NONLINEARITIES)}: got {nonlinearity!r}")
        if not isinstance(forget_bias, numbers.Real) or isinstance(forget_bias, bool):
            raise TypeError(f"`forget_bias` must be a float: got {forget_bias!r}")
        bias = bool(bias)  # as torch's cells, any truthy value (torch's layers insist on a bool)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.nonlinearity, self.forget_bias = nonlinearity, float(forget_bias)
        G, factory = self.num_gates * hidden_size, {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(G, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(G, hidden_size, **factory))
        self.bias_ih = nn.Parameter(torch.empty(G, **factory)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(G, **factory)) if bias else None
        self.reset_parameters()

    def forget_slice(self) -> Optional[slice]:
        """Rows of the forget gate in the packed weights, for :func:`rnnlab.nn.init.add_forget_bias_`."""
        return {"lstm": slice(self.hidden_size, 2 * self.hidden_size), "cifg": slice(0, self.hidden_size)}.get(self.cell)

    def reset_parameters(self) -> None:
        reset_parameters_(self, "torch", self.forget_bias)

    def forward(self, input: Tensor, hx=None):
        if not isinstance(input, Tensor):
            raise TypeError(f"`input` must be a Tensor: got {type(input).__name__}")
        if input.dim() not in (1, 2):
            raise ShapeError(f"`input` must be 2-D (batched) or 1-D (unbatched): expected (N, H_in) or (H_in), got "
                             f"{input.dim()}-D input of shape {tuple(input.shape)}")
        if input.size(-1) != self.input_size:
            raise ShapeError(f"`input.size(-1)` must equal input_size: expected {self.input_size}, got {input.size(-1)}")
        if input.dtype != self.weight_ih.dtype:
            raise DTypeError(f"`input.dtype` must equal the parameters' dtype: expected {self.weight_ih.dtype}, got "
                             f"{input.dtype} (cast the input, or the module with .to({input.dtype}))")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # (B, I)
        h0, c0 = self._check_hx(hx, x, batched)
        _, h, c = loop.run_layer(self.cell, x.unsqueeze(0), h0, c0, self.weight_ih, self.weight_hh, self.bias_ih,
                                 self.bias_hh, None, False, nonlinearity=self.nonlinearity)  # one step: (B, H) each
        if not batched:
            h, c = h.squeeze(0), (c.squeeze(0) if c is not None else None)
        return (h, c) if c is not None else h

    def _check_hx(self, hx, x: Tensor, batched: bool) -> tuple[Tensor, Optional[Tensor]]:
        B, H = x.size(0), self.hidden_size
        is_lstm = self.cell in ("lstm", "cifg")
        if hx is None:
            zeros = x.new_zeros(B, H)
            return zeros, (zeros if is_lstm else None)
        if is_lstm and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"`hx` must be a tuple (h_0, c_0) for {type(self).__name__}: got {type(hx).__name__}")
        if not is_lstm and not isinstance(hx, Tensor):
            raise TypeError(f"`hx` must be a Tensor for {type(self).__name__}: got {type(hx).__name__}")
        states = [("hx[0]", hx[0]), ("hx[1]", hx[1])] if is_lstm else [("hx", hx)]
        expected = (B, H) if batched else (H,)
        for name, s in states:
            if tuple(s.shape) != expected:
                raise ShapeError(f"`{name}` must have shape (batch, hidden_size){'' if batched else ' without batch'}"
                                 f" as the input: expected {expected}, got {tuple(s.shape)}")
            if s.dtype != x.dtype:
                raise DTypeError(f"`{name}.dtype` must equal the input's: expected {x.dtype}, got {s.dtype}")
        out = [s if batched else s.unsqueeze(0) for _, s in states]
        return out[0], (out[1] if is_lstm else None)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += f", bias={self.bias}"
        if self.cell == "rnn" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        if self.forget_bias:
            s += f", forget_bias={self.forget_bias}"
        return s


class LSTMCell(RNNCellBase):
    r"""One LSTM step, a drop-in peer of :class:`torch.nn.LSTMCell`.

    .. math::
        \begin{array}{ll}
            i = \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}) \\
            f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
            g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
            o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
            c' = f \odot c + i \odot g \\
            h' = o \odot \tanh(c') \\
        \end{array}

    with :math:`\sigma` the sigmoid and :math:`\odot` the Hadamard product. Arguments, shapes and attributes:
    :mod:`rnnlab.nn.cells`.
    """

    cell, num_gates = "lstm", 4

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, forget_bias=0.0):
        super().__init__(input_size, hidden_size, bias, device, dtype, forget_bias=forget_bias)


class CIFGCell(RNNCellBase):
    r"""One step of the LSTM with coupled input and forget gates (:class:`rnnlab.nn.CIFGLSTM`); no torch peer.

    .. math::
        \begin{array}{ll}
            f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
            g = \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}) \\
            o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
            c' = f \odot c + (1 - f) \odot g \\
            h' = o \odot \tanh(c') \\
        \end{array}

    Gates packed (f, g, o): ``weight_ih`` is ``(3*hidden_size, input_size)``. See :mod:`rnnlab.nn.cells`.
    """

    cell, num_gates = "cifg", 3

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, forget_bias=0.0):
        super().__init__(input_size, hidden_size, bias, device, dtype, forget_bias=forget_bias)


class GRUCell(RNNCellBase):
    r"""One GRU step, a drop-in peer of :class:`torch.nn.GRUCell`.

    .. math::
        \begin{array}{ll}
            r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
            z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
            n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
            h' = (1 - z) \odot n + z \odot h
        \end{array}

    Gates packed (r, z, n). See :mod:`rnnlab.nn.cells`.
    """

    cell, num_gates = "gru", 3

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, device, dtype)


class RNNCell(RNNCellBase):
    r"""One Elman RNN step, a drop-in peer of :class:`torch.nn.RNNCell` (plus ``nonlinearity='identity'``).

    .. math::
        h' = \phi(W_{ih} x + b_{ih} + W_{hh} h + b_{hh})

    with :math:`\phi` tanh, ReLU or the identity. See :mod:`rnnlab.nn.cells`.
    """

    cell, num_gates = "rnn", 1

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, device, dtype, nonlinearity=nonlinearity)
