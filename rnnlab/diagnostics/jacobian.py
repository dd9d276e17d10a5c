"""The per-step Jacobian of a recurrent layer, and the norm of its recurrent weights.

The gradient reaching the state :math:`s_t` of one layer and direction is a product of per-step Jacobians,

.. math::
    \\frac{\\partial J}{\\partial s_t} = \\frac{\\partial J}{\\partial s_T}
        \\prod_{k=t+1}^{T} \\frac{\\partial s_k}{\\partial s_{k-1}}, \\qquad
    \\left\\lVert \\frac{\\partial J}{\\partial s_t} \\right\\rVert \\le
        \\left\\lVert \\frac{\\partial J}{\\partial s_T} \\right\\rVert \\prod_{k=t+1}^{T} \\sigma_k, \\qquad
    \\sigma_k = \\sigma_{\\max}\\!\\left(\\frac{\\partial s_k}{\\partial s_{k-1}}\\right)

(when the loss reads only :math:`s_T`, as the adding problem's head). The state is :math:`s_t = h_t` for ``gru``
and ``rnn`` and :math:`s_t = (h_t, c_t)` for ``lstm`` and ``cifg``; the Jacobian includes the gates, evaluated at
the actual inputs and states of the sequence. :func:`step_jacobian_norms` gives :math:`\\sigma_k` for every step of
every sequence at once: the step map is independent per sample, so the ``T * B`` Jacobians are one batched map, and
its largest singular value comes from power iteration on :math:`J^\\top J` with one Jacobian-vector product and
one vector-Jacobian product per iteration (``torch.func.jvp`` / ``torch.func.vjp``). The cell equations are
:func:`rnnlab.nn.backends.loop.run_layer` on one step, the reference every backend matches.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.nn import regularizers
from rnnlab.nn.backends.loop import run_layer

__all__ = ["layer_states", "step_jacobian_norms", "recurrent_weight_norms", "jacobian_norms"]


def _has_cell_state(module: nn.Module) -> bool:
    return module.cell in ("lstm", "cifg")


def _step_fn(module: nn.Module, k: int, d: int, T: int):
    """``(x (N, I), h (N, H), c (N, H) | None) -> (h', c')``: one evaluation-time step of layer ``k``, direction ``d``
    of a sequence of ``T`` steps (IndRNN's bound depends on it; zoneout enters as its expectation)."""
    weights = [None if w is None else w.detach() for w in module._layer_weights(k, d)]
    if module.cell == "indrnn":
        weights[1] = module.constrained(weights[1], T)
    options = lambda h: {k_: tuple(v if v is None or isinstance(v, float) else v.detach() for v in vs)  # noqa: E731
                         for k_, vs in regularizers.step_options(module, k, d, 1, h, training=False).items()}
    variant = {}  # an LSTM variant's own arguments (rnnlab.nn.LSTM(variant=..., peephole=...)), detached
    if module.cell == "lstm":
        variant = {n: v.detach() if isinstance(v, Tensor) else v
                   for n, v in module._loop_only_kwargs(k, d).items() if n != "weight_hr"}

    def step(x, h, c):
        _, h1, c1 = run_layer(module.cell, x.unsqueeze(0), h, c, *weights, None, False,
                              nonlinearity=module.nonlinearity, forget_gate=module.forget_gate, **variant, **options(h))
        return h1, c1

    return step


@torch.no_grad()
def layer_states(module: nn.Module, k: int, d: int, x: Tensor, lengths: Tensor | None = None):
    """Inputs and states of layer ``k``, direction ``d`` at every step of a time-major input ``x`` (T, B, I).

    Returns ``(prev_h, prev_c, out, valid)``: the state each step starts from, ``(T, B, H)`` each (``prev_c`` is
    ``None`` without a cell state), the outputs ``(T, B, H)`` (zero at padded steps) and ``valid`` ``(T, B)``.
    Zero initial state, as :class:`rnnlab.nn.RNNBase` without ``hx``.
    """
    T, B = x.shape[:2]
    H = module.hidden_size
    step = _step_fn(module, k, d, x.size(0))
    valid = torch.ones(T, B, dtype=torch.bool, device=x.device)
    if lengths is not None:
        valid = torch.arange(T, device=x.device).unsqueeze(1) < lengths.to(x.device).unsqueeze(0)  # (T, B)
    h = x.new_zeros(B, H)
    c = x.new_zeros(B, H) if _has_cell_state(module) else None
    prev_h, out = x.new_zeros(T, B, H), x.new_zeros(T, B, H)
    prev_c = x.new_zeros(T, B, H) if c is not None else None
    for t in (range(T - 1, -1, -1) if d == 1 else range(T)):
        prev_h[t] = h
        if c is not None:
            prev_c[t] = c
        h1, c1 = step(x[t], h, c)
        m = valid[t].unsqueeze(-1)  # (B, 1): padded steps keep the state
        h = torch.where(m, h1, h)
        c = torch.where(m, c1, c) if c is not None else None
        out[t] = torch.where(m, h1, 0.0)
    return prev_h, prev_c, out, valid


def step_jacobian_norms(module: nn.Module, k: int, d: int, x: Tensor, prev_h: Tensor, prev_c: Tensor | None,
                        iters: int = 20, seed: int = 0) -> Tensor:
    """:math:`\\sigma_{\\max}(\\partial s_t / \\partial s_{t-1})` for every step and sample: ``(T, B)``.

    Args:
        module: an :class:`rnnlab.nn.RNNBase` (``lstm``, ``cifg``, ``gru``, ``rnn`` cells).
        k, d: layer and direction.
        x: the layer's input ``(T, B, I)``; prev_h, prev_c: the states each step starts from (:func:`layer_states`).
        iters: power iterations (each one JVP and one VJP on the ``T * B`` batch). Power iteration approaches
            the largest singular value from below.
        seed: seed of the start vectors (a generator of its own: the global RNG is not touched).
    """
    T, B, I = x.shape
    H = module.hidden_size
    step = _step_fn(module, k, d, x.size(0))
    cell_state = prev_c is not None
    xs = x.reshape(T * B, I).detach()  # (N, I), N = T * B
    s = prev_h.reshape(T * B, H) if not cell_state else torch.cat([prev_h, prev_c], -1).reshape(T * B, 2 * H)
    s = s.detach()  # (N, S)

    def g(state):  # (N, S) -> (N, S): the step map of every (t, b) at once
        if not cell_state:
            return step(xs, state, None)[0]
        h1, c1 = step(xs, state[:, :H], state[:, H:])
        return torch.cat([h1, c1], -1)

    generator = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(s.shape, generator=generator, dtype=s.dtype).to(s.device)
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    with torch.enable_grad():
        _, vjp_fn = torch.func.vjp(g, s)
        for _ in range(iters):
            u = torch.func.jvp(g, (s,), (v,))[1]  # J v
            w = vjp_fn(u)[0]  # J^T J v
            v = w / torch.linalg.vector_norm(w, dim=-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        sigma = torch.linalg.vector_norm(torch.func.jvp(g, (s,), (v,))[1], dim=-1)  # ||J v||, v the top direction
    return sigma.detach().reshape(T, B)


def recurrent_weight_norms(module: nn.Module) -> dict[str, float]:
    """Spectral norm :math:`\\lVert W_{hh} \\rVert_2` of each layer and direction's whole ``weight_hh`` ``(G*H, H)``,
    keyed ``l0``, ``l0_reverse``, ``l1`` ... as the gradient series."""
    out = {}
    for k in range(module.num_layers):
        for d in range(module.num_directions):
            w = module._layer_weights(k, d)[1].detach().float()
            w = torch.diag(w) if w.dim() == 1 else w  # IndRNN's u: W_hh = diag(u)
            out[f"l{k}" + ("_reverse" if d == 1 else "")] = float(torch.linalg.matrix_norm(w, ord=2))
    return out


@torch.no_grad()
def jacobian_norms(module: nn.Module, x: Tensor, lengths: Tensor | None = None, iters: int = 20) -> dict[str, Tensor]:
    """Per layer and direction, :math:`\\sigma_{\\max}` of the per-step Jacobian ``(B, T)`` (NaN at padded steps),
    for a batch-first (or time-major, as the module says) input ``x`` of an :class:`rnnlab.nn.RNNBase`.

    The LSTM variant ``'fgr'`` gets none (``{}``): its state also holds the previous step's gates
    :math:`i_{t-1}, f_{t-1}, o_{t-1}`, which the step map :math:`(h, c) \\mapsto (h', c')` here does not carry."""
    x = x.transpose(0, 1) if module.batch_first else x  # (T, B, I)
    out = {}
    if getattr(module, "variant", "vanilla") == "fgr":
        return out
    for k in range(module.num_layers):
        outs = []
        for d in range(module.num_directions):
            prev_h, prev_c, o, valid = layer_states(module, k, d, x, lengths)
            sigma = step_jacobian_norms(module, k, d, x, prev_h, prev_c, iters=iters)  # (T, B)
            out[f"l{k}" + ("_reverse" if d == 1 else "")] = torch.where(valid, sigma, torch.nan).t()  # (B, T)
            outs.append(o)
        x = torch.cat(outs, -1) if len(outs) > 1 else outs[0]  # the next layer's input (no dropout: evaluation)
    return out
