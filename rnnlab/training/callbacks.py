"""Small callbacks of the training job: epoch times, the run's config in every checkpoint, a stop on divergence."""
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


class RunConfig(pl.Callback):
    """Writes the run's resolved config and command-line overrides into every checkpoint, as
    ``checkpoint["rnnlab"] = {"config": ..., "overrides": ...}``: a resume restores them or refuses a setting that
    differs, and ``rnnlab.evaluate`` rebuilds the data from them.

    Args:
        config: the resolved config of the run (a plain dict).
        overrides: the command-line overrides that composed it (``["+experiment=bilstm", ...]``), or None when unknown
            (a config composed in-process).
    """

    def __init__(self, config: dict, overrides: list[str] | None = None):
        self.config, self.overrides = config, None if overrides is None else list(overrides)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint["rnnlab"] = {"config": self.config, "overrides": self.overrides}


class DivergenceStop(pl.Callback):
    """Stops a run whose training loss stays above ``factor`` times its first value for ``patience`` optimizer steps
    in a row: divergence that never reaches NaN (``model.optimizer.lr=1000`` held the loss near 1000) ends with an
    error naming the learning rate and clipping, instead of a finished run of garbage.

    Args:
        factor: how many times the first step's loss counts as diverged (0: never stop). Default: 10
        patience: optimizer steps in a row above it before the run stops. Default: 20

    The first loss is kept in checkpoints, so a resumed run compares with the same value.
    """

    def __init__(self, factor: float = 10.0, patience: int = 20):
        if not (isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor >= 0):
            raise ValueError(f"callbacks.divergence.factor must be a number >= 0 (0: off): expected e.g. 10, "
                             f"got {factor!r}")
        if not (isinstance(patience, int) and not isinstance(patience, bool) and patience >= 1):
            raise ValueError(f"callbacks.divergence.patience must be an int >= 1: expected e.g. 20, got {patience!r}")
        self.factor, self.patience = factor, patience
        self.initial: float | None = None
        self.above = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if self.factor == 0 or loss is None:
            return
        value = float(loss.detach())
        if self.initial is None:
            self.initial = value
            return
        self.above = self.above + 1 if value > self.factor * self.initial else 0
        if self.above >= self.patience:
            raise FloatingPointError(
                f"training diverged: the loss was above {self.factor:g} x its first value ({self.initial:.4g}) for "
                f"{self.above} steps in a row, {value:.4g} at step {trainer.global_step}. Lower the learning rate "
                f"(model.optimizer.lr=...) or clip the gradients (trainer.gradient_clip_val=1.0); "
                f"callbacks.divergence.factor / patience set this stop (factor=0: off)")

    def state_dict(self):
        return {"initial": self.initial, "above": self.above}

    def load_state_dict(self, state_dict):
        self.initial, self.above = state_dict.get("initial"), state_dict.get("above", 0)
