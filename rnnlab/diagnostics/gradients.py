"""Per-timestep gradient norms: aggregation over samples, decay summaries, and dJ/dx_t.

The recurrent cells (``rnnlab.nn``, ``module.record_grad_norms()``) fill, per layer and
direction, a ``(B, T)`` tensor of per-sample norms

.. math::
    n_{b,t} = \\left\\lVert \\frac{\\partial J}{\\partial h_t^{(b)}} \\right\\rVert_2,
    \\qquad
    \\frac{\\partial J}{\\partial h_t} = \\frac{\\partial J}{\\partial o_t}
        + \\frac{\\partial J}{\\partial h_{t+1}} \\frac{\\partial h_{t+1}}{\\partial h_t},

the total derivative through the recurrence, whose repeated Jacobian product is what makes the
gradient vanish (or explode) with distance from the loss. This module holds the pure functions
that turn those per-sample norms into curves over ``t``; nothing here knows about Lightning.

With variable lengths, sample ``b`` has real tokens ``t < L_b``. Two views of the same norms:

* aligned to the start: :math:`\\bar n_t = \\operatorname{mean}_{b : L_b > t} n_{b,t}`;
* aligned to the end, ``k`` counted back from each sequence's own last token:
  :math:`\\bar n^{end}_k = \\operatorname{mean}_{b : L_b > k} n_{b, L_b - 1 - k}`.

With last-token pooling the loss touches the forward direction at each sequence's own last
token, so the end-aligned curve is the gradient against distance from the loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from rnnlab.nn.norms import grad_norm

__all__ = [
    "mean_over_samples",
    "decay_ratios",
    "as_lengths",
    "EmbeddingGradNorm",
]


def as_lengths(lengths, batch_size: int, steps: int, device=None) -> Tensor:
    """Lengths as an int64 tensor ``(B,)`` on ``device``; ``None`` means every sequence has ``steps`` tokens."""
    if lengths is None:
        return torch.full((batch_size,), steps, dtype=torch.long, device=device)
    lengths = torch.as_tensor(lengths, dtype=torch.long, device=device)
    if lengths.shape != (batch_size,):
        raise ValueError(
            f"lengths must have shape (B,) = ({batch_size},) matching the norms' batch dimension: got {tuple(lengths.shape)}"
        )
    return lengths.clamp(0, steps)


def mean_over_samples(norms: Tensor, lengths=None, align: str = "start") -> Tensor:
    """Mean per-sample norm at each timestep over the samples whose length covers it.

    Args:
        norms: ``(B, T)`` per-sample norms, ``t`` in input order (values at padded steps are ignored).
        lengths: ``(B,)`` int lengths, a list of ints, or ``None`` (all ``T``).
        align: ``'start'``: index ``t`` is the input position; ``'end'``: index ``k`` counts back from each
            sequence's own last token (``k = 0`` is the last token).

    Returns:
        ``(T,)`` float tensor on ``norms.device``; ``NaN`` where no sample covers the index.

    Example::

        >>> norms = torch.tensor([[1., 2., 3.], [4., 5., 0.]])
        >>> mean_over_samples(norms, [3, 2], align="end")
        tensor([4., 3., 1.])
    """
    if norms.dim() != 2:
        raise ValueError(f"norms must be 2-D (B, T): got shape {tuple(norms.shape)}")
    B, T = norms.shape
    norms = norms.float()
    lengths = as_lengths(lengths, B, T, norms.device)
    steps = torch.arange(T, device=norms.device)  # (T,)
    if align == "start":
        valid = steps[None, :] < lengths[:, None]  # (B, T)
        values = norms
    elif align == "end":
        position = lengths[:, None] - 1 - steps[None, :]  # (B, T): input position of k steps before the end
        valid = position >= 0  # (B, T)
        values = norms.gather(1, position.clamp(min=0))  # (B, T)
    else:
        raise ValueError(f"align must be 'start' or 'end': got {align!r}")
    count = valid.sum(0)  # (T,)
    total = torch.where(valid, values, torch.zeros((), device=norms.device)).sum(0)  # (T,)
    return torch.where(count > 0, total / count.clamp(min=1), math.nan)  # (T,)


def decay_ratios(curve: Tensor | Sequence[float], ks: Iterable[int] = (100, 400)) -> dict[int, float]:
    """Ratio of the curve ``k`` steps from its origin to its value at the origin: ``curve[k] / curve[0]``.

    Applied to an end-aligned curve, ``decay_ratios(c)[100]`` is how much of the gradient at the last
    token survives 100 steps back. Ratios that cannot be formed are left out rather than reported as
    ``NaN``: ``k`` beyond the curve (sequences shorter than ``k``), a non-finite value, or a zero origin.

    Example::

        >>> decay_ratios(torch.tensor([2.0, 1.0, 0.5]), ks=(1, 2, 5))
        {1: 0.5, 2: 0.25}
    """
    values = torch.as_tensor(curve, dtype=torch.float64).cpu().tolist()
    out = {}
    for k in ks:
        if k < len(values) and math.isfinite(values[k]) and math.isfinite(values[0]) and values[0] > 0:
            out[k] = values[k] / values[0]
    return out


class EmbeddingGradNorm:
    """Records :math:`\\lVert \\partial J / \\partial x_t \\rVert_2` per sample, ``x_t`` an embedding module's output.

    A forward hook on the embedding (any module whose output is ``(B, T, D)``, or ``(T, B, D)`` with
    ``batch_first=False``) registers a tensor hook on its output; the backward then leaves
    :attr:`norms` ``(B, T)``: the norm over the ``D`` features of the gradient reaching token ``t``.
    It needs nothing from the recurrent module, so it works for every encoder, ``torch.nn`` baselines
    included. A frozen embedding (output without grad) is made a leaf that requires grad for the
    recorded forward, so its gradient is still computed.

    Use as a context manager around one forward and backward::

        >>> emb = nn.Embedding(10, 4)
        >>> with EmbeddingGradNorm(emb) as rec:
        ...     emb(torch.tensor([[1, 2, 3]])).sum().backward()
        >>> rec.norms.shape
        torch.Size([1, 3])
    """

    def __init__(self, module: nn.Module, batch_first: bool = True):
        self.module = module
        self.batch_first = batch_first
        self.norms: Tensor | None = None
        self._handle = None

    def attach(self) -> "EmbeddingGradNorm":
        if self._handle is None:
            self.norms = None
            self._handle = self.module.register_forward_hook(self._forward_hook)
        return self

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _forward_hook(self, module, args, output):
        if not isinstance(output, Tensor) or not torch.is_grad_enabled():
            return None
        replaced = None
        if not output.requires_grad:  # frozen embedding: make dJ/dx_t exist for this forward
            output = replaced = output.detach().requires_grad_(True)
        output.register_hook(self._grad_hook)
        return replaced

    def _grad_hook(self, grad: Tensor) -> None:
        norms = grad_norm(grad.detach(), dim=-1).float()  # (B, T) or (T, B); exact where squares underflow
        self.norms = norms if self.batch_first else norms.transpose(0, 1)

    def __enter__(self) -> "EmbeddingGradNorm":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()
