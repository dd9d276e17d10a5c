"""TensorBoard HParams: declare every run's hyperparameters with the metric keys a sweep compares.

TensorBoard's HParams tab shows, for each run, the hyperparameters of its ``hparams`` summary and
the last value of each *declared* metric tag. Declaring happens once, at train start, with the keys
only: the ``hparams`` summary is written directly, so no placeholder value (Lightning's
``log_hyperparams(params, metrics={key: 0})`` recipe) shows up as a fake point in the scalar charts.
Use ``TensorBoardLogger(default_hp_metric=False)``.

Metric keys come from :class:`LogHParams` ``metrics`` plus every callback with a ``hparam_metrics``
attribute (e.g. ``grad_t/decay_100`` from :class:`~rnnlab.diagnostics.callback.TimestepGradNorms`,
``grad/clipped_fraction`` from :class:`~rnnlab.diagnostics.clipping.GradClipStats`).
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf
from torch.utils.tensorboard.summary import hparams as hparams_summary

__all__ = ["hparam_metric_keys", "run_hparams", "flatten_hparams", "flat_settings", "LogHParams"]


def hparam_metric_keys(trainer: pl.Trainer, metrics=()) -> list[str]:
    """``metrics`` followed by the ``hparam_metrics`` of the trainer's callbacks, without duplicates."""
    keys = list(metrics)
    for callback in trainer.callbacks:
        keys += list(getattr(callback, "hparam_metrics", ()))
    return list(dict.fromkeys(keys))


def run_hparams(trainer: pl.Trainer, pl_module: pl.LightningModule, saved: bool = True) -> dict:
    """The datamodule's and module's saved hyperparameters (``saved``) plus the trainer's clipping settings."""
    params: dict = {}
    datamodule = getattr(trainer, "datamodule", None)
    for source in (datamodule, pl_module) if saved else ():
        hparams = getattr(source, "hparams", None)
        if hparams:
            params.update(dict(hparams))
    params["trainer/gradient_clip_val"] = trainer.gradient_clip_val or 0.0
    params["trainer/gradient_clip_algorithm"] = str(trainer.gradient_clip_algorithm or "norm")
    params["trainer/accumulate_grad_batches"] = trainer.accumulate_grad_batches
    return params


def flatten_hparams(params, prefix: str = "") -> dict:
    """Nested mappings flattened with ``/``; values TensorBoard cannot show (None, lists, ...) as strings."""
    flat = {}
    for key, value in dict(params).items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            flat.update(flatten_hparams(value, name + "/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def flat_settings(settings) -> dict:
    """Run settings ``{"seed": 42, "data": {"max_length": 600, ...}, ...}`` as flat scalars ``{"seed": 42,
    "data.max_length": 600, ...}`` for the HParams tab: keys starting with ``_`` and nested groups are left out, lists
    and None become strings."""
    if OmegaConf.is_config(settings):
        settings = OmegaConf.to_container(settings, resolve=True)
    out = {}
    for key, value in dict(settings or {}).items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            if (sub or key).startswith("_") or isinstance(v, dict):
                continue
            out[key if sub is None else f"{key}.{sub}"] = str(v) if isinstance(v, list) or v is None else v
    return out


class LogHParams(pl.Callback):
    """At train start, logs the run's hyperparameters to every logger with the metric keys declared.

    Args:
        metrics: metric keys logged by the module, e.g. ``("val/acc", "val/loss", "test/acc")``; the
            ``hparam_metrics`` of the other callbacks are added.
        extra: additional hyperparameters, merged last.
        settings: run settings the saved hyperparameters lack, as a mapping of scalars and groups of scalars
            (the train config passes ``{seed: ${seed}, data: ${data}, trainer: ${trainer}}`` with
            ``_recursive_: false``), logged flat by :func:`flat_settings` (``data.max_length``).
        saved_hparams: include the module's and datamodule's ``hparams`` (``save_hyperparameters()``); turn
            off when ``extra`` already holds the same settings under other names. Default: ``True``

    Use with ``TensorBoardLogger(default_hp_metric=False)`` so no ``hp_metric`` placeholder appears.
    """

    def __init__(self, metrics=("val/acc", "val/loss"), extra: dict | None = None, settings=None,
                 saved_hparams: bool = True):
        super().__init__()
        self.metrics = tuple(metrics)
        self.extra = {**flat_settings(settings), **dict(extra or {})}
        self.saved_hparams = saved_hparams

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = {**run_hparams(trainer, pl_module, self.saved_hparams), **self.extra}
        keys = hparam_metric_keys(trainer, self.metrics)
        for logger in trainer.loggers:
            logger.log_hyperparams(params)  # hparams.yaml (TensorBoard) / hparams in the other loggers
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                writer = logger.experiment._get_file_writer()
                for summary in hparams_summary(flatten_hparams(params), dict.fromkeys(keys, 0.0)):
                    writer.add_summary(summary)
