"""IndRNN: the independently recurrent network of Li et al. (2018), each unit its own scalar recurrence."""
from __future__ import annotations

import math
import numbers
from typing import Optional

import torch
from torch import Tensor, nn

from rnnlab.nn import regularizers
from rnnlab.nn._docs import args_doc, shapes_doc
from rnnlab.nn.base import RNNBase


class IndRNN(RNNBase):
    __doc__ = r"""Multi-layer independently recurrent network (IndRNN), Li et al. (2018), "Independently Recurrent
    Neural Network (IndRNN): Building A Longer and Deeper RNN". No ``torch.nn`` peer.

    For each element in the input sequence, each layer computes:

    .. math::
        h_t = \phi(W_{ih} x_t + b_{ih} + u \odot h_{t-1} + b_{hh}), \qquad
        u \leftarrow \mathrm{clamp}(u, -u_{\max}, u_{\max})

    with :math:`u` a vector (``weight_hh_l[k]``, ``(hidden_size,)``): unit :math:`j` reads only its own past,
    so :math:`\partial h_t / \partial h_{t-1} = \mathrm{diag}(\phi' \odot u)` and the gradient over :math:`T` steps is
    a product of scalars per unit. The constraint :math:`|u| \le u_{\max}` keeps that product bounded: the step
    reads :math:`u` clamped to :math:`[-u_{\max}, u_{\max}]` (its gradient is zero where the clamp binds), with
    :math:`u_{\max}` = ``recurrent_max``, or :math:`2^{1/T}` for a sequence of :math:`T` steps when it is ``None``
    (Li et al.: :math:`|u|^T \le 2`). Runs on the ``'loop'`` backend (another warns once and steps aside to it).
    """ + args_doc("IndRNN", nonlinearity=True) + r"""        recurrent_max: :math:`u_{\max} > 0`, or ``None``
            for :math:`2^{1/T}`. Default: ``None``
    """ + shapes_doc(lstm=False) + r"""
    Attributes:
        weight_ih_l[k]: ``(hidden_size, input_size)`` for k = 0, else ``(hidden_size, num_directions * hidden_size)``
        weight_hh_l[k]: the recurrent vector :math:`u`, ``(hidden_size,)``, drawn from :math:`\mathcal{U}(0, 1)`
        bias_ih_l[k], bias_hh_l[k]: ``(hidden_size,)``

    Examples::

        >>> rnn = IndRNN(10, 20, 2, nonlinearity="relu")
        >>> output, hn = rnn(torch.randn(5, 3, 10))
        >>> output.shape, rnn.weight_hh_l0.shape
        (torch.Size([5, 3, 20]), torch.Size([20]))
    """

    cell = "indrnn"
    torch_peer = None

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="relu", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None, *, recurrent_max: Optional[float] = None,
                 init="torch", backend="auto", **regularizers_):
        if recurrent_max is not None and (not isinstance(recurrent_max, numbers.Real) or isinstance(recurrent_max, bool)
                                          or not recurrent_max > 0):
            raise ValueError(f"`recurrent_max` must be None or a number > 0 (the bound on |u|): got {recurrent_max!r}")
        self.recurrent_max = None if recurrent_max is None else float(recurrent_max)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype,
                         nonlinearity=nonlinearity, init=init, backend=backend, **regularizers_)

    def _weight_hh_shape(self, h_out: int) -> tuple[int, ...]:
        return (self.hidden_size,)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """u ~ U(0, 1) (Li et al.); the rest as ``init``: torch's U(-1/sqrt(H), 1/sqrt(H)) everywhere, or Keras'
        Glorot-uniform ``weight_ih`` and zero biases."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for name, p in self.named_parameters():
            if name.startswith("weight_hh"):
                nn.init.uniform_(p, 0.0, 1.0)
            elif self.init == "keras":
                nn.init.xavier_uniform_(p) if name.startswith("weight_ih") else nn.init.zeros_(p)
            else:
                nn.init.uniform_(p, -stdv, stdv)
        regularizers.reset_layer_norm_(self)

    def constrained(self, u: Tensor, T: int) -> Tensor:
        """u clamped to ``[-b, b]``, ``b`` = :func:`rnnlab.nn.regularizers.recurrent_bound` for ``T`` steps."""
        bound = regularizers.recurrent_bound(self.recurrent_max, T)
        return u.clamp(-bound, bound)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        s += f", nonlinearity={self.nonlinearity!r}" if self.nonlinearity != "relu" else ""
        return s + (f", recurrent_max={self.recurrent_max}" if self.recurrent_max is not None else "")
