"""A SLURM job that the cluster requeued (preemption, ``scontrol requeue``, submitit's requeue before a time limit)
goes on from its own ``last.ckpt``.

SLURM starts a requeued job again from its first line, with the same command and so the same run folder, and sets
``SLURM_RESTART_COUNT`` (1 after the first requeue). Before it went, the job saved ``last.ckpt`` at its current
step: SLURM's SIGTERM makes Lightning stop at the end of the current batch, and submitit's requeue signal (USR2,
``hydra.launcher.signal_delay_s`` before the time limit) exits the process; both reach the ``on_exception`` hook of
``callbacks.last_checkpoint`` (``save_on_exception``). Lightning's own auto-requeue (SIGUSR1) saves an
``hpc_ckpt_N.ckpt`` and requeues; the SIGTERM of the requeue then writes ``last.ckpt`` at that step too.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)
RESTART_COUNT = "SLURM_RESTART_COUNT"


def requeued_checkpoint(output_dir) -> str | None:
    """``<output_dir>/checkpoints/last.ckpt`` when this process is a SLURM job started again after a requeue
    (``SLURM_RESTART_COUNT`` >= 1) and that file exists; None otherwise (a job requeued before its first checkpoint
    starts from the beginning, as a new run in its folder)."""
    restarts = os.environ.get(RESTART_COUNT, "")
    if not restarts.isdigit() or int(restarts) < 1:
        return None
    last = Path(output_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        log.warning("SLURM job %s requeued (restart %s) before its first checkpoint: it starts from the beginning",
                    os.environ.get("SLURM_JOB_ID", "?"), restarts)
        return None
    log.warning("SLURM job %s requeued (restart %s): resuming from %s", os.environ.get("SLURM_JOB_ID", "?"),
                restarts, last)
    return str(last)
