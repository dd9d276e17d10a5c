"""The reference recurrence: one layer, one direction, a plain Python loop over time under autograd.

The cell equations are written here once as the reference, and as code in three faster copies, each held to this one
by tests in float64 (all cells, lengths, both directions, gradients and the recorded norms):

=====================================================  ===========================================================
copy                                                   kept equal by
=====================================================  ===========================================================
``backends/fused.py`` (Python per-step loops)          tests/test_fused.py
``backends/csrc/fused_loops.cpp`` (C++ loops)          tests/test_fused.py (with the extension built)
``backends/triton/step_kernels.py``,                   tests/test_triton.py, tests/test_triton_persistent.py
``persistent_kernels.py`` (``split_kernels.py``        (under ``TRITON_INTERPRET=1``)
reuses the latter's cell functions)
=====================================================  ===========================================================

and this reference against ``torch.nn`` (tests/test_nn_parity.py) and against an independent per-gate
implementation (tests/test_nn_reference.py). :class:`rnnlab.nn.base.RNNBase` only stacks layers and directions
around one of them; the cells' docstrings (``rnnlab/nn/_docs.py``) typeset the same equations.

Gate packing (rows of ``weight_ih`` / ``weight_hh``, entries of the biases), as in ``torch.nn``:

===========================  =============  ======
cell                         gates          rows
===========================  =============  ======
``'lstm'``                   i, f, g, o     4H
``'lstm'``, forget_gate=0    i, g, o        3H
``'cifg'``                   f, g, o        3H
``'lstm'``, variant=nig      f, g, o        3H
``'lstm'``, variant=nog      i, f, g        3H
``'lstm'``, variant=niaf,    i, f, g, o     4H
noaf, fgr
``'gru'``                    r, z, n        3H
``'rnn'``                    (one)          H
``'indrnn'``                 (one)          H; ``weight_hh`` is the vector u ``(H,)``
===========================  =============  ======

Regularizers of :class:`rnnlab.nn.base.RNNBase` that change the step (``zoneout``, ``layer_norm``) are keyword
arguments of :func:`run_layer` with defaults that change nothing; those that act on weights, inputs or outputs only
(``weight_dropout``, ``variational_dropout``) are applied by the module around any backend.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlab.nn.backends import KERNEL_CELLS
from rnnlab.nn.norms import grad_norm

# the loop reference runs every kernel cell and IndRNN (its recurrent weight is a vector u: no fused kernel)
LOOP_CELLS = KERNEL_CELLS + ("indrnn",)
#: Greff et al. (2017)'s LSTM variants: the gates each one packs (torch order) and the sigmoid gates with peepholes.
VARIANT_GATES = {"vanilla": "ifgo", "np": "ifgo", "nig": "fgo", "nfg": "igo", "nog": "ifg", "niaf": "ifgo",
                 "noaf": "ifgo", "cifg": "fgo", "fgr": "ifgo"}
VARIANTS = tuple(VARIANT_GATES)
NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda x: x}


def run_layer(
    cell: str,
    x: Tensor,
    h0: Tensor,
    c0: Optional[Tensor],
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Optional[Tensor],
    bias_hh: Optional[Tensor],
    lengths: Optional[Tensor],
    reverse: bool,
    *,
    nonlinearity: str = "tanh",
    forget_gate: bool = True,
    grad_norms: Optional[Tensor] = None,
    weight_hr: Optional[Tensor] = None,
    zoneout: Optional[tuple] = None,
    layer_norm: Optional[tuple] = None,
    variant: str = "vanilla",
    weight_peephole: Optional[Tensor] = None,
    weight_gg: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    r"""Run one recurrent layer in one direction over a time-major batch.

    Args:
        cell: ``'lstm'``, ``'cifg'``, ``'gru'`` or ``'rnn'``.
        x: input ``(T, B, I)``.
        h0: initial hidden state ``(B, H)``.
        c0: initial cell state ``(B, H)`` for ``'lstm'``/``'cifg'``, ``None`` otherwise.
        weight_ih, weight_hh: ``(G*H, I)`` and ``(G*H, H)``, gates packed as in the module docstring.
        bias_ih, bias_hh: ``(G*H,)`` or ``None`` (``bias=False``).
        lengths: ``None`` (every sequence has T steps) or int64 ``(B,)`` on ``x.device`` with
            ``1 <= lengths <= T``. Steps ``t >= lengths[b]`` are padding: they keep the state and output zeros.
        reverse: walk ``t = T-1, ..., 0``. A sequence's state stays ``h0`` until its own last token,
            so the reverse direction starts at each sequence's own last token (as ``pack_padded_sequence``).
        nonlinearity: ``'tanh'``, ``'relu'`` or ``'identity'`` (``'rnn'`` only).
        forget_gate: ``'lstm'`` only; ``False`` is the 1997 LSTM, :math:`c_t = c_{t-1} + i_t \odot g_t`.
        grad_norms: ``None`` or a float tensor ``(B, T)``; the backward pass writes into it, in place,
            :math:`\lVert \partial J / \partial h_t \rVert_2` over hidden units: the total derivative of the loss
            with respect to :math:`h_t` (through the output at ``t`` and through the recurrence), ``t`` in input
            order, zero at padded steps.
        weight_hr: ``'lstm'`` only: ``None``, or the projection ``(P, H)`` of torch's ``LSTM(proj_size=P)``,
            :math:`h_t = W_{hr} (o_t \odot \tanh(c_t))`; then ``h0``, ``out`` and ``h_n`` have ``P`` columns and
            ``weight_hh`` is ``(G*H, P)``.
        zoneout: ``None``, or ``(d_h, d_c)`` (Krueger et al. 2017), each ``None`` (no zoneout of that state), a
            tensor ``(T, B, H)`` of 0/1 masks indexed by ``t`` in input order (training: 1 keeps the unit's previous
            value), or a float ``z`` (evaluation: the expectation). With :math:`\tilde h_t, \tilde c_t` the cell's
            new states, :math:`h_t = d_t \odot h_{t-1} + (1 - d_t) \odot \tilde h_t` (``z`` in place of
            :math:`d_t` at evaluation), and likewise :math:`c_t` with ``d_c`` (``'lstm'``/``'cifg'``).
        layer_norm: ``None``, or ``(gain_ih, shift_ih, gain_hh, shift_hh, gain_c, shift_c)`` (haste's
            LayerNormLSTM/GRU): the pre-activations become
            :math:`\mathrm{LN}(W_{ih} x_t; \gamma_{ih}, \beta_{ih}) + b_{ih} + \mathrm{LN}(W_{hh} h_{t-1};
            \gamma_{hh}, \beta_{hh}) + b_{hh}`, normalised over all ``G*H`` entries, and the LSTM's output
            :math:`h_t = o_t \odot \tanh(\mathrm{LN}(c_t; \gamma_c, \beta_c))` (the state :math:`c_t` itself
            is not normalised); ``gain_c``/``shift_c`` are ``None`` for ``'gru'``/``'rnn'``.
        ``cell='indrnn'`` (Li et al. 2018) takes ``weight_hh`` as the vector u ``(H,)`` and computes
        :math:`h_t = \phi(W_{ih} x_t + b_{ih} + u \odot h_{t-1} + b_{hh})`; the constraint on u is the module's
        (:class:`rnnlab.nn.IndRNN`).
        variant: ``'lstm'`` only: one of :data:`VARIANTS`, Greff et al. (2017)'s LSTM variants (equations in
            :class:`rnnlab.nn.LSTM`); ``'nfg'`` is ``forget_gate=False``, ``'np'`` is ``'vanilla'``.
        weight_peephole: ``'lstm'`` only: ``None``, or the peephole weights ``(S*H,)`` of the ``S`` sigmoid gates of
            the variant in the order (i, f, o): :math:`p_i \odot c_{t-1}`, :math:`p_f \odot c_{t-1}` and
            :math:`p_o \odot c_t` are added to their gates' preactivations.
        weight_gg: ``variant='fgr'`` only: the gate-to-gate recurrence :math:`(R_i|R_f|R_o)` ``(3H, 3H)``: the i, f, o
            preactivations at ``t`` also get :math:`R [i_{t-1}; f_{t-1}; o_{t-1}]` (zeros before the first step).

    Returns:
        ``(out, h_n, c_n)``: ``out`` ``(T, B, H)`` zero at padded steps; ``h_n``, ``c_n`` ``(B, H)`` the states at
        each sequence's own last step (``c_n`` is ``None`` for ``'gru'``/``'rnn'``).

    Nothing here reads a tensor value on the host, so the loop never synchronises with a CUDA device.
    """
    if cell not in LOOP_CELLS:
        raise ValueError(f"`cell` must be one of {LOOP_CELLS}: got {cell!r}")
    if weight_hr is not None and cell != "lstm":
        raise ValueError(f"`weight_hr` (a projection) must be None unless cell is 'lstm': got cell {cell!r}")
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}: got {variant!r}")
    general = variant not in ("vanilla", "np") or weight_peephole is not None  # Greff's variants: _lstm_variant_step
    if general and cell != "lstm":
        raise ValueError(f"`variant` and `weight_peephole` are options of cell 'lstm': got cell {cell!r}")
    if (weight_gg is not None) != (variant == "fgr"):
        raise ValueError(f"`weight_gg` (3H, 3H) must be given exactly when variant is 'fgr': got variant {variant!r}"
                         f" and weight_gg {'given' if weight_gg is not None else 'None'}")
    if general and layer_norm is not None:
        raise ValueError(f"`layer_norm` is not supported with `variant` {variant!r} or `weight_peephole`: "
                         "expected variant 'vanilla'/'np' without peepholes, or layer_norm off")
    T = x.size(0)
    act = NONLINEARITIES[nonlinearity]
    ln_ih, ln_hh, ln_c = (None, None, None) if layer_norm is None else (layer_norm[0:2], layer_norm[2:4], layer_norm[4:6])
    gi = _preactivation(x, weight_ih, bias_ih, ln_ih)  # (T, B, G*H): the input projection of every step in one matmul
    tanh_c = torch.tanh if ln_c is None or ln_c[0] is None else lambda c: torch.tanh(_norm(c, ln_c))
    d_h, d_c = (None, None) if zoneout is None else zoneout
    if lengths is not None:
        valid = torch.arange(T, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B) bool
        valid = valid.unsqueeze(-1)  # (T, B, 1)
    record = grad_norms is not None and torch.is_grad_enabled()

    h, c = h0, c0
    a = h0.new_zeros(h0.size(0), weight_gg.size(1)) if variant == "fgr" else None  # [i, f, o]_{t-1}: (B, 3H)
    outs: list[Optional[Tensor]] = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        if cell == "indrnn":
            gh = _preactivation(h, None, bias_hh, ln_hh, diagonal=weight_hh)  # u ⊙ h_{t-1} + b_hh: (B, H)
        else:
            gh = _preactivation(h, weight_hh, bias_hh, ln_hh)  # (B, G*H)
        if general:
            h_new, c_new, a_new = _lstm_variant_step(variant, gi[t] + gh, c, weight_peephole, weight_gg, a)
        elif cell == "lstm" and forget_gate:
            i, f, g, o = (gi[t] + gh).chunk(4, 1)  # 4 x (B, H)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c_new = f * c + i * g  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
            h_new = o * tanh_c(c_new)  # h_t = o_t ⊙ tanh(c_t)
        elif cell == "lstm":
            i, g, o = (gi[t] + gh).chunk(3, 1)  # 3 x (B, H)
            i, g, o = torch.sigmoid(i), torch.tanh(g), torch.sigmoid(o)
            c_new = c + i * g  # c_t = c_{t-1} + i_t ⊙ g_t  (no forget gate, 1997)
            h_new = o * tanh_c(c_new)  # h_t = o_t ⊙ tanh(c_t)
        elif cell == "cifg":
            f, g, o = (gi[t] + gh).chunk(3, 1)  # 3 x (B, H)
            f, g, o = torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c_new = f * c + (1 - f) * g  # c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ g_t, i.e. i_t = 1 - f_t
            h_new = o * tanh_c(c_new)  # h_t = o_t ⊙ tanh(c_t)
        elif cell == "gru":
            ir, iz, in_ = gi[t].chunk(3, 1)  # 3 x (B, H)
            hr, hz, hn = gh.chunk(3, 1)  # 3 x (B, H)
            r = torch.sigmoid(ir + hr)  # r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
            z = torch.sigmoid(iz + hz)  # z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
            n = torch.tanh(in_ + r * hn)  # n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
            h_new = (1 - z) * n + z * h  # h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}
            c_new = None
        else:
            h_new = act(gi[t] + gh)  # h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)  (indrnn: u ⊙ h_{t-1})
            c_new = None
        if weight_hr is not None:
            h_new = F.linear(h_new, weight_hr)  # h_t = W_hr (o_t ⊙ tanh(c_t)): (B, P)
        if d_h is not None:
            h_new = _zone(d_h, t, h, h_new)  # h_t = d_t ⊙ h_{t-1} + (1 - d_t) ⊙ h~_t
        if d_c is not None and c_new is not None:
            c_new = _zone(d_c, t, c, c_new)  # c_t = d_t ⊙ c_{t-1} + (1 - d_t) ⊙ c~_t

        if record and h_new.requires_grad:
            h_new.register_hook(_norm_writer(grad_norms, t))
        if lengths is None:
            h, c, outs[t] = h_new, c_new, h_new
            a = a_new if a is not None else None
        else:
            m = valid[t]  # (B, 1): padded steps keep the state and output zeros
            h = torch.where(m, h_new, h)
            c = torch.where(m, c_new, c) if c is not None else None
            a = torch.where(m, a_new, a) if a is not None else None
            outs[t] = torch.where(m, h_new, 0.0)
    return torch.stack(outs), h, c  # (T, B, H), (B, H), (B, H) | None


LN_EPS = 1e-5  # haste's and torch.nn.LayerNorm's epsilon


def _norm(v: Tensor, ln: tuple) -> Tensor:
    """LN(v; γ, β) = γ ⊙ (v - mean(v)) / sqrt(var(v) + ε) + β over the last dimension (biased variance)."""
    return F.layer_norm(v, v.shape[-1:], ln[0], ln[1], LN_EPS)


def _preactivation(v: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], ln: Optional[tuple],
                   diagonal: Optional[Tensor] = None) -> Tensor:
    """``W v + b``; ``u ⊙ v + b`` with ``diagonal=u``; with ``ln``: ``LN(W v; γ, β) + b`` (the bias after the norm)."""
    if diagonal is None and ln is None:
        return F.linear(v, weight, bias)
    wv = v * diagonal if diagonal is not None else F.linear(v, weight)
    if ln is not None:
        wv = _norm(wv, ln)
    return wv if bias is None else wv + bias


def _zone(d, t: int, prev: Tensor, new: Tensor) -> Tensor:
    """Zoneout of one state: ``d ⊙ prev + (1 - d) ⊙ new`` with ``d`` the step's mask ``d[t]`` (training) or the
    probability ``z`` itself (evaluation, the expectation)."""
    d = d[t] if isinstance(d, Tensor) else d
    return new + d * (prev - new)
def _lstm_variant_step(variant: str, z: Tensor, c: Tensor, weight_peephole: Optional[Tensor],
                       weight_gg: Optional[Tensor], a: Optional[Tensor]) -> tuple[Tensor, Tensor, Optional[Tensor]]:
    r"""One step of a Greff et al. (2017) variant from the preactivations ``z`` :math:`= W_{ih} x_t + b_{ih} + W_{hh}
    h_{t-1} + b_{hh}` ``(B, G*H)``; returns :math:`(\tilde h_t, \tilde c_t)` and, for ``'fgr'``, :math:`[i_t; f_t;
    o_t]` ``(B, 3H)`` (else ``None``). The equations are those of :class:`rnnlab.nn.LSTM`'s docstring."""
    names = VARIANT_GATES[variant]
    pre = dict(zip(names, z.chunk(len(names), 1)))  # gate name -> (B, H) preactivation
    if weight_gg is not None:  # FGR: + R_{ji} j_{t-1} for j in (i, f, o)
        for k, gz in zip("ifo", F.linear(a, weight_gg).chunk(3, 1)):
            pre[k] = pre[k] + gz
    sig = [k for k in "ifo" if k in names]  # the sigmoid gates, with a peephole each if weight_peephole is given
    peep = dict(zip(sig, weight_peephole.chunk(len(sig)))) if weight_peephole is not None else {}  # (H,) each
    if "i" in peep:
        pre["i"] = pre["i"] + peep["i"] * c  # + p_i ⊙ c_{t-1}
    if "f" in peep:
        pre["f"] = pre["f"] + peep["f"] * c  # + p_f ⊙ c_{t-1}
    f = torch.sigmoid(pre["f"]) if "f" in names else None  # f_t; NFG: 1
    if variant == "cifg":
        i = 1 - f  # i_t = 1 - f_t
    else:
        i = torch.sigmoid(pre["i"]) if "i" in names else None  # i_t; NIG: 1
    g = pre["g"] if variant == "niaf" else torch.tanh(pre["g"])  # g_t; NIAF: linear
    ig = g if i is None else i * g
    c_new = c + ig if f is None else f * c + ig  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    if "o" in names:
        o = torch.sigmoid(pre["o"] + peep["o"] * c_new if "o" in peep else pre["o"])  # o_t, peephole p_o ⊙ c_t
    else:
        o = None  # NOG: o_t = 1
    act = c_new if variant == "noaf" else torch.tanh(c_new)  # NOAF: h_t = o_t ⊙ c_t
    h_new = act if o is None else o * act  # h_t = o_t ⊙ tanh(c_t)
    a_new = torch.cat([i, f, o], 1) if variant == "fgr" else None  # (B, 3H)
    return h_new, c_new, a_new


def _norm_writer(buf: Tensor, t: int):
    """A hook that stores ||dJ/dh_t||_2 per sequence into column t of buf (B, T).

    The gradient reaching ``h_new`` is the total derivative: both the output at ``t`` and the next step read
    ``h_new`` (through ``torch.where`` at padded steps, which routes nothing to it, hence the zeros there).
    """

    def hook(grad: Tensor) -> None:
        grad_norm(grad, dim=-1, out=buf[:, t])  # (B,), exact where the squares would underflow

    return hook
