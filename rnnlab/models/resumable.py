"""Mid-epoch resume: a training loader that skips the batches a checkpoint had already trained on.

Lightning restores a mid-epoch checkpoint's step counters, then iterates the train loader from its start unless the
loader is *stateful* (``state_dict``/``load_state_dict``). :class:`ResumableLoader` is that state for any loader whose
batches are a function of (seed, epoch), such as ``BucketBatchSampler`` with ``set_epoch``: it records the optimizer
steps done and, after a restore, drops the first ``steps_done % steps_per_epoch`` batches of the resumed epoch.
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

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):  # sampler, batch_sampler, dataset, batch_size ...
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def state_dict(self) -> dict:
        return {"global_step": int(self.global_step())}

    def load_state_dict(self, state: dict) -> None:
        n = len(self.loader)
        n = min(n, self.limit) if isinstance(self.limit, int) else int(n * self.limit)  # as Lightning counts
        steps_per_epoch = math.ceil(n / self.accumulate)
        self._skip = (state.get("global_step", 0) % steps_per_epoch) * self.accumulate

    def __iter__(self):
        for sampler in (getattr(self.loader, "sampler", None), getattr(self.loader, "batch_sampler", None)):
            if callable(getattr(sampler, "set_epoch", None)):
                sampler.set_epoch(self.epoch())
        skip, self._skip = self._skip, 0
        return itertools.islice(iter(self.loader), skip, None)
