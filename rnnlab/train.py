"""Train a sequence classifier: ``python -m rnnlab.train +experiment=bilstm``.

Everything is built from the Hydra config (``conf/``) with ``hydra.utils.instantiate``. Every run writes in its
output folder (``output_dir``, Hydra's run dir or a sweep job's subdir), once the run is accepted:

- ``config.yaml``: the resolved config; ``overrides.yaml``: the command-line overrides that composed it; ``.hydra/``:
  Hydra's record of the job;
- ``checkpoints/``: the best checkpoint by ``val/acc`` and ``last.ckpt`` (``ckpt_path=last`` resumes);
- ``tensorboard/``: scalars, gradient diagnostics and the HParams entry of the run;
- ``metrics.json``: final val/test metrics, the last epoch's clipped fraction, epoch times and parameter count, and
  ``stopped_by``: ``max_time`` for a run the wall clock cut short (:func:`rnnlab.budget.stopped_by`);
- ``.lock``: held by the process that runs in the folder (:mod:`rnnlab.training.run_folder`).

Resume: every checkpoint carries the run's resolved config (:class:`~rnnlab.models.callbacks.RunConfig`). A run
given ``ckpt_path`` takes the checkpoint's config, except the settings :mod:`rnnlab.training.resume` lets it change
or move; any other setting the command line gives another value is refused, naming each key with both values. The
data's vocabulary must equal the checkpoint's.
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
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

import rnnlab.conf  # noqa: F401  (registers the config schema before Hydra composes)
from rnnlab.budget import stopped_by
from rnnlab.models.callbacks import EpochTimer, RunConfig
from rnnlab.models.classifier import nb_log_count_ratios
from rnnlab.models.config import ModelConfig, model_config
from rnnlab.models.module import data_record, read_checkpoint
from rnnlab.security import check_targets, config_targets
from rnnlab.training.resume import checkpoint_to_resume, plain_config, refuse_to_overwrite, resume_config
from rnnlab.training.run_folder import (first_process, hold_run_folder, recorded_job, write_atomically,
                                        write_hydra_record, write_metrics)
from rnnlab.training.slurm import requeued_checkpoint
from rnnlab.utils import end_distributed, flush_denormals, user_errors

log = logging.getLogger(__name__)
METRIC_KEYS = ("val/loss", "val/acc", "test/acc")


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a group of named objects (callbacks, loggers) that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def _check_settings(cfg: DictConfig) -> None:
    """Settings that Lightning or torch would take without complaint and then do something else than asked."""
    accelerator = str(cfg.trainer.get("accelerator"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        hint = ("trainer=ddp uses GPUs, and trainer=ddp trainer.accelerator=cpu trainer.devices=2 runs DDP on 2 CPU "
                "processes" if "ddp" in str(cfg.trainer.get("strategy")) else "trainer=cpu trains on the CPU")
        raise ValueError(f"trainer.accelerator={accelerator} needs a CUDA GPU and this machine has none: {hint}; "
                         f"expected trainer.accelerator=cpu here, got trainer.accelerator={accelerator}")
    clip = cfg.trainer.get("gradient_clip_val")
    if clip is not None and (not isinstance(clip, (int, float)) or isinstance(clip, bool) or clip < 0):
        raise ValueError(f"trainer.gradient_clip_val must be a number >= 0 (0 or null: no clipping): expected e.g. "
                         f"1.0, got {clip!r}")
    if clip and cfg.model.get("sparse_embeddings"):
        raise ValueError(f"model.sparse_embeddings=true gives the embeddings sparse gradients, which "
                         f"trainer.gradient_clip_val={clip} cannot clip (Lightning clips dense ones): set "
                         f"trainer.gradient_clip_val=0 or model.sparse_embeddings=false")


def build(cfg: DictConfig, overrides: list[str] | None = None):
    """Datamodule (set up), module, trainer and callbacks of a config, without running or writing anything."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    pretrained = getattr(datamodule, "pretrained", None)
    if pretrained is not None and cfg.model.embedding_dim != pretrained.shape[1]:
        raise ValueError(f"model.embedding_dim must equal the dimension of the vectors of data.embeddings "
                         f"({cfg.data.embeddings}): expected {pretrained.shape[1]}, got {cfg.model.embedding_dim}; "
                         f"set model.embedding_dim={pretrained.shape[1]}")
    needs = getattr(datamodule, "model_target", None)  # data whose batches only one model reads (the synthetic tasks)
    if needs is not None and cfg.model.get("_target_") != needs:
        raise ValueError(f"data={datamodule.task} needs the model made for its batches and targets: expected model="
                         f"{datamodule.model_choice} (+experiment={datamodule.task} sets it, with its settings), got "
                         f"model._target_={cfg.model.get('_target_')}")
    module = hydra.utils.instantiate(cfg.model, vocab_size=datamodule.vectorizer.vocab_size,
                                     num_classes=datamodule.num_classes, _recursive_=False)
    if pretrained is not None:
        module.model.load_pretrained(pretrained, freeze=cfg.model.freeze_embeddings)
    if cfg.model.get("nb_scale"):  # the training split's log-count ratios (validation's labels stay unseen)
        train = datamodule.datasets["train"]
        module.model.load_nb_ratios(*nb_log_count_ratios(train.flat, train.lengths, train.labels,
                                                         datamodule.vectorizer.vocab_size, cfg.model.bigram_buckets,
                                                         cfg.model.nb_alpha))
    callbacks = _instantiate_all(cfg.get("callbacks"))
    callbacks.append(RunConfig(plain_config(cfg), overrides))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


def _command_line_overrides() -> list[str] | None:
    """The task overrides of the Hydra job that runs this process, or None when there is none (in-process compose)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def train(cfg: DictConfig) -> dict:
    """Run the job described by ``cfg``; returns the metrics also written to ``metrics.json``.

    ``cfg.flush_denormal`` flushes subnormal floats to zero on CPU during the run (x86 SSE3; a no-op elsewhere):
    recurrent nets drive many activations and gradients into the subnormal range, where CPUs are ~100x slower.
    """
    with flush_denormals(cfg.flush_denormal):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict:
    composed = cfg  # as the command line composed it: Hydra's record in .hydra/
    if OmegaConf.get_type(cfg.model) is ModelConfig:  # the classifier's description (model=task has its own)
        model_config(cfg.model)  # a bad model value (hidden_size=abc, which Hydra's types cannot catch) fails here
    overrides = _command_line_overrides()
    checkpoint = None
    ckpt_path = checkpoint_to_resume(cfg.ckpt_path, cfg.output_dir)  # ckpt_path=last: the run folder's last.ckpt
    if ckpt_path is None:  # a SLURM job started again after a requeue goes on from its own last.ckpt
        ckpt_path = requeued_checkpoint(cfg.output_dir)
    if ckpt_path is not None and "://" not in ckpt_path:
        checkpoint = read_checkpoint(ckpt_path)  # checked before the data and model are built
        given_targets = config_targets(cfg)  # the classes the command line's config names: the user's own choice
        overrides = (checkpoint.get("rnnlab") or {}).get("overrides", overrides)  # the run's own, not the resume's
        cfg = resume_config(cfg, checkpoint, ckpt_path, _command_line_overrides())
        check_targets(plain_config(cfg), f"checkpoint {ckpt_path}", trusted=given_targets)  # what is built from it
    _check_settings(cfg)
    out = Path(cfg.output_dir)
    if ckpt_path is None:
        refuse_to_overwrite(out)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule, module, trainer = build(cfg, overrides)
    if checkpoint is not None:
        vocabulary = data_record(checkpoint)[0]
        if vocabulary is not None and vocabulary != datamodule.vectorizer.to_json():
            raise ValueError(f"the vocabulary built from the data differs from the one of checkpoint {ckpt_path}: "
                             f"expected the data the run was trained on (data.archive / data.train_dir)")
        log.info("resume: %s at epoch %s, step %s", ckpt_path, checkpoint.get("epoch"), checkpoint.get("global_step"))
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
    n_params = module.num_parameters()
    name = module.hparams.cell if module.hparams.get("recurrent", True) else "no recurrent layer"
    log.info("%s: %d parameters (%d trainable)", name, n_params, module.num_parameters(trainable=True))

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    stop = stopped_by(trainer)  # before testing touches the trainer's state
    timer = next((c for c in trainer.callbacks if isinstance(c, EpochTimer)), None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith(("val/", "train/")) or k == "grad/clipped_fraction"}  # the last epoch's values
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_score is not None:
        metrics["best/val/acc"] = float(best.best_model_score)
        metrics["best_ckpt"] = best.best_model_path
    metrics.update({"epoch_times_s": list(timer.times) if timer else [], "num_parameters": n_params,
                    "epochs": trainer.current_epoch, "steps": trainer.global_step, "output_dir": str(out),
                    "stopped_by": stop})  # rnnlab.budget: max_steps, max_epochs, max_time (the clock cut it), ...
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
