"""A run folder belongs to one process, and what it holds is never half-written.

- :func:`hold_run_folder`: the process that trains in a folder holds ``<folder>/.lock`` (``fcntl.flock``) until it
  ends; a second run in that folder is refused. The kernel releases the lock when its process dies, so a run killed
  by SIGKILL leaves no stale lock behind (the file stays, unlocked).
- :func:`write_metrics`: ``metrics.json`` is written atomically (temporary file, ``fsync``, ``os.replace``) and merged
  with the one already there, so a resumed run never loses a key it had (``val/*`` of a run killed in its final test).
- :func:`write_hydra_record`: Hydra's ``.hydra/`` record (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``), which
  ``conf/hydra/default.yaml`` (``output_subdir: null``) leaves to the run: written once the run is accepted, so a
  refused run leaves the record of the folder's run as it was.
- :func:`recorded_job`: in a multirun, a job that fails writes its error in ``<job folder>/error.txt``, and a user
  error ends that job only: the sweep goes on with the others.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from rnnlab.security import write_atomic

LOCK = ".lock"
ERROR_FILE = "error.txt"


def first_process() -> bool:
    """Whether this process is the first of its run: not a DDP worker that Lightning started (``LOCAL_RANK`` > 0),
    nor a process of another node or rank (``NODE_RANK``, ``RANK``)."""
    return all(int(os.environ.get(name, 0) or 0) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"))


@contextmanager
def hold_run_folder(folder: Path):
    """Hold ``folder`` (created if needed) for this process inside the block: ``fcntl.flock`` on ``folder/.lock``,
    which records the holder's process id. Raises ``BlockingIOError`` naming the holder when another process holds
    it. DDP workers of the run (:func:`first_process` false) share their first process's hold."""
    if not first_process():
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise BlockingIOError(
                f"{folder} is in use by another run (process {holder} holds {folder / LOCK}): a run folder belongs to "
                f"one process. Wait for that run to end, or give this run its own folder (leave hydra.run.dir / "
                f"output_dir at their timestamped defaults)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def write_atomically(path: Path, text: str | bytes | memoryview) -> None:
    """Write ``text`` (or bytes) to ``path`` with :func:`rnnlab.security.write_atomic`: a temporary file in the same
    folder, ``fsync``, ``os.replace``; a reader or a crash sees the old file or the new one, never a part."""
    data = text.encode() if isinstance(text, str) else text
    write_atomic(path, lambda f: f.write(data))


def read_metrics(folder: Path) -> dict:
    """The metrics in ``folder/metrics.json``, or ``{}`` when there are none (or the file is not a JSON object)."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def write_metrics(folder: Path, metrics: dict) -> dict:
    """Merge ``metrics`` into ``folder/metrics.json`` (its keys win; the file's other keys stay) and write it
    atomically; returns what the file now holds."""
    merged = {**read_metrics(folder), **metrics}
    write_atomically(folder / "metrics.json", json.dumps(merged, indent=2))
    return merged


def write_hydra_record(folder: Path, composed) -> None:
    """Hydra's record of the job in ``folder/.hydra/``, as Hydra writes it with ``hydra.output_subdir=.hydra``: the
    composed task config (unresolved), the Hydra config and the command line's overrides. Nothing outside a Hydra job
    (a config composed in-process)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    record = folder / ".hydra"
    write_atomically(record / "config.yaml", OmegaConf.to_yaml(composed))
    write_atomically(record / "hydra.yaml", OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})))
    write_atomically(record / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))


def command_line_overrides() -> list[str] | None:
    """The task overrides of the Hydra job that runs this process, or None when there is none (in-process compose)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def fit_metrics(trainer, module, out: Path) -> dict:
    """What ``metrics.json`` records of a fit: the last epoch's ``val/*``, ``train/*`` and clipped fraction, the best
    checkpoint and its ``val/acc``, the epoch times (:class:`~rnnlab.training.callbacks.EpochTimer`), the parameter
    count, epochs, steps and ``stopped_by`` (:func:`rnnlab.budget.stopped_by`: max_steps, max_time, ...)."""
    from rnnlab.budget import stopped_by
    from rnnlab.training.callbacks import EpochTimer

    timer = next((c for c in trainer.callbacks if isinstance(c, EpochTimer)), None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
               if k.startswith(("val/", "train/")) or k == "grad/clipped_fraction"}
    best = trainer.checkpoint_callback
    if best is not None and best.best_model_score is not None:
        metrics.update({"best/val/acc": float(best.best_model_score), "best_ckpt": best.best_model_path})
    return {**metrics, "epoch_times_s": list(timer.times) if timer else [], "num_parameters": module.num_parameters(),
            "epochs": trainer.current_epoch, "steps": trainer.global_step, "output_dir": str(out),
            "stopped_by": stopped_by(trainer)}


def _multirun_job_folder() -> Path | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return Path(HydraConfig.get().runtime.output_dir)


def recorded_job(task, cfg) -> dict:
    """``task(cfg)``, the metrics of a run. In a multirun job, an error is also written to ``error.txt`` in the job's
    folder; a user error (:data:`rnnlab.utils.USER_ERRORS`) then ends this job only (``error: ...`` on stderr, ``{}``
    returned: the sweeper sees ``nan``), so the sweep goes on; a bug still raises, as Hydra reports it."""
    from rnnlab.utils import _user_error

    try:
        return task(cfg)
    except Exception as error:
        folder = _multirun_job_folder()
        if folder is None:
            raise
        user = _user_error(error)
        text = f"error: {user}\n" if user is not None else "".join(traceback.format_exception(error))
        write_atomically(folder / ERROR_FILE, text)
        if user is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {user} (this job failed; recorded in {folder / ERROR_FILE}; the sweep goes on)",
              file=sys.stderr, flush=True)
        return {}


__all__ = ["hold_run_folder", "command_line_overrides", "fit_metrics", "write_atomically", "read_metrics", "write_metrics", "write_hydra_record",
           "recorded_job", "first_process", "LOCK", "ERROR_FILE"]
