"""Train a sequence classifier: ``python -m rnnlab.train +experiment=bilstm``.

Everything is built from the Hydra config (``conf/``) with ``hydra.utils.instantiate``. Every run writes in its
output folder (``output_dir``, Hydra's run dir or a sweep job's subdir), once the run is accepted:

- ``config.yaml``: the resolved config; ``overrides.yaml``: the command-line overrides that composed it;
- ``checkpoints/``: the best checkpoint by ``val/acc`` and ``last.ckpt`` (``ckpt_path=.../last.ckpt`` resumes);
- ``tensorboard/``: scalars, gradient diagnostics and the HParams entry of the run;
- ``metrics.json``: final val/test metrics, the last epoch's clipped fraction, epoch times and parameter count, and
  ``stopped_by``: ``max_time`` for a run the wall clock cut short (:func:`rnnlab.budget.stopped_by`).

Resume: every checkpoint carries the run's resolved config (:class:`~rnnlab.models.callbacks.RunConfig`). A run
given ``ckpt_path`` takes the checkpoint's config, except the settings of :data:`RESUME_MAY_CHANGE` (the command
line's) and :data:`RESUME_MAY_MOVE` (the command line's if it gives them); any other setting the command line gives
another value is refused, naming each key with both values. The data's vocabulary must equal the checkpoint's.
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
from rnnlab.budget import stopped_by
from rnnlab.models.callbacks import EpochTimer, RunConfig
from rnnlab.models.classifier import nb_log_count_ratios
from rnnlab.models.config import ModelConfig, model_config
from rnnlab.models.module import data_record, read_checkpoint
from rnnlab.security import check_targets, config_targets
from rnnlab.utils import end_distributed, flush_denormals, user_errors

log = logging.getLogger(__name__)
METRIC_KEYS = ("val/loss", "val/acc", "test/acc")
# Settings a resumed run may change. These are the command line's (or their defaults): how long the run goes on, what
# it reports, where it writes (callbacks and loggers write under output_dir).
RESUME_MAY_CHANGE = ("trainer.max_epochs", "trainer.max_steps", "trainer.enable_progress_bar",
                     "trainer.enable_model_summary", "trainer.log_every_n_steps", "trainer.limit_test_batches", "test",
                     "ckpt_path", "output_dir", "callbacks", "logger", "diagnostics")
# Where the data is read from: the command line's when it gives them, the checkpoint's otherwise. The vocabulary
# built from the data must still equal the checkpoint's.
RESUME_MAY_MOVE = ("data.root", "data.archive", "data.num_workers", "data.progressbar")


def _instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a group of named objects (callbacks, loggers) that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def _check_settings(cfg: DictConfig) -> None:
    """Settings that Lightning or torch would take without complaint and then do something else than asked."""
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
    callbacks.append(RunConfig(_plain(cfg), overrides))
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


def _plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python values (the schema's enums as their names), for checkpoints."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def _flat(tree, prefix: str = "") -> dict:
    """A nested config as ``{"model.cell": "gru", ...}`` (lists are values)."""
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value})
    return out


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _given_keys(overrides: list[str] | None, config_keys) -> list[str] | None:
    """The config keys the command line sets (a group choice such as ``model=cifg`` sets ``model``); None when the
    overrides are unknown or one of them may set any key (``+experiment=...``, a global config group)."""
    if overrides is None:
        return None
    keys = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~").replace("/", ".")
        if key.split(".")[0] not in config_keys:  # e.g. experiment: a global package
            return None
        keys.append(key)
    return keys


def resume_config(cfg: DictConfig, checkpoint: dict, ckpt_path, overrides: list[str] | None) -> DictConfig:
    """The config a resumed run runs with: the checkpoint's, with the settings of :data:`RESUME_MAY_CHANGE` taken from
    ``cfg``, and those of :data:`RESUME_MAY_MOVE` when the command line sets them. Any other key whose value in ``cfg``
    differs from the checkpoint's is refused when the command line set it (every differing key when ``overrides`` is
    None, a config composed in-process) and restored otherwise. A checkpoint without a run config (an earlier rnnlab)
    is checked against ``cfg.model`` only."""
    saved = (checkpoint.get("rnnlab") or {}).get("config")
    new = _plain(cfg)
    if saved is None:  # a checkpoint of an earlier rnnlab: check at least that the model is the same
        hparams = checkpoint.get("hyper_parameters") or {}
        differ = {f"model.{k}": (hparams[k], v) for k, v in new["model"].items()  # the cell and sizes; not the
                  if k in hparams and not isinstance(v, dict) and hparams[k] != v}  # optimizer's dict of defaults
        _refuse(differ, ckpt_path)
        return cfg
    old_flat, new_flat = _flat(saved), _flat(new)
    differ = {k: (old_flat.get(k, "<unset>"), new_flat.get(k, "<unset>")) for k in old_flat.keys() | new_flat.keys()
              if old_flat.get(k) != new_flat.get(k) and not _under(k, RESUME_MAY_CHANGE + RESUME_MAY_MOVE)}
    given = _given_keys(overrides, new)
    _refuse({k: v for k, v in differ.items() if given is None or _under(k, given)}, ckpt_path)
    if differ:
        log.info("resume: restored from the checkpoint: %s", ", ".join(f"{k}={v[0]}" for k, v in sorted(differ.items())))
    merged = dict(saved)
    for key in RESUME_MAY_CHANGE + RESUME_MAY_MOVE:
        if key in RESUME_MAY_MOVE and given is not None and not _under(key, given):
            continue
        group, _, name = key.partition(".")
        if name and group in new and name in new[group]:
            merged[group] = {**merged.get(group, {}), name: new[group][name]}
        elif not name and key in new:
            merged[key] = new[key]
    return OmegaConf.create(merged)


def _refuse(differ: dict, ckpt_path) -> None:
    if differ:
        keys = "; ".join(f"{k}: expected {a!r} (the checkpoint's), got {b!r}" for k, (a, b) in sorted(differ.items()))
        raise ValueError(
            f"a resumed run must keep the settings of its checkpoint {ckpt_path}: {keys}. Drop these overrides to "
            f"resume the run as it was, or start a new run without ckpt_path. A resume may change only: "
            f"{', '.join(RESUME_MAY_CHANGE + RESUME_MAY_MOVE)}")


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
    if OmegaConf.get_type(cfg.model) is ModelConfig:  # the classifier's description (model=task has its own)
        model_config(cfg.model)  # a bad model value (hidden_size=abc, which Hydra's types cannot catch) fails here
    overrides = _command_line_overrides()
    checkpoint = None
    if cfg.ckpt_path not in (None, "last", "best", "hpc", "registry") and "://" not in cfg.ckpt_path:
        checkpoint = read_checkpoint(cfg.ckpt_path)  # checked before the data and model are built
        given_targets = config_targets(cfg)  # the classes the command line's config names: the user's own choice
        overrides = (checkpoint.get("rnnlab") or {}).get("overrides", overrides)  # the run's own, not the resume's
        cfg = resume_config(cfg, checkpoint, cfg.ckpt_path, _command_line_overrides())
        check_targets(_plain(cfg), f"checkpoint {cfg.ckpt_path}", trusted=given_targets)  # what is built from it
    _check_settings(cfg)
    out = Path(cfg.output_dir)
    if cfg.ckpt_path is None:
        _refuse_to_overwrite(out)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule, module, trainer = build(cfg, overrides)
    if checkpoint is not None:
        vocabulary = data_record(checkpoint)[0]
        if vocabulary is not None and vocabulary != datamodule.vectorizer.to_json():
            raise ValueError(f"the vocabulary built from the data differs from the one of checkpoint {cfg.ckpt_path}: "
                             f"expected the data the run was trained on (data.archive / data.train_dir)")
    out.mkdir(parents=True, exist_ok=True)  # the run is accepted: from here on it writes in its folder
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    if overrides is not None:
        (out / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    n_params = module.num_parameters()
    name = module.hparams.cell if module.hparams.get("recurrent", True) else "no recurrent layer"
    log.info("%s: %d parameters (%d trainable)", name, n_params, module.num_parameters(trainable=True))

    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    stop = stopped_by(trainer)  # before testing touches the trainer's state
    timer = next((c for c in trainer.callbacks if isinstance(c, EpochTimer)), None)
    epoch_times = list(timer.times) if timer else []
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith(("val/", "train/")) or k == "grad/clipped_fraction"}  # the last epoch's values
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_score is not None:
        metrics["best/val/acc"] = float(best.best_model_score)
        metrics["best_ckpt"] = best.best_model_path
    if cfg.test and cfg.data.get("test_dir", "") is not None:  # a folder dataset may have no test split
        if best is not None and best.best_model_path:
            # The weights its validation scored, which evaluate and predict load: the checkpoint's state_dict. Not
            # trainer.test(ckpt_path=...): after fit, a weight-averaging callback would restore its raw weights.
            module.load_state_dict(read_checkpoint(best.best_model_path)["state_dict"])
        results = trainer.test(module, datamodule=datamodule)  # no best checkpoint: the current weights
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    metrics.update({"epoch_times_s": epoch_times, "num_parameters": n_params,
                    "epochs": trainer.current_epoch, "steps": trainer.global_step, "output_dir": str(out)})
    metrics["stopped_by"] = stop  # rnnlab.budget: max_steps, max_epochs, max_time (the wall clock cut the run), ...
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        log.info("metrics: %s", json.dumps({k: v for k, v in metrics.items() if k in METRIC_KEYS}))
    end_distributed()
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://rnnlab.conf", config_name="train")
@user_errors()
def main(cfg: DictConfig) -> float:
    return train(cfg).get("val/acc", math.nan)  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
