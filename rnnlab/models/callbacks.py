"""Small callbacks of the training job: wall-clock time per epoch (for metrics.json and sweep summaries)."""
from __future__ import annotations

import time

import lightning.pytorch as pl


class EpochTimer(pl.Callback):
    """Wall-clock seconds of each training epoch (validation excluded), logged as ``time/epoch_s``.

    ``times`` lists the epochs of the run; a resumed run restores the earlier ones from the checkpoint (an epoch
    resumed mid-way counts from the restart).
    """

    def __init__(self):
        self.times: list[float] = []
        self._start, self._val = None, 0.0

    def on_train_start(self, trainer, pl_module):  # a run resumed mid-epoch gets no on_train_epoch_start
        self._start, self._val = time.perf_counter(), 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._start, self._val = time.perf_counter(), 0.0

    def on_validation_start(self, trainer, pl_module):
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if self._start is not None:  # Lightning validates inside the training epoch: do not count it
            self._val += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, pl_module):
        elapsed = time.perf_counter() - self._start - self._val
        self.times.append(elapsed)
        pl_module.log("time/epoch_s", elapsed, sync_dist=True)  # under DDP: the mean over ranks

    def state_dict(self):
        return {"times": list(self.times)}

    def load_state_dict(self, state_dict):
        self.times = list(state_dict.get("times", []))
