"""Lightning callback: global gradient norm before and after clipping, and how often clipping bites.

Clipping itself is Lightning's (``Trainer(gradient_clip_val=c, gradient_clip_algorithm="norm"|"value")``).
Where each number is read, in Lightning 2.6's automatic optimisation
(``Precision._after_closure``: closure (forward, backward) → ``on_before_optimizer_step`` →
``configure_gradient_clipping`` → ``optimizer.step`` → ``on_train_batch_end``; ``zero_grad`` only
runs inside the *next* closure):

* ``on_before_optimizer_step``: gradients are complete (and unscaled under AMP) but not yet clipped:
  ``grad/norm_before_clip`` = :math:`\\lVert g \\rVert_2` over all parameters (the ``_total`` of
  ``lightning.pytorch.utilities.grad_norm``), and one norm per layer ``grad/norm_layer/<group>``;
* ``on_train_batch_end`` of the same batch: the gradients the optimizer used, after clipping:
  ``grad/norm_after_clip`` (:math:`\\le c` with norm clipping);
* ``grad/clipped_fraction``: per epoch, the fraction of optimizer steps where clipping changed
  the gradient: :math:`\\lVert g \\rVert_2 > c` (norm) or :math:`\\max_i |g_i| > c` (value).

Groups are a parameter's module path, with the recurrent layer suffix for ``weight_ih_l1_reverse``
style names, e.g. ``encoder.l0``, ``encoder.l0_reverse``, ``embedding``, ``head``. All values stay
device tensors handed to ``LightningModule.log``: no host synchronisation in the training step.

Cost: the norms are computed only on the steps whose values Lightning writes (``log_every_n_steps``),
except the one total norm per step that the clipped fraction needs when clipping is on (the same
pass Lightning's own clipping makes).
"""

from __future__ import annotations

import math
import re

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import GradClipAlgorithmType
from torch import Tensor, nn

__all__ = ["GradClipStats", "parameter_group"]

_RECURRENT = re.compile(r"^(?:weight|bias)_(?:ih|hh|hr)_(l\d+(?:_reverse)?)$")


def parameter_group(name: str) -> str:
    """Layer a parameter belongs to: ``model.encoder.weight_hh_l1_reverse`` -> ``model.encoder.l1_reverse``."""
    module, _, leaf = name.rpartition(".")
    match = _RECURRENT.match(leaf)
    if match:
        return f"{module}.{match.group(1)}" if module else match.group(1)
    return module or leaf


class GradClipStats(pl.Callback):
    """Logs gradient norms before and after Lightning's clipping and the fraction of steps clipped.

    Args:
        per_layer: also log ``grad/norm_layer/<group>`` (pre-clip) for each layer. Default: ``True``
        strip_prefix: prefix removed from group names (the LightningModule's attribute holding the
            network). Default: ``"model."``
    """

    hparam_metrics = ("grad/clipped_fraction",)

    def __init__(self, per_layer: bool = True, strip_prefix: str = "model."):
        super().__init__()
        self.per_layer = per_layer
        self.strip_prefix = strip_prefix
        self._params: list[tuple[int, nn.Parameter]] = []  # (group index, parameter)
        self._names: list[str] = []
        self._index_cache: dict[tuple[int, ...], Tensor] = {}
        self._pending = False
        self._zero_cache: Tensor | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        groups = [(self._group(n), p) for n, p in pl_module.named_parameters() if p.requires_grad]
        self._names = list(dict.fromkeys(g for g, _ in groups))
        self._params = [(self._names.index(g), p) for g, p in groups]
        self._index_cache = {}

    def _group(self, name: str) -> str:
        group = parameter_group(name)
        return group[len(self.strip_prefix):] if self.strip_prefix and group.startswith(self.strip_prefix) else group

    def _grads(self) -> tuple[tuple[int, ...], list[Tensor]]:
        present = [(g, p.grad) for g, p in self._params if p.grad is not None]  # a sparse gradient (an embedding's
        # rows): its summed rows, whose norm is the gradient's
        return tuple(g for g, _ in present), [grad.coalesce().values() if grad.is_sparse else grad
                                              for _, grad in present]

    def _group_index(self, groups: tuple[int, ...], device) -> Tensor:
        """Group of each present gradient, cached on the device (no host-to-device copy per step)."""
        if groups not in self._index_cache:
            self._index_cache[groups] = torch.tensor(groups, device=device)
        return self._index_cache[groups]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        clip = trainer.gradient_clip_val or 0.0
        self._pending = _will_log(trainer)  # norms logged on_step reach the logger on logging steps only
        if clip <= 0 and not self._pending:
            pl_module.log("grad/clipped_fraction", self._zero(pl_module), on_step=False, on_epoch=True, batch_size=1,
                          sync_dist=True)
            return
        groups, grads = self._grads()
        if not grads:
            self._pending = False
            return
        norms = torch.stack(torch._foreach_norm(grads)).float()  # (P,) one norm per parameter
        total = torch.linalg.vector_norm(norms)  # ||g||_2 over all parameters
        if clip <= 0:
            clipped = self._zero(pl_module)
        elif trainer.gradient_clip_algorithm == GradClipAlgorithmType.VALUE:
            clipped = (torch.stack(torch._foreach_norm(grads, math.inf)).max() > clip).float()  # max_i |g_i| > c
        else:
            clipped = (total > clip).float()
        pl_module.log("grad/clipped_fraction", clipped, on_step=False, on_epoch=True, batch_size=1,
                      sync_dist=True)  # the same on every DDP rank (gradients are reduced by now); silences the warning
        if not self._pending:
            return
        log = dict(on_step=True, on_epoch=False, batch_size=1)
        pl_module.log("grad/norm_before_clip", total, **log)
        if self.per_layer:
            index = self._group_index(groups, norms.device)
            per_group = torch.zeros(len(self._names), device=norms.device).index_add_(0, index, norms.square()).sqrt()
            for i in sorted(set(groups)):
                pl_module.log(f"grad/norm_layer/{self._names[i]}", per_group[i], **log)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._pending:  # not a logging step, or accumulating (no optimizer step on this batch)
            return
        self._pending = False
        _, grads = self._grads()
        if grads:
            after = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
            pl_module.log("grad/norm_after_clip", after, on_step=True, on_epoch=False, batch_size=1)

    def _zero(self, pl_module) -> Tensor:
        if self._zero_cache is None or self._zero_cache.device != pl_module.device:
            self._zero_cache = torch.zeros((), device=pl_module.device)
        return self._zero_cache


def _will_log(trainer: pl.Trainer) -> bool:
    """Whether step values logged now reach the loggers (Lightning writes them every ``log_every_n_steps``)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))
