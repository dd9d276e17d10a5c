"""Figures of per-timestep gradient norms (matplotlib, no pyplot state; usable offline).

Inputs are plain curves, as produced by :func:`rnnlab.diagnostics.gradients.mean_over_samples`:

* ``profiles``: ``{series: {"start": (T,), "end": (T,)}}`` for one training step, e.g.
  ``{"dh/l0": {...}, "dh/l0_reverse": {...}, "dx": {...}}``;
* ``history``: ``{series: [(step, curve (T_i,)), ...]}``, one row per recorded step.

Series names: ``dh/<layer>`` is :math:`\\lVert \\partial J/\\partial h_t \\rVert` of one layer and
direction (``l0``, ``l0_reverse``, ``l1``, ... as the parameter suffixes), ``dx`` is
:math:`\\lVert \\partial J/\\partial x_t \\rVert` at the embedding.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["natural_align", "profile_figure", "heatmap_figure", "figure_to_array", "pad_rows"]


def natural_align(series: str) -> str:
    """Alignment where index 0 is the series' own last step: ``'start'`` for reverse directions, else ``'end'``.

    A forward direction reaches the loss (last-token pooling) at each sequence's last token; a reverse
    direction finishes at the first token.
    """
    return "start" if series.endswith("_reverse") else "end"


def _np(curve) -> np.ndarray:
    return torch.as_tensor(curve, dtype=torch.float64).cpu().numpy()


def profile_figure(profiles: dict[str, dict[str, torch.Tensor]], step: int | None = None) -> Figure:
    """Mean gradient norm (log scale) against ``t``: left aligned to the start, right counted back from the end."""
    fig = Figure(figsize=(11, 4), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    width = max((len(v[a]) for v in profiles.values() for a in ("start", "end")), default=1)
    drawn = False
    for name, views in profiles.items():
        style = dict(lw=1.2, ls="--" if name == "dx" else "-", label=name)
        for ax, align in zip(axes, ("start", "end")):
            y = _np(views[align])
            y = np.where((y > 0) & np.isfinite(y), y, np.nan)  # log axis: zeros, inf and NaN (overflow, no sample
            drawn |= bool(np.isfinite(y).any())                  # covers t) are gaps
            ax.plot(np.arange(len(y)), y, **style)
    axes[0].set_xlabel("t (input position)")
    axes[1].set_xlabel("k (tokens before each sequence's last token)")
    axes[0].set_ylabel("mean ||dJ/dh_t||, ||dJ/dx_t||")
    for ax in axes:
        ax.set_xlim(0, max(width - 1, 1))  # the whole sequence, also where the gradient is exactly zero
        if drawn:  # a log axis needs one positive finite value (an exploded step may have none)
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("per-timestep gradient norm" + ("" if step is None else f" (training step {step})"))
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.13, top=0.9, wspace=0.04)  # tight_layout costs a draw
    return fig


def pad_rows(rows: list[torch.Tensor], width: int | None = None) -> np.ndarray:
    """Stack curves of different lengths into ``(N, width)``, padding (or cutting) with ``NaN``."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        r = _np(r)[:width]
        out[i, : len(r)] = r
    return out


def heatmap_figure(history: dict[str, list[tuple[int, torch.Tensor]]], max_width: int | None = None) -> Figure:
    """log10 of the mean gradient norm over (distance from the series' own last step, training step).

    One panel per series; rows are training steps (growing downwards as training goes on), columns
    are ``k`` steps before the sequence's last token (forward directions, ``dx``) or after its first
    (reverse directions), so a gradient that dies with distance from the loss fades to the right.
    Blank: no sequence in that batch is that long; darkest: the gradient is zero or below the colour range.
    """
    names = [n for n, rows in history.items() if rows]
    height = 0.4 + 2.0 * max(len(names), 1)
    fig = Figure(figsize=(10, height), dpi=80)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(max(len(names), 1), 1, squeeze=False)[:, 0])
    for ax, name in zip(axes, names):
        steps = [s for s, _ in history[name]]
        rows = [c for _, c in history[name]]
        longest = max((int(np.isfinite(_np(r)).nonzero()[0].max()) + 1 if np.isfinite(_np(r)).any() else 0
                       for r in rows), default=1)
        width = max(1, longest if max_width is None else min(max_width, longest))  # the x axis ends with the data
        with np.errstate(divide="ignore", invalid="ignore"):
            grid = np.log10(pad_rows(rows, width))  # (N, W)
        finite = grid[np.isfinite(grid)]
        # robust limits over the non-zero values: a few huge or underflowed entries do not flatten the decay
        vmin, vmax = (np.percentile(finite, 2), np.percentile(finite, 99.5)) if finite.size else (0, 1)
        grid[np.isneginf(grid)] = vmin  # an exactly zero gradient (underflow) shows as vanished, not as missing
        grid[~np.isfinite(grid)] = np.nan  # no sample that long: blank
        image = ax.imshow(
            grid, aspect="auto", interpolation="nearest", cmap="viridis", vmin=vmin, vmax=max(vmax, vmin + 1e-6),
            extent=(-0.5, grid.shape[1] - 0.5, len(steps) - 0.5, -0.5),
        )
        ticks = np.unique(np.linspace(0, len(steps) - 1, min(len(steps), 5)).astype(int))
        ax.set_yticks(ticks, [str(steps[i]) for i in ticks])
        where = "after first" if natural_align(name) == "start" else "before last"
        ax.set_title(f"{name}: log10 mean norm", fontsize=9)
        ax.set_xlabel(f"k (tokens {where} token)", fontsize=8)
        ax.set_ylabel("training step", fontsize=8)
        fig.colorbar(image, ax=ax, pad=0.01)
    fig.subplots_adjust(left=0.08, right=1.0, bottom=0.55 / height, top=1 - 0.3 / height, hspace=0.75)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render a figure to an ``(H, W, 3)`` uint8 RGB array (for ``SummaryWriter.add_image(..., dataformats='HWC')``)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
