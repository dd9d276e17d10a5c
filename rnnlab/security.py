"""What rnnlab trusts in the files it reads: a checkpoint is data, never code (docs/security.md).

Checkpoints, the configs saved inside them, the vectorized cache and the compiled extensions' build folders may come
from elsewhere (a colleague, a download, a shared disk), so each is checked before it is used:

- :func:`load_weights`: ``torch.load(..., weights_only=True)``, tensors and plain Python values only; a file that
  needs more (a pickled function or class: what a ``__reduce__`` payload is) is refused, naming what it contains.
- :func:`check_targets`: every ``_target_`` of a config read from a checkpoint is one of :data:`TRUSTED_TARGETS`,
  the classes rnnlab's own configs name, before Hydra instantiates anything from it (a class that moved is first
  renamed to its present place: :func:`upgrade_targets`, :data:`MOVED_TARGETS`).
- :func:`write_verified` / :func:`verify`: a cache entry is written atomically (temporary file, ``fsync``, rename)
  with its SHA-256 beside it (``<entry>.sha256``), and checked against it before it is read.
- :func:`private_folder_problem`: a build folder whose libraries rnnlab loads must be the user's own and writable by
  no one else.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path

import torch

# The classes a checkpoint's saved config may name (its data, model, optimizer, scheduler, trainer, callbacks and
# loggers): those of rnnlab's configs (conf/) and config schema. tests/test_security.py checks that every _target_
# of the shipped configs is here.
TRUSTED_TARGETS = frozenset({
    "rnnlab.data.datamodule.IMDBDataModule", "rnnlab.data.datamodule.FolderDataModule",
    "rnnlab.models.crossfit.CrossFitDataModule", "rnnlab.data.synthetic.AddingDataModule",
    "rnnlab.data.synthetic.CopyMemoryDataModule",
    "rnnlab.models.module.SequenceClassifierModule", "rnnlab.models.stacking.ScoreReaderModule",
    "rnnlab.models.tasks.TaskModule",
    "rnnlab.models.optim.KerasRMSprop", "rnnlab.models.optim.LazyAdam", "torch.optim.Adam", "torch.optim.AdamW",
    "torch.optim.RMSprop", "torch.optim.SGD", "torch.optim.lr_scheduler.CosineAnnealingLR",
    "torch.optim.lr_scheduler.ReduceLROnPlateau",
    "lightning.pytorch.Trainer", "rnnlab.training.checkpointing.AtomicCheckpointIO",
    "rnnlab.training.checkpointing.RunCheckpoint", "rnnlab.training.callbacks.DivergenceStop",
    "rnnlab.training.callbacks.EpochTimer", "lightning.pytorch.callbacks.EarlyStopping",
    "rnnlab.diagnostics.GradClipStats", "rnnlab.diagnostics.TimestepGradNorms", "rnnlab.diagnostics.LogHParams",
    "lightning.pytorch.loggers.CSVLogger", "lightning.pytorch.loggers.TensorBoardLogger",
})
# Where rnnlab's classes were before they moved, and where they are: a checkpoint written before the move names the
# old place in its saved config; upgrade_targets rewrites it (docs/decisions.md, 2026-12-07: each file in its layer).
MOVED_TARGETS = {
    "rnnlab.data.crossfit.CrossFitDataModule": "rnnlab.models.crossfit.CrossFitDataModule",
    "rnnlab.models.checkpointing.AtomicCheckpointIO": "rnnlab.training.checkpointing.AtomicCheckpointIO",
    "rnnlab.models.checkpointing.RunCheckpoint": "rnnlab.training.checkpointing.RunCheckpoint",
    "rnnlab.models.callbacks.DivergenceStop": "rnnlab.training.callbacks.DivergenceStop",
    "rnnlab.models.callbacks.EpochTimer": "rnnlab.training.callbacks.EpochTimer",
}


def upgrade_targets(tree):
    """Rewrite, in place and at any depth, every ``_target_`` of ``tree`` (a saved config: nested dicts and lists)
    that :data:`MOVED_TARGETS` knows to the class's present name; returns ``tree``.

    >>> upgrade_targets({"data": {"_target_": "rnnlab.data.crossfit.CrossFitDataModule"}})
    {'data': {'_target_': 'rnnlab.models.crossfit.CrossFitDataModule'}}
    """
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                node["_target_"] = MOVED_TARGETS.get(node["_target_"], node["_target_"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return tree


class UntrustedFile(ValueError):
    """A file rnnlab refuses to use because using it could run code that is not rnnlab's (a user error: the entry
    points print ``error: <message>`` and exit 2)."""


def _unsafe_globals(path, error: Exception) -> list[str]:
    """The functions and classes a ``torch.save`` file would import when loaded, or [] if it names none (a file of
    another kind, or a truncated one)."""
    if zipfile.is_zipfile(path) and hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint"):  # torch >= 2.5
        try:
            return torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:  # noqa: BLE001  (a damaged archive: the loader's own error says so)
            return []
    return re.findall(r"unsupported GLOBAL (\S+)|Unsupported global: GLOBAL (\S+)", str(error))


def load_weights(path, **kwargs):
    """``torch.load(path, weights_only=True, **kwargs)``: tensors and plain values only. A file that would import a
    function or class when loaded (a pickled object) raises :class:`UntrustedFile` naming them; other loading errors
    (a file of another kind, a truncated one) pass through."""
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        unsafe = [g if isinstance(g, str) else "".join(g) for g in _unsafe_globals(path, e)]
        if not unsafe:
            raise
        raise UntrustedFile(
            f"checkpoint {path} must hold only tensors and plain values (rnnlab loads checkpoints weights-only, so "
            f"that opening one never runs code): expected a checkpoint of rnnlab.train, got one that would import "
            f"{', '.join(unsafe)} when loaded; refused. A checkpoint is data: re-save the state_dict of a model you "
            f"trust, never load this file with weights_only=False") from None


def one_line(error: Exception) -> str:
    """An exception's message on one line: for torch's multi-line weights-only messages, the line that says what was
    found (``Unsupported operand 110``)."""
    text = str(error)
    found = re.search(r"^(?:Unsupported|Trying to load unsupported) .*$", text, re.MULTILINE)
    if found:
        return found.group(0)
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def check_targets(tree, where: str, prefix: str = "", trusted=()) -> None:
    """Refuse a config read from ``where`` (a checkpoint) if a ``_target_`` in it, at any depth, is neither one of
    :data:`TRUSTED_TARGETS` nor of ``trusted``: Hydra would import and call whatever it names (``numpy.savetxt``
    writes a file)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = f"{prefix}{key}"
            if key == "_target_" and value not in TRUSTED_TARGETS and value not in trusted:
                raise UntrustedFile(
                    f"{here} of {where} must name a class of rnnlab's own configs: expected one of the "
                    f"{len(TRUSTED_TARGETS)} that docs/security.md lists (e.g. rnnlab.data.datamodule.IMDBDataModule), "
                    f"got {value!r}; refused. A checkpoint is data: rnnlab never calls what its config names")
            check_targets(value, where, f"{here}.", trusted)
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            check_targets(value, where, f"{prefix}{i}.", trusted)


def config_targets(cfg) -> frozenset:
    """Every ``_target_`` of a config (a DictConfig or plain dict): those of the config the user composed, which a
    resume trusts in its checkpoint beside :data:`TRUSTED_TARGETS` (an experiment's own callback class)."""
    from omegaconf import DictConfig, OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    found, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            found.update(v for k, v in node.items() if k == "_target_" and isinstance(v, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(found)


# ---------------------------------------------------------------- files written atomically, verified on read
def sha256_file(path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path, write) -> None:
    """Write ``path`` by calling ``write(file)`` on a temporary file in its folder, ``fsync`` it and rename it over
    ``path``: a reader (or a crash, or a full disk) sees the whole old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checksum_path(path) -> Path:
    """Where the SHA-256 of ``path`` is recorded: ``<path>.sha256`` beside it."""
    return Path(f"{path}.sha256")


def write_verified(path, write) -> None:
    """:func:`write_atomic`, then the SHA-256 of what was written, atomically, in :func:`checksum_path`."""
    write_atomic(path, write)
    digest = sha256_file(path)
    write_atomic(checksum_path(path), lambda f: f.write(f"{digest}  {Path(path).name}\n".encode()))


def verify(path) -> str | None:
    """None if ``path`` matches the SHA-256 recorded beside it; otherwise what is wrong (no checksum recorded, or
    another content: truncated, a flipped bit, replaced)."""
    recorded = checksum_path(path)
    if not recorded.exists():
        return f"no checksum beside it ({recorded.name}): its write was interrupted"
    expected = recorded.read_text(errors="replace").split(" ")[0].strip()
    actual = sha256_file(path)
    if actual != expected:
        return f"its SHA-256 is {actual[:12]}..., not the {expected[:12]}... recorded when it was written"
    return None


# ---------------------------------------------------------------- folders whose libraries are loaded
def private_folder_problem(folder) -> str | None:
    """None if ``folder`` belongs to this user and no one else can write it (so what it holds is what this user's
    processes put there); otherwise why it is not."""
    st = os.stat(folder)
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"it belongs to user id {st.st_uid}, not to this user ({os.getuid()})"
    if st.st_mode & 0o022:
        who = {0o022: "its group and others", 0o020: "its group", 0o002: "others"}[st.st_mode & 0o022]
        return f"it is writable by {who} (mode {st.st_mode & 0o777:o})"
    return None
