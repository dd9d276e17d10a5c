"""RMSprop exactly as Keras updates: the epsilon sits inside the square root.

.. math::
    v_t = \\rho\\, v_{t-1} + (1 - \\rho)\\, g_t^2, \\qquad
    \\theta_t = \\theta_{t-1} - \\eta\\, \\frac{g_t}{\\sqrt{v_t + \\epsilon}}

where :math:`g_t` is the gradient, :math:`v_t` its running mean square (``v_0 = 0``), :math:`\\rho` the decay
(Keras ``rho``, torch ``alpha``), :math:`\\eta` the learning rate. ``torch.optim.RMSprop`` divides by
:math:`\\sqrt{v_t} + \\epsilon` instead: with Keras' :math:`\\epsilon = 10^{-7}` the two differ wherever
:math:`v_t \\lesssim \\epsilon`, i.e. for parameters with gradients below ~3e-4 such as the embedding rows of rare
tokens: torch moves them by about :math:`3\\eta` on any nonzero gradient, Keras by :math:`\\eta\\, g/\\sqrt{\\epsilon}`.
"""
from __future__ import annotations

import torch


class KerasRMSprop(torch.optim.Optimizer):
    """Keras' RMSprop (no momentum, not centered).

    Args:
        params: parameters or parameter groups.
        lr: learning rate :math:`\\eta`. Default: 1e-3 (Keras).
        rho: decay of the mean square :math:`\\rho`. Default: 0.9 (Keras).
        eps: :math:`\\epsilon`, added under the square root. Default: 1e-7 (Keras).
        weight_decay: L2 penalty added to the gradient. Default: 0.

    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = KerasRMSprop([w], lr=0.1)
    >>> w.grad = torch.tensor([2.0]); opt.step()
    >>> round(w.item(), 4)  # 1 - 0.1 * 2 / sqrt(0.1 * 4 + 1e-7)
    0.6838
    """

    def __init__(self, params, lr: float = 1e-3, rho: float = 0.9, eps: float = 1e-7, weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"lr must be >= 0: got {lr}")
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"rho must be in [0, 1): got {rho}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0 (it keeps sqrt(v + eps) away from zero): got {eps}")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if group["weight_decay"] == 0 else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                v = state["square_avg"]
                v.mul_(group["rho"]).addcmul_(g, g, value=1 - group["rho"])  # v_t = rho v + (1 - rho) g^2
                p.addcdiv_(g, v.add(group["eps"]).sqrt_(), value=-group["lr"])  # theta -= lr g / sqrt(v + eps)
        return loss
