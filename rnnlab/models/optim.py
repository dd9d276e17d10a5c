"""Two optimizers torch lacks: RMSprop exactly as Keras updates it, and Adam that updates only the embedding rows
a batch used.

:class:`KerasRMSprop`: the epsilon sits inside the square root.

.. math::
    v_t = \\rho\\, v_{t-1} + (1 - \\rho)\\, g_t^2, \\qquad
    \\theta_t = \\theta_{t-1} - \\eta\\, \\frac{g_t}{\\sqrt{v_t + \\epsilon}}

where :math:`g_t` is the gradient, :math:`v_t` its running mean square (``v_0 = 0``), :math:`\\rho` the decay
(Keras ``rho``, torch ``alpha``), :math:`\\eta` the learning rate. ``torch.optim.RMSprop`` divides by
:math:`\\sqrt{v_t} + \\epsilon` instead: with Keras' :math:`\\epsilon = 10^{-7}` the two differ wherever
:math:`v_t \\lesssim \\epsilon`, i.e. for parameters with gradients below ~3e-4 such as the embedding rows of rare
tokens: torch moves them by about :math:`3\\eta` on any nonzero gradient, Keras by :math:`\\eta\\, g/\\sqrt{\\epsilon}`.

:class:`LazyAdam`: Adam (Kingma & Ba, 2015) on dense gradients; on the sparse gradients of
``nn.Embedding(sparse=True)`` it updates the moments and weights of the rows in the gradient only, as
``torch.optim.SparseAdam`` does. torch's ``Adam`` refuses sparse gradients and ``SparseAdam`` dense ones, and a
LightningModule has one optimizer: this one takes both. With a table of 67M weights a dense Adam step reads and
writes all of them; the lazy one touches the few thousand rows of the batch.
"""
from __future__ import annotations

import torch


def _closure_loss(closure):
    """The loss of ``closure`` (torch's optimizer protocol: it recomputes the loss with gradients on), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


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
        loss = _closure_loss(closure)
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


class LazyAdam(torch.optim.Optimizer):
    """Adam for dense gradients, lazy Adam (``torch.optim.SparseAdam``'s update) for sparse ones.

    .. math::
        m_t = \\beta_1 m_{t-1} + (1 - \\beta_1) g_t, \\qquad v_t = \\beta_2 v_{t-1} + (1 - \\beta_2) g_t^2, \\qquad
        \\theta_t = \\theta_{t-1} - \\eta \\frac{m_t / (1 - \\beta_1^t)}{\\sqrt{v_t / (1 - \\beta_2^t)} + \\epsilon}

    over the whole tensor for a dense gradient, over the rows present in a sparse one (the other rows keep their
    weights and moments); t counts the steps the tensor had a gradient. With ``weight_decay`` :math:`\\lambda` the
    same weights are first shrunk by :math:`1 - \\eta\\lambda` (decoupled, as ``torch.optim.AdamW``).

    Args:
        params: parameters or parameter groups.
        lr: :math:`\\eta`. Default: 1e-3.
        betas: :math:`(\\beta_1, \\beta_2)`. Default: (0.9, 0.999).
        eps: :math:`\\epsilon`. Default: 1e-8.
        weight_decay: :math:`\\lambda`. Default: 0.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        if lr < 0:
            raise ValueError(f"lr must be >= 0: got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must be two numbers in [0, 1): got {tuple(betas)}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0: got {eps}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0: got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            (beta1, beta2), lr, eps = group["betas"], group["lr"], group["eps"]
            shrink = 1 - lr * group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step_size = lr / (1 - beta1 ** state["step"])
                bias2 = 1 - beta2 ** state["step"]
                m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
                if not g.is_sparse:
                    if shrink != 1:
                        p.mul_(shrink)
                    m.lerp_(g, 1 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    p.addcdiv_(m, v.div(bias2).sqrt_().add_(eps), value=-step_size)
                    continue
                g = g.coalesce()  # one entry per row
                rows, values = g.indices()[0], g.values()
                m_rows = m[rows].lerp_(values, 1 - beta1)
                v_rows = v[rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
                m[rows], v[rows] = m_rows, v_rows
                if shrink != 1:
                    p[rows] *= shrink
                p.index_add_(0, rows, m_rows.div(v_rows.div(bias2).sqrt_().add_(eps)), alpha=-step_size)
        return loss
