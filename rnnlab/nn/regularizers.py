r"""The regularizers of rnnlab's recurrent modules, as :class:`rnnlab.nn.base.RNNBase` applies them.

Each is a keyword argument of every module whose default changes nothing (docs/regularizers.md measures them):

``zoneout=z_h``, ``zoneout_cell=z_c`` (Krueger et al. 2017, "Zoneout"; ``z_c`` defaults to ``z_h``)
    In training each unit keeps its previous value with probability ``z``, a fresh Bernoulli mask
    :math:`d_t \sim \mathrm{Bernoulli}(z)` per step, sequence and unit; at evaluation the expectation:

    .. math::
        \text{train: } h_t = d^h_t \odot h_{t-1} + (1 - d^h_t) \odot \tilde h_t, \quad
        c_t = d^c_t \odot c_{t-1} + (1 - d^c_t) \odot \tilde c_t; \qquad
        \text{eval: } h_t = z_h h_{t-1} + (1 - z_h) \tilde h_t, \quad c_t = z_c c_{t-1} + (1 - z_c) \tilde c_t

    with :math:`\tilde h_t, \tilde c_t` the cell's own update from :math:`(h_{t-1}, c_{t-1})` (``z_c`` is for the
    LSTM and CIFG only). A zoned-out unit passes :math:`\partial J/\partial h_t` to :math:`h_{t-1}` unchanged: the
    identity path through time.

``weight_dropout=p`` (DropConnect on :math:`W_{hh}`; Wan et al. 2013, as AWD-LSTM and haste)
    One mask :math:`M \sim \mathrm{Bernoulli}(1 - p)` of ``weight_hh``'s shape per forward pass, per layer and
    direction, the same at every step and for every sequence: :math:`W_{hh} \to M \odot W_{hh} / (1 - p)` in
    training; :math:`W_{hh}` itself at evaluation.

``variational_dropout=p`` (locked dropout; Gal & Ghahramani 2016)
    One mask :math:`m \sim \mathrm{Bernoulli}(1 - p)` per sequence and feature, the same at every step, on the input
    of every layer and on the last layer's output: :math:`x_t \to m \odot x_t / (1 - p)` in training (the output of
    layer ``k`` is the input of layer ``k + 1``: one mask there). Nothing at evaluation.

``layer_norm=True`` (Ba, Kiros & Hinton 2016, as haste's LayerNormLSTM / LayerNormGRU)
    The input and recurrent pre-activations are normalised separately over their ``G*H`` entries, each with a learned
    gain :math:`\gamma` (init 1) and shift :math:`\beta` (init 0), before the biases; the LSTM's output reads a
    normalised cell:

    .. math::
        a_t = \mathrm{LN}(W_{ih} x_t; \gamma_{ih}, \beta_{ih}) + b_{ih} + \mathrm{LN}(W_{hh} h_{t-1}; \gamma_{hh},
        \beta_{hh}) + b_{hh}, \qquad h_t = o_t \odot \tanh(\mathrm{LN}(c_t; \gamma_c, \beta_c))

    with :math:`\mathrm{LN}(v; \gamma, \beta) = \gamma \odot (v - \mu(v)) / \sqrt{\sigma^2(v) + 10^{-5}} + \beta`.
    For the GRU the candidate's :math:`r_t \odot (\cdot)` reads the normalised recurrent term's ``n`` block. The
    parameters are ``ln_weight_ih_l[k]``, ``ln_bias_ih_l[k]``, ``ln_weight_hh_l[k]``, ``ln_bias_hh_l[k]`` (``G*H``)
    and, LSTM/CIFG, ``ln_weight_c_l[k]``, ``ln_bias_c_l[k]`` (``H``).

Every mask is drawn from torch's global generator, in a fixed order (per layer: the locked input mask, then per
direction the DropConnect mask and the zoneout masks h then c; the output mask last), so a seeded run — Lightning's
``seed_everything`` and the classifier's per-step reseeding (``model.step_seed``) — draws the same masks after a
resume. ``weight_dropout`` and ``variational_dropout`` only change what the backend is given, so they run on every
backend; ``zoneout``, ``layer_norm`` and :class:`rnnlab.nn.IndRNN` change the step and run on ``'loop'`` (the
module warns once and falls back).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_NAMES = ("ln_weight_ih", "ln_bias_ih", "ln_weight_hh", "ln_bias_hh", "ln_weight_c", "ln_bias_c")


def register_layer_norm(module: nn.Module, sfx: str, gh: int, hc: int, factory: dict) -> None:
    """Register one (layer, direction)'s LayerNorm gains and shifts: ``G*H`` each for the two pre-activations, ``hc``
    (H for the LSTM/CIFG, 0 = none) for the cell."""
    for name, width in zip(LN_NAMES, (gh, gh, gh, gh, hc, hc)):
        if width:
            module.register_parameter(name + sfx, nn.Parameter(torch.empty(width, **factory)))


@torch.no_grad()
def reset_layer_norm_(module: nn.Module) -> None:
    """Gains to 1, shifts to 0 (the identity normalisation, as torch.nn.LayerNorm); nothing without ``layer_norm``."""
    for name, p in module.named_parameters():
        if name.startswith(LN_NAMES):
            (p.fill_(1.0) if name.startswith("ln_weight") else p.zero_())


def loop_only(module) -> str:
    """What makes ``module`` run on the ``'loop'`` backend only (for the warning), or ``''``."""
    reasons = [f"{n}={getattr(module, n)}" for n in ("zoneout", "zoneout_cell") if getattr(module, n)]
    reasons += ["layer_norm=True"] if module.layer_norm else []
    reasons += ["cell='indrnn'"] if module.cell == "indrnn" else []
    return ", ".join(dict.fromkeys(reasons))


def locked_dropout(x: Tensor, p: float) -> Tensor:
    """``x`` (T, B, F) times one mask ``(1, B, F)`` ~ Bernoulli(1 - p), scaled by 1 / (1 - p): the same at every step."""
    mask = torch.bernoulli(x.new_full((1, *x.shape[1:]), 1.0 - p)) / (1.0 - p)
    return x * mask


def layer_weights(module, k: int, d: int, T: int, weights: list) -> list:
    """``[weight_ih, weight_hh, bias_ih, bias_hh]`` as the step reads them: IndRNN's u clamped to its bound, then
    ``weight_hh`` DropConnected in training (:math:`M \\odot W_{hh} / (1 - p)`, one mask per forward pass)."""
    w_ih, w_hh, b_ih, b_hh = weights
    if module.cell == "indrnn":
        w_hh = module.constrained(w_hh, T)
    if module.weight_dropout and module.training:
        w_hh = F.dropout(w_hh, module.weight_dropout, True)
    return [w_ih, w_hh, b_ih, b_hh]


def step_options(module, k: int, d: int, T: int, h0: Tensor, training: Optional[bool] = None) -> dict:
    """The keyword arguments of :func:`rnnlab.nn.backends.loop.run_layer` for ``zoneout`` and ``layer_norm``: none
    when both are off, so every backend is called as before. ``training`` (default: the module's mode) False gives
    the evaluation-time step (zoneout's expectation)."""
    training = module.training if training is None else training
    out = {}
    z_h, z_c = module.zoneout, (module.zoneout_cell if module.cell in ("lstm", "cifg") else 0.0)
    if z_h or z_c:
        B, H = h0.shape[0], module.hidden_size
        out["zoneout"] = (_zoneout_mask(z_h, (T, *h0.shape), h0, training),
                          _zoneout_mask(z_c, (T, B, H), h0, training))
    if module.layer_norm:
        sfx = f"_l{k}" + ("_reverse" if d == 1 else "")
        out["layer_norm"] = tuple(getattr(module, n + sfx, None) for n in LN_NAMES)
    return out


def _zoneout_mask(z: float, shape: tuple, like: Tensor, training: bool):
    """None (z = 0); in training a 0/1 mask of ``shape`` (1 = keep the previous value); at evaluation ``z`` itself."""
    if not z:
        return None
    return torch.bernoulli(like.new_full(shape, z)) if training else z


def extra_repr(module) -> str:
    """The regularizers that are on, for the module's repr."""
    s = ""
    if module.zoneout:
        s += f", zoneout={module.zoneout}"
    if module.cell in ("lstm", "cifg") and module.zoneout_cell != module.zoneout:
        s += f", zoneout_cell={module.zoneout_cell}"
    for name in ("weight_dropout", "variational_dropout"):
        if getattr(module, name):
            s += f", {name}={getattr(module, name)}"
    return s + (", layer_norm=True" if module.layer_norm else "")


def recurrent_bound(recurrent_max: Optional[float], T: int) -> float:
    """IndRNN's bound on |u|: ``recurrent_max``, or :math:`2^{1/T}` for a sequence of ``T`` steps (Li et al. 2018:
    :math:`\\prod_t |u| \\le 2` over the sequence, so the gradient through time grows at most twofold)."""
    return recurrent_max if recurrent_max is not None else 2.0 ** (1.0 / T)
