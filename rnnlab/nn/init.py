"""Weight initialisation of the recurrent modules: torch's draws or Keras' defaults, then the forget bias.

``'torch'``
    Every parameter, in registration order, drawn from :math:`\\mathcal{U}(-k, k)` with
    :math:`k = 1/\\sqrt{H}`, exactly as ``torch.nn.RNNBase.reset_parameters``: with the same seed and
    ``forget_bias=0`` (the default), ``rnnlab.nn.LSTM`` and ``torch.nn.LSTM`` hold identical weights.
``'keras'``
    Keras' defaults for ``LSTM``/``GRU``/``SimpleRNN``: ``kernel_initializer='glorot_uniform'`` on the input
    weights (Keras' kernel is ``(I, G*H)``, ours its transpose ``(G*H, I)``, so the bound
    :math:`\\sqrt{6 / (I + G H)}` is the same), ``recurrent_initializer='orthogonal'`` on the recurrent weights
    (one orthogonal draw for the whole ``(H, G*H)`` recurrent kernel, as Keras does: its rows are orthonormal,
    so our ``weight_hh`` ``(G*H, H)`` has orthonormal columns, :math:`W_{hh}^\\top W_{hh} = I`; the per-gate
    ``(H, H)`` blocks are not orthogonal unless ``G = 1``), ``bias_initializer='zeros'``. Keras packs GRU gates
    (z, r, h) where torch packs (r, z, n); both draws are exchangeable across gate blocks, so the distribution
    is the same.

Forget bias
    Then ``forget_bias`` is added to the forget-gate slice of ``bias_ih`` (LSTM rows ``H:2H``, CIFG rows ``0:H``),
    as recommended by Jozefowicz, Zaremba & Sutskever (2015), "An Empirical Exploration of Recurrent Network
    Architectures" (ICML), and done by Keras' ``unit_forget_bias=True`` (which sets the forget bias to 1).
    It is not applied when there is no forget gate (``LSTM(forget_gate=False)``, GRU, RNN) nor when there
    are no biases (``bias=False``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("torch", "keras")


@torch.no_grad()
def init_torch_(module: nn.Module) -> None:
    """torch.nn's draw: U(-1/sqrt(H), 1/sqrt(H)) for every parameter, in registration order."""
    stdv = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0.0
    for weight in module.parameters():
        nn.init.uniform_(weight, -stdv, stdv)


@torch.no_grad()
def init_keras_(module: nn.Module) -> None:
    """Keras' defaults: Glorot-uniform input weights, orthogonal recurrent weights, zero biases."""
    for name, weight in module.named_parameters():
        if name.startswith(("weight_ih", "weight_hr")):
            nn.init.xavier_uniform_(weight)  # fan_in = I, fan_out = G*H, as Keras' kernel (I, G*H); W_hr likewise
        elif name.startswith("weight_hh"):
            # (G*H, H) with orthonormal columns = transpose of Keras' (H, G*H) kernel with orthonormal rows.
            # orthogonal_ has no half-precision QR: draw in float32 and copy.
            weight.copy_(nn.init.orthogonal_(torch.empty(weight.shape, device=weight.device)))
        else:
            nn.init.zeros_(weight)


def _forget_slice(module: nn.Module):
    if hasattr(module, "forget_slice"):  # rnnlab modules
        return module.forget_slice()
    if isinstance(module, nn.LSTM):  # torch.nn.LSTM: (i, f, g, o)
        return slice(module.hidden_size, 2 * module.hidden_size)
    return None


@torch.no_grad()
def add_forget_bias_(module: nn.Module, forget_bias: float) -> None:
    """Add ``forget_bias`` to the forget-gate slice of every ``bias_ih`` (no-op without a forget gate or bias).
    Works on rnnlab modules and on ``torch.nn.LSTM``."""
    sl = _forget_slice(module)
    if sl is None or not module.bias or forget_bias == 0:
        return
    for name, weight in module.named_parameters():
        if name.startswith("bias_ih"):
            weight[sl] += forget_bias


def keras_init_(module: nn.Module, forget_bias: float = 1.0) -> None:
    """Keras' LSTM/GRU/SimpleRNN initialisation, with ``unit_forget_bias`` as ``forget_bias``, on an rnnlab module
    or on a ``torch.nn.LSTM``/``GRU``/``RNN`` (so a torch baseline can start from exactly the same law)."""
    init_keras_(module)
    add_forget_bias_(module, forget_bias)


def reset_parameters_(module: nn.Module, init: str, forget_bias: float) -> None:
    if init == "torch":
        init_torch_(module)
    elif init == "keras":
        init_keras_(module)
    else:
        raise ValueError(f"`init` must be one of {INITS}: got {init!r}")
    add_forget_bias_(module, forget_bias)


RECURRENT_INITS = ("orthogonal", "identity", "uniform")


@torch.no_grad()
def recurrent_init_(module: nn.Module, kind: str, scale: float = 1.0) -> None:
    """Redraw every ``weight_hh`` gate block ``(H, H)`` of ``module`` so its spectral radius is about ``scale``.

    ``kind``:

    * ``'orthogonal'``: :math:`W = s\\,Q`, :math:`Q` a random orthogonal matrix (all singular values :math:`s`);
    * ``'identity'``: :math:`W = s\\,I` (the IRNN of Le, Jaitly & Hinton 2015 with ``s = 1`` and ReLU);
    * ``'uniform'``: i.i.d. :math:`\\mathcal{U}(-a, a)` with :math:`a = s \\sqrt{3 / H}`, whose spectral radius
      tends to :math:`s` for large ``H`` (circular law: entries of variance :math:`s^2 / H`).

    Each of the ``G`` gate blocks of ``weight_hh`` ``(G*H, H)`` gets its own draw, so every gate sees the same
    radius. The linearised recurrence :math:`h_t \\approx W h_{t-1}` then grows or shrinks like :math:`s^t`: with
    ``s > 1`` the backpropagated gradient can explode, with ``s < 1`` it vanishes (Pascanu, Mikolov & Bengio 2013).
    Biases and input weights are left as they are. Works on rnnlab modules and ``torch.nn.LSTM``/``GRU``/``RNN``.

    >>> m = torch.nn.RNN(3, 4)
    >>> recurrent_init_(m, "identity", 0.5)
    >>> m.weight_hh_l0
    Parameter containing:
    tensor([[0.5000, 0.0000, 0.0000, 0.0000],
            [0.0000, 0.5000, 0.0000, 0.0000],
            [0.0000, 0.0000, 0.5000, 0.0000],
            [0.0000, 0.0000, 0.0000, 0.5000]], requires_grad=True)
    """
    if kind not in RECURRENT_INITS:
        raise ValueError(f"`recurrent_init` must be one of {RECURRENT_INITS}: got {kind!r}")
    if not scale >= 0:
        raise ValueError(f"`recurrent_scale` must be >= 0 (the spectral radius of W_hh): got {scale!r}")
    H = module.hidden_size
    for name, weight in module.named_parameters():
        if not name.startswith("weight_hh"):
            continue
        for block in weight.split(H, dim=0):  # G views (H, H), one per gate
            if kind == "orthogonal":
                block.copy_(scale * nn.init.orthogonal_(torch.empty(H, H, device=weight.device)))
            elif kind == "identity":
                block.copy_(scale * torch.eye(H, device=weight.device))
            else:
                nn.init.uniform_(block, -scale * math.sqrt(3.0 / H), scale * math.sqrt(3.0 / H))
