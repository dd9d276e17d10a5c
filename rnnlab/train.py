"""Train a sequence classifier: ``python -m rnnlab.train +experiment=bilstm``.

Everything is built from the Hydra config (``rnnlab/conf``) with ``hydra.utils.instantiate``. Every run writes in its
output folder (``output_dir``, Hydra's run dir or a sweep job's subdir):

- ``config.yaml``: the resolved config;
- ``checkpoints/``: the best checkpoint by ``val/acc`` and ``last.ckpt`` (``ckpt_path=.../last.ckpt`` resumes);
- ``tensorboard/``: scalars, gradient diagnostics and the HParams entry of the run;
- ``metrics.json``: final val/test metrics, the last epoch's clipped fraction, epoch times and parameter count.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import hydra
import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf

import rnnlab.conf  # noqa: F401  (registers the config schema before Hydra composes)
from rnnlab.diagnostics import LogHParams
from rnnlab.models.callbacks import EpochTimer
from rnnlab.models.module import checkpoint_file
from rnnlab.utils import end_distributed, flush_denormals

log = logging.getLogger(__name__)
METRIC_KEYS = ("val/loss", "val/acc", "test/acc")


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a group of named objects (callbacks, loggers) that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def flat_hparams(cfg: DictConfig) -> dict:
    """Run settings the module's own hyperparameters lack (``data.max_length``, ``trainer.max_epochs``, ``seed``),
    as flat scalars for the HParams tab."""
    out = {"seed": cfg.seed}
    for group in ("data", "trainer"):
        for key, value in OmegaConf.to_container(cfg[group], resolve=True).items():
            if key.startswith("_") or isinstance(value, dict):
                continue
            out[f"{group}.{key}"] = str(value) if isinstance(value, list) or value is None else value
    return out


def build(cfg: DictConfig):
    """Datamodule (set up), module, trainer and callbacks of a config, without running anything."""
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    pretrained = getattr(datamodule, "pretrained", None)
    extra = {} if pretrained is None else {"embedding_dim": pretrained.shape[1]}
    module = hydra.utils.instantiate(cfg.model, vocab_size=datamodule.vectorizer.vocab_size,
                                     num_classes=datamodule.num_classes, _recursive_=False, **extra)
    if pretrained is not None:
        module.model.load_pretrained(pretrained, freeze=cfg.model.freeze_embeddings)
    module.vocabulary = datamodule.vectorizer.to_json()
    module.class_names = list(getattr(datamodule, "class_names", None) or [])
    module.data_config = OmegaConf.to_container(cfg.data, resolve=True)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


def _refuse_to_overwrite(out: Path) -> None:
    """A new run must not write its checkpoints and metrics over those of an earlier run in the same folder."""
    ckpts = sorted((out / "checkpoints").glob("*.ckpt"))
    if ckpts or (out / "metrics.json").exists():
        raise FileExistsError(
            f"{out} already holds a run ({'checkpoints/' if ckpts else 'metrics.json'}); a new run would overwrite it. "
            f"Resume it with ckpt_path={out / 'checkpoints' / 'last.ckpt'}, or give the new run its own folder "
            f"(leave hydra.run.dir / output_dir at their timestamped defaults)")


def train(cfg: DictConfig) -> dict:
    """Run the job described by ``cfg``; returns the metrics also written to ``metrics.json``.

    ``cfg.flush_denormal`` flushes subnormal floats to zero on CPU during the run (x86 SSE3; a no-op elsewhere):
    recurrent nets drive many activations and gradients into the subnormal range, where CPUs are ~100x slower.
    """
    with flush_denormals(cfg.flush_denormal):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict:
    if cfg.ckpt_path not in (None, "last", "best", "hpc", "registry") and "://" not in cfg.ckpt_path:
        checkpoint_file(cfg.ckpt_path)  # a local path is checked before the data and model are built
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.output_dir)
    if cfg.ckpt_path is None:
        _refuse_to_overwrite(out)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)

    datamodule, module, trainer = build(cfg)
    n_params = module.num_parameters()
    log.info("%s: %d parameters (%d trainable)", module.hparams.cell, n_params, module.num_parameters(trainable=True))
    for callback in trainer.callbacks:  # LogHParams declares the metric keys at train start; add the run's settings
        if isinstance(callback, LogHParams):
            callback.extra.update(flat_hparams(cfg))

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    timer = next((c for c in trainer.callbacks if isinstance(c, EpochTimer)), None)
    epoch_times = list(timer.times) if timer else []  # before trainer.test restores callback states from the best ckpt
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith(("val/", "train/")) or k == "grad/clipped_fraction"}  # the last epoch's values
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_score is not None:
        metrics["best/val/acc"] = float(best.best_model_score)
        metrics["best_ckpt"] = best.best_model_path
    if cfg.test and cfg.data.get("test_dir", "") is not None:  # a folder dataset may have no test split
        ckpt = best.best_model_path if best is not None and best.best_model_path else None  # None: current weights
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    metrics.update({"epoch_times_s": epoch_times, "num_parameters": n_params,
                    "epochs": trainer.current_epoch, "steps": trainer.global_step, "output_dir": str(out)})
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        log.info("metrics: %s", json.dumps({k: v for k, v in metrics.items() if k in METRIC_KEYS}))
    end_distributed()
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return train(cfg).get("val/acc", math.nan)  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
