"""Train a model: ``python -m rnnlab.train +experiment=bilstm``.

Data, model, callbacks, loggers and trainer are instantiated from the Hydra config (``conf/``); the model asks the
set-up datamodule for what it needs of the data (its ``datamodule`` argument). A run writes in its output folder
(``output_dir``), once accepted: ``config.yaml`` and ``overrides.yaml`` (the resolved config and the command line's
overrides), Hydra's ``.hydra/``, ``checkpoints/`` (the best by ``val/acc`` and ``last.ckpt``), ``tensorboard/``,
``metrics.json`` (:mod:`rnnlab.training.run_folder`) and ``.lock``. ``ckpt_path`` resumes a run, as the rules of
:mod:`rnnlab.training.resume` allow.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from rnnlab.envdefaults import set_defaults

set_defaults()  # before torch loads

import hydra  # noqa: E402  (after the environment above)
import lightning.pytorch as pl
import yaml
from omegaconf import DictConfig, OmegaConf

import rnnlab.conf  # noqa: F401  (registers the config schema before Hydra composes)
from rnnlab.training.callbacks import RunConfig
from rnnlab.training.checkpointing import read_checkpoint
from rnnlab.schema import check_values
from rnnlab.training.resume import check_same_data, checkpoint_to_resume, plain_config, refuse_to_overwrite, resume
from rnnlab.training.run_folder import (command_line_overrides, first_process, fit_metrics, hold_run_folder,
                                        recorded_job, write_atomically, write_hydra_record, write_metrics)
from rnnlab.training.slurm import requeued_checkpoint
from rnnlab.utils import end_distributed, flush_denormals, instantiate, user_errors

log = logging.getLogger(__name__)
METRIC_KEYS = ("val/loss", "val/acc", "test/acc")


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a group of named objects (callbacks, loggers) that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def build(cfg: DictConfig, overrides: list[str] | None = None):
    """Datamodule (set up), module, trainer and callbacks of a config, without running or writing anything."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    module = instantiate(cfg.model, datamodule=datamodule, _recursive_=False)  # it asks the data for what it needs
    callbacks = [*_instantiate_all(cfg.get("callbacks")), RunConfig(plain_config(cfg), overrides)]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=_instantiate_all(cfg.get("logger")) or False)
    return datamodule, module, trainer


def train(cfg: DictConfig) -> dict:
    """Run the job described by ``cfg``; returns the metrics also written to ``metrics.json``.

    ``cfg.flush_denormal`` flushes subnormal floats to zero on CPU during the run (x86 SSE3; a no-op elsewhere):
    recurrent nets drive many activations and gradients into the subnormal range, where CPUs are ~100x slower.
    """
    with flush_denormals(cfg.flush_denormal):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict:
    composed = cfg  # as the command line composed it: Hydra's record in .hydra/
    check_values(cfg)  # before any data is loaded
    # ckpt_path=last: the run folder's last.ckpt; without ckpt_path, a requeued SLURM job's own last.ckpt
    ckpt_path = checkpoint_to_resume(cfg.ckpt_path, cfg.output_dir) or requeued_checkpoint(cfg.output_dir)
    cfg, checkpoint, overrides = resume(cfg, ckpt_path, command_line_overrides())
    check_values(cfg)
    out = Path(cfg.output_dir)
    if ckpt_path is None:
        refuse_to_overwrite(out)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module, trainer = build(cfg, overrides)
    check_same_data(checkpoint, datamodule, ckpt_path)
    with hold_run_folder(out):  # the run is accepted: from here on it writes in its folder, and no other process does
        if ckpt_path is None:
            refuse_to_overwrite(out)  # again: another run may have written here since the check above
        if first_process():
            write_atomically(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
            if overrides is not None:
                write_atomically(out / "overrides.yaml", yaml.safe_dump(list(overrides)))
            write_hydra_record(out, composed)
        metrics = _fit_and_test(cfg, datamodule, module, trainer, ckpt_path, out)
        end_distributed()
    return metrics


def _fit_and_test(cfg, datamodule, module, trainer, ckpt_path, out: Path) -> dict:
    log.info("%s: %d parameters (%d trainable)", module.describe(), module.num_parameters(),
             module.num_parameters(trainable=True))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics, best = fit_metrics(trainer, module, out), trainer.checkpoint_callback  # before testing touches trainer
    if trainer.is_global_zero:  # merged with the file's: a resume of a finished run trains nothing and keeps val/*
        metrics = write_metrics(out, metrics)
    if cfg.test and cfg.data.get("test_dir", "") is not None:  # a folder dataset may have no test split
        if best is not None and best.best_model_path:
            # The weights its validation scored, which evaluate and predict load: the checkpoint's state_dict. Not
            # trainer.test(ckpt_path=...): after fit, a weight-averaging callback would restore its raw weights.
            module.load_state_dict(read_checkpoint(best.best_model_path)["state_dict"])
        results = trainer.test(module, datamodule=datamodule)  # no best checkpoint: the current weights
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
        if trainer.is_global_zero:
            metrics = write_metrics(out, metrics)
    if trainer.is_global_zero:
        log.info("metrics: %s", json.dumps({k: v for k, v in metrics.items() if k in METRIC_KEYS}))
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://rnnlab.conf", config_name="train")
@user_errors()
def main(cfg: DictConfig) -> float:
    # the value a Hydra sweeper optimises; nan for a multirun job that failed (its folder's error.txt says why)
    return recorded_job(train, cfg).get("val/acc", math.nan)


if __name__ == "__main__":
    main()
