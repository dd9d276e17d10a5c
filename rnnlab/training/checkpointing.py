"""Checkpoints: written without damaging what is already on disk, read without running code.

- :class:`AtomicCheckpointIO` (a Lightning ``CheckpointIO`` plugin, ``trainer.plugins``): every checkpoint is written
  to a temporary file in its own folder, flushed to disk (``fsync``), then renamed over the target, so a crash, a
  Ctrl+C or a full disk leaves the previous file whole. Lightning's own writer stages the file in the system's
  temporary folder, and a full disk there left a best checkpoint at 21.7 of 41.5 MB.
  It reads checkpoints weights-only (a resume, ``ckpt_path=last`` included): one that would run code when loaded is
  refused naming what it holds (:func:`rnnlab.security.load_weights`).
- :class:`RunCheckpoint` (a ``ModelCheckpoint``): when the run stops on a non-finite or diverged loss, the state is
  saved beside the checkpoints as ``<filename>-diverged.ckpt`` for debugging; ``last.ckpt`` stays the last good one,
  which a resume (with a lower learning rate, or clipping) can start from. Its state (best score, best and last
  paths) survives a run folder that was moved or copied, or a resume into a new folder.
- :func:`read_checkpoint` / :func:`data_record`: the dict of a checkpoint file (weights-only, the classes its saved
  config names upgraded to their present places) and the data it was trained on.
"""
from __future__ import annotations

import errno
import io
import os
import pickle
import zipfile
import shutil
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from rnnlab.security import load_weights, one_line, upgrade_targets
from rnnlab.training.run_folder import write_atomically

MB = 1 << 20


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints atomically in their own folder (temporary file, ``fsync``, rename); remote paths
    (``s3://...``) go to Lightning's writer. A full disk is an ``OSError(ENOSPC)`` saying how much space the
    checkpoint needed and where, with the previous file intact."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # the size is known before anything is written
        data = buffer.getbuffer()
        try:
            write_atomically(path, data)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                free = shutil.disk_usage(path.parent).free
                raise OSError(errno.ENOSPC, (
                    f"no space left on device to write checkpoint {path}: it needs {len(data) / MB:.1f} MB, "
                    f"{path.parent} has {free / MB:.1f} MB free; the files already there are intact. Free space and "
                    f"resume from the run's last.ckpt (ckpt_path=...)")) from e
            raise
        _fsync_folder(path.parent)  # the rename itself survives a power cut

    def load_checkpoint(self, path, *args, weights_only=None, **kwargs) -> dict:
        """Lightning's reader, always weights-only (whatever the caller asks): a checkpoint is data, never code."""
        try:
            return super().load_checkpoint(path, *args, weights_only=True, **kwargs)
        except pickle.UnpicklingError as e:
            if "://" in str(path):
                raise
            load_weights(path, map_location="cpu")  # raises the error that names what the file would import
            raise e


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RunCheckpoint(ModelCheckpoint):
    """:class:`~lightning.pytorch.callbacks.ModelCheckpoint` that keeps its checkpoint when the run stops on a
    non-finite or diverged loss (a ``FloatingPointError``): with ``save_on_exception``, that state goes to
    ``<filename>-diverged.ckpt`` beside it instead. Other exceptions (Ctrl+C) save as ``ModelCheckpoint`` does."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, FloatingPointError):
            return super().on_exception(trainer, pl_module, exception)
        if not self._should_save_on_exception(trainer) or self.dirpath is None:
            return
        path = os.path.join(self.dirpath, f"{self.filename or 'checkpoint'}-diverged{self.FILE_EXTENSION}")
        trainer.save_checkpoint(path, self.save_weights_only)
        rank_zero_info(f"the diverged state was saved to {path}; {self.filename or 'the last'} checkpoint "
                       f"is left as it was")

    def load_state_dict(self, state_dict: dict) -> None:
        """Restores the state as ``ModelCheckpoint`` does in the folder it was saved in, wherever the folder is now.

        ``ModelCheckpoint`` keeps its best score only when its ``dirpath`` is the one it saved: a moved or copied run
        folder forgot it, and its final test scored the last weights instead of the best. Here each path of the state
        under the saved ``dirpath`` becomes the same file under the current one when that file exists (a moved or
        copied folder), and stays where it was otherwise (a resume into a new folder: its best checkpoint is the
        original folder's, which ``ModelCheckpoint`` never deletes, being outside its ``dirpath``).
        """
        saved_dir = state_dict.get("dirpath")
        if saved_dir is None or self.dirpath is None or saved_dir == self.dirpath:
            return super().load_state_dict(state_dict)

        def moved(path):
            if not path or Path(saved_dir) not in Path(path).parents:
                return path
            here = Path(self.dirpath) / Path(path).relative_to(saved_dir)
            return str(here) if here.exists() else path

        state = {**state_dict, "dirpath": self.dirpath,
                 "best_k_models": {moved(p): v for p, v in state_dict.get("best_k_models", {}).items()}}
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in state:
                state[key] = moved(state[key])
        super().load_state_dict(state)


def checkpoint_file(path) -> Path:
    """``path`` as a :class:`Path` if it is a file; otherwise an error that says what to pass instead (a run folder's
    own checkpoints are listed)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    found = sorted(path.rglob("*.ckpt")) if path.is_dir() else []
    hint = ("it is a folder; its checkpoints: " + ", ".join(str(f) for f in found[:6]) if found else
            "expected a .ckpt file written by rnnlab.train: RUN/checkpoints/last.ckpt, or the best epochNN-...ckpt "
            "beside it (runs write to outputs/DATE/TIME/)")
    raise FileNotFoundError(f"checkpoint {path} {'is not a file' if path.exists() else 'does not exist'}: {hint}")


UNREADABLE = (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, RuntimeError, KeyError, TypeError)


def not_a_checkpoint(path, error: Exception) -> ValueError:
    return ValueError(f"{path} is not a checkpoint of rnnlab.train, or it is truncated ({type(error).__name__}: "
                      f"{one_line(error)}); expected the .ckpt of a run, e.g. outputs/DATE/TIME/checkpoints/last.ckpt")


def load_checkpoint_file(path: Path, mmap: bool = False) -> dict:
    """The dict of checkpoint ``path``, loaded weights-only, the classes its saved config names at their present
    places (:func:`rnnlab.security.upgrade_targets`); a file of another kind is an error naming it."""
    try:
        checkpoint = load_weights(path, map_location="cpu", mmap=mmap)
    except UNREADABLE as e:
        raise not_a_checkpoint(path, e) from e
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("rnnlab") or {}, dict):
        raise not_a_checkpoint(path, TypeError(f"it holds a {type(checkpoint).__name__} of another layout"))
    upgrade_targets(checkpoint.get("rnnlab"))
    return checkpoint


def read_checkpoint(path) -> dict:
    """The dict of a checkpoint file written by ``rnnlab.train``, loaded weights-only; a missing file, a file of another
    kind or one that would run code when loaded is an error naming it. What its saved config may build is checked
    where it is built (:func:`rnnlab.models.module.load_module`; a resume checks the config it restores)."""
    return load_checkpoint_file(checkpoint_file(path))


def data_record(checkpoint: dict) -> tuple[str | None, list[str] | None, dict | None]:
    """``(vocabulary JSON, class names, data config)`` of a checkpoint: the vocabulary and class names from the
    datamodule's state (Lightning stores it under the datamodule's class name), the data config from the run config
    (``checkpoint["rnnlab"]["config"]["data"]``); checkpoints of earlier versions kept all three in ``"rnnlab"``."""
    record = checkpoint.get("rnnlab") or {}
    data = next((v for v in checkpoint.values() if isinstance(v, dict) and "vocabulary" in v), record)
    config = upgrade_targets((record.get("config") or {}).get("data", record.get("data")))
    return data.get("vocabulary"), data.get("class_names"), config
