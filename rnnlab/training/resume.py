"""What a resumed run may change, what it takes from its checkpoint, and what it refuses.

Every checkpoint carries the run's resolved config (:class:`~rnnlab.training.callbacks.RunConfig`). A run given
``ckpt_path`` (a file, or ``last``: :func:`checkpoint_to_resume`) takes the checkpoint's config, moved to the resume's
folder (every path inside the run folder follows it), except the settings of :data:`RESUME_OWN` (the resume's),
:data:`RESUME_MAY_CHANGE` and :data:`RESUME_MAY_MOVE` (the command line's when it gives them). Any other setting the
command line gives another value is refused, naming each key with both values (:func:`resume_config`). A new run
never writes over an earlier one (:func:`refuse_to_overwrite`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.stats import flatten

log = logging.getLogger(__name__)
# Settings a resumed run may change: how long the run goes on, what it reports, what its callbacks and loggers do. A
# resume keeps the checkpoint's values unless its command line gives them (a config composed in-process, which has no
# command line, gives them all).
RESUME_MAY_CHANGE = ("trainer.max_epochs", "trainer.max_steps", "trainer.enable_progress_bar",
                     "trainer.enable_model_summary", "trainer.log_every_n_steps", "trainer.limit_test_batches", "test",
                     "callbacks", "logger", "diagnostics")
# Where the data is read from: the command line's when it gives them, the checkpoint's otherwise. The vocabulary
# built from the data must still equal the checkpoint's.
RESUME_MAY_MOVE = ("data.root", "data.archive", "data.num_workers", "data.progressbar")
# Always the resume's own: the checkpoint it starts from and the folder it writes in. Every setting of the checkpoint
# that lies in the run's folder (trainer.default_root_dir, the checkpoints' dirpath, the loggers' save_dir) moves with
# it: a run folder may be moved, copied or resumed into a new folder.
RESUME_OWN = ("ckpt_path", "output_dir")
# What Lightning's fit accepts for ckpt_path besides a file: "last" is the run folder's checkpoints/last.ckpt here.
LIGHTNING_CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


def checkpoint_to_resume(ckpt_path, output_dir) -> str | None:
    """The checkpoint file ``ckpt_path`` names: ``last`` (Lightning's shorthand) is ``<output_dir>/checkpoints/
    last.ckpt``; a remote URL (``s3://...``) is left to Lightning; ``best``, ``hpc`` and ``registry`` are refused, as
    they name no checkpoint of this run before it trains."""
    if ckpt_path is None or "://" in str(ckpt_path):
        return ckpt_path
    if ckpt_path == "last":
        last = Path(output_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last resumes the last.ckpt of the run folder: expected {last}, got no such file. Give the "
                f"run's folder (hydra.run.dir=<run> or output_dir=<run>) or the checkpoint (ckpt_path=<run>/checkpoints"
                f"/last.ckpt)")
        return str(last)
    if ckpt_path in LIGHTNING_CKPT_KEYWORDS:
        raise ValueError(f"ckpt_path must be a checkpoint file or `last` (the run folder's checkpoints/last.ckpt): "
                         f"expected e.g. ckpt_path=<run>/checkpoints/last.ckpt, got {ckpt_path!r}")
    return str(ckpt_path)


def refuse_to_overwrite(out: Path) -> None:
    """A new run must not write its checkpoints and metrics over those of an earlier run in the same folder."""
    ckpts = sorted((out / "checkpoints").glob("*.ckpt"))
    if ckpts or (out / "metrics.json").exists():
        raise FileExistsError(
            f"{out} already holds a run ({'checkpoints/' if ckpts else 'metrics.json'}); a new run would overwrite it. "
            f"Resume it with ckpt_path={out / 'checkpoints' / 'last.ckpt'}, or give the new run its own folder "
            f"(leave hydra.run.dir / output_dir at their timestamped defaults)")


def plain_config(cfg: DictConfig) -> dict:
    """The resolved config as plain Python values (the schema's enums as their names), for checkpoints."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


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


def _moved(tree, old: str, new: str):
    """``tree`` with every string that is the folder ``old`` or a path inside it moved to ``new``."""
    if isinstance(tree, dict):
        return {k: _moved(v, old, new) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_moved(v, old, new) for v in tree]
    if isinstance(tree, str) and old and (tree == old or tree.startswith(old.rstrip("/") + "/")):
        return new.rstrip("/") + tree[len(old.rstrip("/")):]
    return tree


def _nested(flat: dict) -> dict:
    """The inverse of :func:`rnnlab.stats.flatten`."""
    out: dict = {}
    for key, value in flat.items():
        *path, name = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    return out


def resume_config(cfg: DictConfig, checkpoint: dict, ckpt_path, overrides: list[str] | None) -> DictConfig:
    """The config a resumed run runs with: the checkpoint's, moved to ``cfg.output_dir``, with

    - the settings of :data:`RESUME_OWN` from ``cfg``;
    - those of :data:`RESUME_MAY_CHANGE` from ``cfg`` when the command line sets them (all of them when ``overrides``
      is None, a config composed in-process), else the checkpoint's;
    - those of :data:`RESUME_MAY_MOVE` from ``cfg`` when the command line sets them, else the checkpoint's.

    Any other key whose value in ``cfg`` differs from the checkpoint's is refused when the command line set it (every
    differing key when ``overrides`` is None) and restored otherwise. A checkpoint without a run config (an earlier
    rnnlab) is checked against ``cfg.model`` only."""
    saved = (checkpoint.get("rnnlab") or {}).get("config")
    new = plain_config(cfg)
    if saved is None:  # a checkpoint of an earlier rnnlab: check at least that the model is the same
        hparams = checkpoint.get("hyper_parameters") or {}
        differ = {f"model.{k}": (hparams[k], v) for k, v in new["model"].items()  # the cell and sizes; not the
                  if k in hparams and not isinstance(v, dict) and hparams[k] != v}  # optimizer's dict of defaults
        _refuse(differ, ckpt_path)
        return cfg
    new["ckpt_path"] = str(ckpt_path)  # the file it resumes from (ckpt_path=last: the run folder's last.ckpt)
    saved = _moved(saved, str(saved.get("output_dir", "")), str(new["output_dir"]))
    old_flat, new_flat = flatten(saved), flatten(new)
    free = RESUME_OWN + RESUME_MAY_CHANGE + RESUME_MAY_MOVE
    differ = {k: (old_flat.get(k, "<unset>"), new_flat.get(k, "<unset>")) for k in old_flat.keys() | new_flat.keys()
              if old_flat.get(k) != new_flat.get(k) and not _under(k, free)}
    given = _given_keys(overrides, new)
    _refuse({k: v for k, v in differ.items() if given is None or _under(k, given)}, ckpt_path)
    if differ:
        restored = ", ".join(f"{k}={v[0]}" for k, v in sorted(differ.items()))
        log.info("resume: restored from the checkpoint: %s", restored)

    def from_cfg(key: str) -> bool:
        if _under(key, RESUME_OWN):
            return True
        if _under(key, RESUME_MAY_CHANGE):
            return given is None or _under(key, given)
        return _under(key, RESUME_MAY_MOVE) and given is not None and _under(key, given)

    merged = {k: v for k, v in old_flat.items() if not from_cfg(k)}
    merged.update({k: v for k, v in new_flat.items() if from_cfg(k)})
    return OmegaConf.create(_nested(merged))


def _refuse(differ: dict, ckpt_path) -> None:
    if differ:
        keys = "; ".join(f"{k}: expected {a!r} (the checkpoint's), got {b!r}" for k, (a, b) in sorted(differ.items()))
        raise ValueError(
            f"a resumed run must keep the settings of its checkpoint {ckpt_path}: {keys}. Drop these overrides to "
            f"resume the run as it was, or start a new run without ckpt_path. A resume may change only: "
            f"{', '.join(RESUME_OWN + RESUME_MAY_CHANGE + RESUME_MAY_MOVE)}")


def resume(cfg: DictConfig, ckpt_path: str | None, overrides: list[str] | None):
    """``(config, checkpoint, overrides)`` of a run given ``ckpt_path``: the checkpoint read weights-only and checked
    before the data and model are built, the config it resumes with (:func:`resume_config`; every class its saved
    config names checked, the command line's own choices trusted) and the run's own command-line overrides (the
    checkpoint's, not the resume's). ``(cfg, None, overrides)`` for a new run or a URL Lightning reads itself."""
    if ckpt_path is None or "://" in ckpt_path:
        return cfg, None, overrides
    from rnnlab.training.checkpointing import read_checkpoint
    from rnnlab.security import check_targets, config_targets

    checkpoint = read_checkpoint(ckpt_path)
    given_targets = config_targets(cfg)  # the classes the command line's config names: the user's own choice
    cfg = resume_config(cfg, checkpoint, ckpt_path, overrides)
    check_targets(plain_config(cfg), f"checkpoint {ckpt_path}", trusted=given_targets)  # what is built from it
    return cfg, checkpoint, (checkpoint.get("rnnlab") or {}).get("overrides", overrides)


def check_same_data(checkpoint: dict | None, datamodule, ckpt_path) -> None:
    """A resumed run's data must build the vocabulary its checkpoint was trained with; the resume, accepted, is
    logged with the epoch and step it goes on from."""
    from rnnlab.training.checkpointing import data_record

    vocabulary = None if checkpoint is None else data_record(checkpoint)[0]
    if vocabulary is not None and vocabulary != datamodule.vectorizer.to_json():
        raise ValueError(f"the vocabulary built from the data differs from the one of checkpoint {ckpt_path}: "
                         f"expected the data the run was trained on (data.archive / data.train_dir)")
    if checkpoint is not None:
        log.info("resume: %s at epoch %s, step %s", ckpt_path, checkpoint.get("epoch"), checkpoint.get("global_step"))
