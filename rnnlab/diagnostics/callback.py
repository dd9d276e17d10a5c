"""Lightning callback: per-timestep gradient norms to TensorBoard every N training steps.

On a recorded step the callback switches on ``record_grad_norms()`` on every ``rnnlab.nn`` module
in the LightningModule (the total derivative :math:`\\lVert \\partial J/\\partial h_t \\rVert` per layer,
direction and ``t``) and hooks the embedding output (:math:`\\lVert \\partial J/\\partial x_t \\rVert`,
for every encoder including ``torch.nn`` baselines). After that step's backward it logs

* ``grad_t/profile`` (``add_figure``): mean norm (log scale) against ``t``, aligned to the start and
  to each sequence's end, one line per layer/direction and one for ``dx``;
* ``grad_t/heatmap`` (``add_image``): log10 mean norm over (``k``, training step), growing as
  training goes on;
* scalars ``grad_t/decay_{k}`` (``dx``: norm ``k`` tokens before the last over the norm at the last,
  averaged over samples longer than ``k``) and ``grad_t/<series>/decay_{k}`` per series; a ratio whose
  ``k`` no sequence in the batch reaches is not logged. These keys are in :attr:`hparam_metrics`, so
  :class:`rnnlab.diagnostics.hparams.LogHParams` puts them in the HParams tab.

With ``probe=N`` the same curves are also recorded, on every recorded step, on N fixed validation sequences
(:func:`probe_batch`: the datamodule's ``probe_batch(n)``, else the N longest validation sequences), with the
module in eval mode (no dropout), the RNG state restored and every ``.grad`` put back: training sees exactly
the weights, gradients and random numbers it would see without the probe. Those curves go to
``grad_t/probe/...`` and a heatmap ``grad_t/probe_heatmap`` whose rows differ only by training, not by which
batch was drawn. On every recorded step the callback logs, per layer and direction of every ``rnnlab.nn``
module, ``jacobian/<series>/w_hh_norm`` (:math:`\\lVert W_{hh} \\rVert_2`, the whole ``weight_hh``), and
with a probe ``jacobian/<series>/sigma_mean``, the mean over steps and sequences of the largest singular value of the
actual per-step Jacobian :math:`\\partial s_{t+1}/\\partial s_t` (:mod:`rnnlab.diagnostics.jacobian`).

Recording, the curves and the scalars cost little (one small device-to-host copy); drawing a
figure costs ~0.1-0.2 s on a CPU, so the two images are drawn on every ``figures_every``-th recorded
step and at the end of training (the heatmap still has a row for every recorded step). The curves
of every recorded step are saved to ``<log_dir>/grad_t.pt`` at the end of fit for
``scripts/plot_grad_norms.py``. On the other steps the callback does integer arithmetic only (no
host-device synchronisation, no hooks).
"""

from __future__ import annotations

import os
import warnings
from collections import deque

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from rnnlab.diagnostics.gradients import EmbeddingGradNorm, decay_ratios, mean_over_samples
from rnnlab.diagnostics.jacobian import jacobian_norms, recurrent_weight_norms
from rnnlab.diagnostics.plots import figure_to_array, heatmap_figure, natural_align, profile_figure
from rnnlab.utils import is_int_at_least

__all__ = ["TimestepGradNorms", "find_recorders", "find_embedding", "batch_lengths", "probe_batch", "batch_loss"]


def find_recorders(root: nn.Module) -> list[tuple[str, nn.Module]]:
    """Outermost submodules with a ``record_grad_norms`` method (the ``rnnlab.nn`` recurrent modules)."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in root.named_modules():
        if callable(getattr(module, "record_grad_norms", None)) and not any(
            name.startswith(prefix + ".") or prefix == "" for prefix, _ in found
        ):
            found.append((name, module))
    return found


def find_embedding(root: nn.Module) -> nn.Module | None:
    """``root.model.embedding`` when present (rnnlab's classifier), else the first ``nn.Embedding``."""
    embedding = getattr(getattr(root, "model", None), "embedding", None)
    if isinstance(embedding, nn.Module):
        return embedding
    return next((m for m in root.modules() if isinstance(m, nn.Embedding)), None)


def batch_lengths(batch) -> Tensor | None:
    """Lengths of an rnnlab batch ``(ids (B, L), lengths (B,), labels)`` or a dict with ``'lengths'``; else ``None``."""
    if isinstance(batch, dict):
        candidate = batch.get("lengths")
    elif isinstance(batch, (list, tuple)) and len(batch) >= 2:
        candidate = batch[1]
    else:
        return None
    if isinstance(candidate, Tensor) and candidate.dim() == 1 and not candidate.is_floating_point():
        return candidate
    return None


def probe_batch(datamodule, n: int):
    """``n`` fixed validation sequences: ``datamodule.probe_batch(n)`` when it has one, else the ``n`` longest
    sequences of the validation loader's ``(ids (B, L), lengths (B,), labels)`` batches, padded to the longest. Warns
    when the validation set has fewer than ``n``: all of it is probed, on every recorded step."""
    batch = _probe_batch(datamodule, n)
    if len(batch[0]) < n:
        warnings.warn(f"diagnostics.probe={n} asks for more sequences than the validation set has ({len(batch[0])}): "
                      f"all {len(batch[0])} are probed, a forward and backward pass over them on every recorded step; "
                      f"set diagnostics.probe to a few (e.g. 16) to keep the probe cheap", stacklevel=2)
    return batch


def _probe_batch(datamodule, n: int):
    if callable(getattr(datamodule, "probe_batch", None)):
        return datamodule.probe_batch(n)
    kept: list[tuple[int, Tensor, Tensor]] = []  # (length, ids (L,), label)
    for batch in datamodule.val_dataloader():
        lengths = batch_lengths(batch)
        if lengths is None:
            raise ValueError("`diagnostics.probe` needs a datamodule with probe_batch(n) or validation batches "
                             "(ids, lengths, labels): expected lengths as the second item, got none")
        for i in range(len(lengths)):
            kept.append((int(lengths[i]), batch[0][i, : int(lengths[i])], batch[2][i]))
        kept = sorted(kept, key=lambda item: -item[0])[:n]
    width = kept[0][0]
    ids = torch.stack([nn.functional.pad(seq, (0, width - len(seq))) for _, seq, _ in kept])  # (n, L)
    return ids, torch.tensor([length for length, _, _ in kept]), torch.stack([y for _, _, y in kept])


def batch_loss(pl_module: pl.LightningModule, batch) -> Tensor:
    """The module's loss on a batch: its ``batch_loss(batch)`` (rnnlab's modules have one)."""
    if not callable(getattr(pl_module, "batch_loss", None)):
        raise TypeError(f"diagnostics.probe needs the module's loss on a batch: {type(pl_module).__name__} must "
                        f"define batch_loss(batch) -> Tensor, as rnnlab's modules do; or set diagnostics.probe=0")
    return pl_module.batch_loss(batch)


class TimestepGradNorms(pl.Callback):
    """Logs per-timestep gradient norms every ``every_n_steps`` training steps.

    Args:
        every_n_steps: record on optimizer steps ``0, N, 2N, ...``; ``0`` turns the callback off. Default: 50
        decay_steps: the ``k`` of the ``grad_t/decay_{k}`` scalars. Default: ``(100, 400)``
        figures_every: draw the figure and heatmap on every k-th recorded step (and the last). Default: 4
        max_history: rows kept for the heatmap and ``grad_t.pt`` (oldest dropped). Default: 200
        max_width: longest ``k`` drawn in the heatmap. Default: 1000
        save_curves: write ``grad_t.pt`` (every recorded step's curves) at the end of fit. Default: ``True``
        probe: record on this many fixed validation sequences too (module docstring); 0: off. Default: 0
        jacobian: with a probe, log ``jacobian/*`` (W_hh spectral norm, mean per-step Jacobian norm). Default: True
        jacobian_iters: power iterations for the Jacobian norm. Default: 10

    Attributes:
        records: ``deque`` of ``{"step", "curves": {series: {"start": (T,), "end": (T,)}}, "decay": {...}}``
            (CPU tensors), one per recorded step.
        probe_records: the same for the probe batch, with ``"jacobian": {series: (B, T)}`` (sigma per step) and
            ``"w_hh_norm": {series: float}`` when the Jacobian is on.
    """

    def __init__(
        self,
        every_n_steps: int = 50,
        decay_steps=(100, 400),
        figures_every: int = 4,
        max_history: int = 200,
        max_width: int = 1000,
        save_curves: bool = True,
        probe: int = 0,
        jacobian: bool = True,
        jacobian_iters: int = 10,
    ):
        super().__init__()
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0 (0 turns the callback off): got {every_n_steps}")
        self.every_n_steps = int(every_n_steps)
        self.decay_steps = tuple(int(k) for k in decay_steps)
        if figures_every < 1:
            raise ValueError(f"figures_every must be >= 1 (draw on every k-th recorded step): got {figures_every}")
        self.figures_every = int(figures_every)
        self.max_width = int(max_width)
        self.save_curves = save_curves
        self.records: deque = deque(maxlen=max_history)
        if not is_int_at_least(probe, 0):
            raise ValueError(f"`diagnostics.probe` must be an integer >= 0 (fixed validation sequences; 0 turns it "
                             f"off): expected e.g. diagnostics.probe=16, got {probe!r}")
        self.probe, self.jacobian, self.jacobian_iters = int(probe), bool(jacobian), int(jacobian_iters)
        self.probe_records: deque = deque(maxlen=max_history)
        self._probe_batch = None
        self._recorders: list[tuple[str, nn.Module]] = []
        self._embedding: EmbeddingGradNorm | None = None
        self._lengths: Tensor | None = None
        self._recording_step: int | None = None
        self._last_step = -1
        self._n_recorded = 0
        self._drawn_step: int | None = None

    @property
    def hparam_metrics(self) -> tuple[str, ...]:
        """Scalar keys to declare in the TensorBoard HParams metric dict (none when off)."""
        if self.every_n_steps == 0:
            return ()
        return tuple(f"grad_t/decay_{k}" for k in self.decay_steps)

    # -- Lightning hooks ---------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._recorders = find_recorders(pl_module)
        embedding = find_embedding(pl_module)
        self._embedding = EmbeddingGradNorm(embedding) if embedding is not None else None
        if self.probe and self.every_n_steps and trainer.is_global_zero and self._probe_batch is None:
            datamodule = trainer.datamodule
            if datamodule is None:
                raise ValueError("`diagnostics.probe` needs the trainer's datamodule (trainer.fit(module, "
                                 "datamodule=...)): expected a datamodule, got None")
            self._probe_batch = probe_batch(datamodule, self.probe)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps == 0 or step % self.every_n_steps or step == self._last_step:
            return
        if not trainer.is_global_zero:
            return
        self._last_step = step
        if self._probe_batch is not None:
            self._run_probe(trainer, pl_module, step)
        self._recording_step = step
        self._lengths = batch_lengths(batch)
        for _, module in self._recorders:
            module.record_grad_norms(True)
        if self._embedding is not None:
            self._embedding.attach()

    def on_after_backward(self, trainer, pl_module) -> None:
        if self._recording_step is None:
            return
        step = self._recording_step
        curves = self._collect()
        self._stop()
        if curves:
            self._log(trainer, step, curves)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._recording_step is not None:  # forward ran but no backward (e.g. training_step returned None)
            self._stop()

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop()
        if self.records and self._drawn_step != self.records[-1]["step"] and trainer.is_global_zero:
            self._draw(trainer)  # the state at the end of training is always in TensorBoard

    def on_fit_end(self, trainer, pl_module) -> None:
        self._stop()
        if self.save_curves and self.records and trainer.is_global_zero:
            log_dir = _log_dir(trainer)
            if log_dir is not None:
                os.makedirs(log_dir, exist_ok=True)
                torch.save(list(self.records), os.path.join(log_dir, "grad_t.pt"))
                if self.probe_records:
                    torch.save(list(self.probe_records), os.path.join(log_dir, "grad_t_probe.pt"))

    # -- internals ---------------------------------------------------------------------------
    def _stop(self) -> None:
        if self._recording_step is None:
            return
        for _, module in self._recorders:
            module.record_grad_norms(False)
        if self._embedding is not None:
            self._embedding.detach()
        self._recording_step = None
        self._lengths = None

    def _collect(self) -> dict[str, dict[str, Tensor]]:
        """Per-series mean curves, start- and end-aligned, moved to CPU in one transfer."""
        per_sample: dict[str, tuple[Tensor, Tensor | None]] = {}
        for prefix, module in self._recorders:
            for key, norms in (getattr(module, "grad_norms", None) or {}).items():
                name = f"dh/{key}" if len(self._recorders) == 1 else f"dh/{prefix.removeprefix('model.')}.{key}"
                per_sample[name] = (norms, module.last_lengths)
        if self._embedding is not None and self._embedding.norms is not None:
            # the lengths the recurrent module was run with (None: it read every step, padding included, as a
            # model with use_lengths=False does); the batch's lengths for torch.nn encoders, which record nothing
            lengths = self._recorders[0][1].last_lengths if self._recorders else self._lengths
            per_sample["dx"] = (self._embedding.norms, lengths)
        names, stacked = [], []
        for name, (norms, lengths) in per_sample.items():
            if lengths is not None and len(lengths) != norms.size(0):
                lengths = None  # not this forward's batch: treat every sequence as full length
            for align in ("start", "end"):
                names.append((name, align))
                stacked.append(mean_over_samples(norms.detach(), lengths, align))
        if not stacked:
            return {}
        width = max(c.numel() for c in stacked)
        padded = torch.stack([nn.functional.pad(c, (0, width - c.numel()), value=float("nan")) for c in stacked])
        padded = padded.cpu()  # the one host sync, on recorded steps only
        curves: dict[str, dict[str, Tensor]] = {}
        for (name, align), row, c in zip(names, padded, stacked):
            curves.setdefault(name, {})[align] = row[: c.numel()]
        return curves

    def _run_probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        """Forward and backward on the probe batch, leaving no trace on training: eval mode (no dropout), the RNG
        state forked, every parameter's ``.grad`` put back as it was, no optimizer step."""
        batch = pl_module.transfer_batch_to_device(self._probe_batch, pl_module.device, 0)
        modes = [(m, m.training) for m in pl_module.modules()]
        grads = [(p, p.grad) for p in pl_module.parameters()]
        inputs: dict[str, tuple[nn.Module, Tensor, Tensor | None]] = {}
        handles = [m.register_forward_hook(_input_catcher(inputs, name, m), with_kwargs=True)
                   for name, m in pl_module.named_modules() if self.jacobian and hasattr(m, "_layer_weights")]
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        try:
            pl_module.eval()
            for p, _ in grads:
                p.grad = None
            with torch.random.fork_rng(devices=devices), torch.enable_grad():
                for _, module in self._recorders:
                    module.record_grad_norms(True)
                if self._embedding is not None:
                    self._embedding.attach()
                loss = batch_loss(pl_module, batch)
                if torch.isfinite(loss):
                    loss.backward()
                curves = self._collect() if torch.isfinite(loss) else {}
        finally:
            for h in handles:
                h.remove()
            for _, module in self._recorders:
                module.record_grad_norms(False)
            if self._embedding is not None:
                self._embedding.detach()
            for p, g in grads:
                p.grad = g
            for m, mode in modes:
                m.training = mode
        record = {"step": step, "curves": curves,
                  "decay": {n: decay_ratios(v[natural_align(n)], self.decay_steps) for n, v in curves.items()}}
        scalars = {f"grad_t/probe/{n}/decay_{k}": r for n, d in record["decay"].items() for k, r in d.items()}
        if inputs:
            record["jacobian"], record["w_hh_norm"] = {}, {}
            for name, (module, x, lengths) in inputs.items():
                prefix = "" if len(inputs) == 1 else name.removeprefix("model.") + "."
                for key, sigma in jacobian_norms(module, x, lengths, self.jacobian_iters).items():
                    record["jacobian"][prefix + key] = sigma.cpu()
                    scalars[f"jacobian/{prefix}{key}/sigma_mean"] = float(sigma.nanmean())
                for key, norm in recurrent_weight_norms(module).items():
                    record["w_hh_norm"][prefix + key] = norm  # logged by _log on the same step
        self.probe_records.append(record)
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)

    def _log(self, trainer: pl.Trainer, step: int, curves: dict[str, dict[str, Tensor]]) -> None:
        scalars = {}
        decay = {}
        for name, views in curves.items():
            decay[name] = decay_ratios(views[natural_align(name)], self.decay_steps)
            for k, ratio in decay[name].items():
                scalars[f"grad_t/{name}/decay_{k}"] = ratio
        for k, ratio in decay.get("dx", {}).items():
            scalars[f"grad_t/decay_{k}"] = ratio
        cells = [(n, m) for prefix, rec in self._recorders for n, m in rec.named_modules(prefix=prefix)
                 if hasattr(m, "_layer_weights")]
        for name, module in cells:  # ||W_hh||_2 per layer and direction, as the probe's Jacobian keys
            prefix = "" if len(cells) == 1 else name.removeprefix("model.") + "."
            for key, norm in recurrent_weight_norms(module).items():
                scalars[f"jacobian/{prefix}{key}/w_hh_norm"] = norm
        self.records.append({"step": step, "curves": curves, "decay": decay})
        if scalars:
            for logger in trainer.loggers:
                logger.log_metrics(scalars, step=step)
        if self._n_recorded % self.figures_every == 0:
            self._draw(trainer)
        self._n_recorded += 1

    def _draw(self, trainer: pl.Trainer) -> None:
        """The profile of the last recorded step and the heatmap of all kept ones, to every TensorBoard writer."""
        writers = [w for w in (getattr(lg, "experiment", None) for lg in trainer.loggers)
                   if hasattr(w, "add_figure") and hasattr(w, "add_image")]
        if not writers:
            return
        last = self.records[-1]
        step, curves = last["step"], last["curves"]
        names = list(dict.fromkeys(n for r in self.records for n in r["curves"]))
        history = {n: [(r["step"], r["curves"][n][natural_align(n)]) for r in self.records if n in r["curves"]]
                   for n in names}
        heatmap = figure_to_array(heatmap_figure(history, self.max_width))  # (H, W, 3) uint8
        probe = None
        if self.probe_records:
            probe_names = list(dict.fromkeys(n for r in self.probe_records for n in r["curves"]))
            probe = figure_to_array(heatmap_figure(
                {n: [(r["step"], r["curves"][n][natural_align(n)]) for r in self.probe_records if n in r["curves"]]
                 for n in probe_names}, self.max_width))
        for writer in writers:
            writer.add_figure("grad_t/profile", profile_figure(curves, step), global_step=step)
            writer.add_image("grad_t/heatmap", heatmap, global_step=step, dataformats="HWC")
            if probe is not None:
                writer.add_image("grad_t/probe_heatmap", probe, global_step=step, dataformats="HWC")
        self._drawn_step = step


def _input_catcher(store: dict, name: str, module: nn.Module):
    """A forward hook keeping an ``rnnlab.nn`` module's input and ``lengths`` (for the Jacobian on the probe)."""

    def hook(mod, args, kwargs, output):
        x = args[0] if args else kwargs.get("input")
        lengths = kwargs.get("lengths", args[2] if len(args) > 2 else None)
        if isinstance(x, Tensor):
            store[name] = (module, x.detach(), None if lengths is None else torch.as_tensor(lengths))

    return hook


def _log_dir(trainer: pl.Trainer) -> str | None:
    for logger in trainer.loggers:
        if getattr(logger, "log_dir", None):
            return logger.log_dir
    return trainer.default_root_dir
