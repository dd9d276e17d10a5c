"""Budgets in steps: how a run ended, and whether a config ends by steps or epochs rather than by wall time.

A comparison of cells is fair only if every run gets the same budget on any machine, loaded or not: a number of
optimizer steps (``trainer.max_steps``) or epochs (``trainer.max_epochs``), never a wall-clock time. ``trainer.max_time``
may stay as a safety net far above the expected time; a run it ends is marked ``"stopped_by": "max_time"`` in its
``metrics.json`` (:func:`stopped_by`), and ``scripts/summarize.py`` and the study's report flag it.
"""
from __future__ import annotations

import logging
from datetime import timedelta

__all__ = ["STOP_REASONS", "stopped_by", "step_budget", "max_time_seconds"]

log = logging.getLogger(__name__)
# max_steps / max_epochs: the run had its whole budget; max_time: Lightning's Timer cut it (wall clock); diverged: a
# non-finite loss stopped it (train/diverged_step); callback: another callback asked it to stop (early stopping).
STOP_REASONS = ("max_steps", "max_epochs", "max_time", "diverged", "callback")


def stopped_by(trainer) -> str:
    """Why ``trainer.fit`` of a ``lightning.pytorch.Trainer`` returned, one of :data:`STOP_REASONS`; a warning is
    logged when it was the wall clock.

    A run that reached its step or epoch budget counts as complete even if its time ran out at the same step.
    """
    from lightning.pytorch.callbacks import Timer  # here: the summary reads budgets without loading Lightning

    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return "max_steps"
    if trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs:
        return "max_epochs"
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is not None and remaining <= 0:
        log.warning("trainer.max_time ended this run after %d steps, before its budget (trainer.max_steps=%s, "
                    "trainer.max_epochs=%s): its metrics are not comparable with complete runs",
                    trainer.global_step, trainer.max_steps, trainer.max_epochs)
        return "max_time"
    if "train/diverged_step" in trainer.callback_metrics:
        return "diverged"
    return "callback"


def max_time_seconds(max_time) -> float | None:
    """``trainer.max_time`` in seconds (None: no limit), from any form Lightning takes: ``"DD:HH:MM:SS"``, a dict of
    ``timedelta`` arguments, or a ``timedelta``.

    >>> max_time_seconds("00:02:00:00"), max_time_seconds({"minutes": 90}), max_time_seconds(None)
    (7200.0, 5400.0, None)
    """
    if max_time is None:
        return None
    if isinstance(max_time, str):
        days, hours, minutes, seconds = (int(x) for x in max_time.split(":"))
        max_time = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    elif not isinstance(max_time, timedelta):
        max_time = timedelta(**dict(max_time))
    return max_time.total_seconds()


def step_budget(trainer_cfg) -> str | None:
    """The budget a trainer config ends by, ``"max_steps=3000"`` or ``"max_epochs=2"``; None when only
    ``max_time`` (or nothing) would end it."""
    steps, epochs = trainer_cfg.get("max_steps"), trainer_cfg.get("max_epochs")
    if steps is not None and steps > 0:
        return f"max_steps={steps}"
    if epochs is not None and epochs > 0:
        return f"max_epochs={epochs}"
    return None
