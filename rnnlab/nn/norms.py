r"""Euclidean norms of gradients that stay exact where the gradient's squares underflow.

``torch.linalg.vector_norm`` of a float32 tensor sums float32 squares: an entry of 1e-20 squares to 1e-40, below
the smallest normal float32 (~1.2e-38), which is zero where denormals are flushed (rnnlab's default,
``torch.set_flush_denormal(True)``), so the norm of a gradient of entries ~1e-20 reads 0. Here the squares are
summed in float64, whose normal range holds the square of every normal float32: the norm is right to float32
round-off down to the smallest normal float32 entry.

>>> _ = torch.set_flush_denormal(True)
>>> g = torch.full((2, 4), 1e-20)
>>> torch.linalg.vector_norm(g, dim=-1)
tensor([0., 0.])
>>> grad_norm(g)
tensor([2.0000e-20, 2.0000e-20])
>>> _ = torch.set_flush_denormal(False)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["grad_norm"]


def grad_norm(x: Tensor, dim: int = -1, out: Optional[Tensor] = None) -> Tensor:
    r""":math:`\lVert x \rVert_2` over ``dim``, the squares summed in float64; in ``x``'s dtype (or into ``out``).

    Every Python path that records :math:`\lVert \partial J / \partial h_t \rVert` (the reference loop, the fused
    backend's Python loops) and the embedding's :math:`\lVert \partial J / \partial x_t \rVert` go through here; the
    C++ loops and the Triton kernels sum their squares in float64 the same way.
    """
    norm = torch.linalg.vector_norm(x, dim=dim, dtype=torch.float64)
    if out is None:
        return norm.to(x.dtype)
    return out.copy_(norm)
