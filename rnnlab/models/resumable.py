"""Exact resume: a training loader that skips the batches a checkpoint had already trained on, and a validation that
an interruption never cuts short.

Lightning restores a mid-epoch checkpoint's step counters, then iterates the train loader from its start unless the
loader is *stateful* (``state_dict``/``load_state_dict``). :class:`ResumableLoader` is that state for any loader whose
batches are a function of (seed, epoch), such as ``BucketBatchSampler`` with ``set_epoch``: it records the optimizer
steps done and, after a restore, drops the first ``steps_done % steps_per_epoch`` batches of the resumed epoch.

A checkpoint written during validation (Ctrl+C, an error) records how many validation batches were done; Lightning
would resume the validation after them and score the epoch on the rest. :func:`restart_interrupted_validation`
rewrites that record so the epoch's validation runs again in full.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable


class ResumableLoader:
    """Wraps a DataLoader; ``global_step`` and ``epoch`` read the trainer's (``lambda: trainer.global_step``).

    Each ``iter()`` first calls ``set_epoch(epoch())`` on the loader's sampler and batch sampler: Lightning reaches
    ``loader.sampler`` and ``loader.batch_sampler.sampler`` only, so a batch sampler would otherwise count epochs
    itself, from 0 again in a resumed process. Assumes a fixed number of batches per epoch (``len(loader)`` cut by
    ``limit``, Lightning's ``limit_train_batches``: an int count or a float fraction) and ``accumulate`` batches per
    optimizer step.
    """

    def __init__(self, loader, global_step: Callable[[], int], epoch: Callable[[], int], accumulate: int = 1,
                 limit: int | float = 1.0):
        self.loader, self.global_step, self.epoch, self.accumulate = loader, global_step, epoch, accumulate
        self.limit = limit
        self._skip = 0

    @classmethod
    def of_trainer(cls, loader, trainer) -> "ResumableLoader":
        """``loader`` resumable under ``trainer``'s counters.

        The epoch is the fit loop's count of epochs *processed*, the value Lightning itself hands to ``set_epoch``:
        ``trainer.current_epoch`` counts epochs *completed*, which a checkpoint written at an epoch's end (what a
        SIGKILL during the next epoch leaves) restores one short when the loader is first iterated, so the resumed
        epoch would replay the previous epoch's shuffle.
        """
        return cls(loader, lambda: trainer.global_step, lambda: trainer.fit_loop.epoch_progress.current.processed,
                   trainer.accumulate_grad_batches, trainer.limit_train_batches)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):  # sampler, batch_sampler, dataset, batch_size ...
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def state_dict(self) -> dict:
        inner = getattr(self.loader, "state_dict", None)  # a loader that keeps its own order's state (SeededShuffle)
        return {"global_step": int(self.global_step()), **({"loader": inner()} if callable(inner) else {})}

    def load_state_dict(self, state: dict) -> None:
        n = len(self.loader)
        n = min(n, self.limit) if isinstance(self.limit, int) else int(n * self.limit)  # as Lightning counts
        steps_per_epoch = math.ceil(n / self.accumulate)
        self._skip = (state.get("global_step", 0) % steps_per_epoch) * self.accumulate
        inner = getattr(self.loader, "load_state_dict", None)
        if callable(inner) and "loader" in state:
            inner(state["loader"], mid_epoch=self._skip > 0)

    def __iter__(self):
        for sampler in (getattr(self.loader, "sampler", None), getattr(self.loader, "batch_sampler", None)):
            if callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(self.epoch())
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.loader), skip, None)


def restart_interrupted_validation(checkpoint: dict) -> bool:
    """If ``checkpoint`` was written in the middle of a validation pass, mark that pass as interrupted before its first
    batch, so that on resume Lightning runs the whole validation again (the metrics of the batches done before the
    interruption are not in the checkpoint). Returns whether it did; other checkpoints are left as they are.
    """
    fit = checkpoint.get("loops", {}).get("fit_loop", {})
    progress = fit.get("epoch_loop.val_loop.batch_progress")
    if not progress:
        return False
    current = progress["current"]
    finished = progress.get("is_last_batch") and current["completed"] == current["ready"]
    if current["ready"] == 0 or finished:
        return False
    # ready == started == processed + 1 is Lightning's "restarted mid-evaluation", now at batch 0
    for counts in (progress["current"], progress["total"]):
        counts.update(ready=1, started=1, processed=0, completed=0)
    progress["is_last_batch"] = False
    return True
