"""Resume restores the run or refuses it: interrupted anywhere and resumed, a run ends like an uninterrupted one."""
import shutil
import signal

import lightning.pytorch as pl
import pytest
import torch
from helpers import make_imdb_archive
from hydra import compose, initialize_config_module

from rnnlab.train import train

pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = ("val/loss", "val/acc", "test/acc", "test/loss", "best/val/acc")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_imdb_archive(tmp_path_factory.mktemp("imdb") / "imdb.tar.gz", n_per_class=24)


def make_cfg(archive, tmp_path, *overrides, name="run"):
    """A run of a few seconds: 48 training reviews, half held out -> 3 training and 3 validation batches of 8."""
    tiny = [f"data.archive={archive}", f"data.root={tmp_path / 'cache'}", "data.batch_size=8", "data.max_tokens=200",
            "data.max_length=40", "data.val_fraction=0.5", "+experiment=bilstm", "model.embedding_dim=8",
            "model.hidden_size=4", "trainer.max_epochs=3", "trainer.enable_progress_bar=false",
            "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1", f"output_dir={tmp_path / name}"]
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        return compose("train", overrides=tiny + list(overrides))


def weights(path):
    return torch.load(path, weights_only=False)["state_dict"]


def assert_same_run(resumed, full, tmp_path, a="full", b="cut"):
    assert resumed["steps"] == full["steps"] and resumed["epochs"] == full["epochs"]
    for key in KEYS:
        assert resumed[key] == full[key], key
    assert resumed["best_ckpt"].split("/")[-1] == full["best_ckpt"].split("/")[-1]
    wa, wb = (weights(tmp_path / n / "checkpoints" / "last.ckpt") for n in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class CopyCheckpointsAtEpochStart(pl.Callback):
    """Copies the checkpoints folder when epoch `epoch` starts: what a SIGKILL during that epoch leaves behind."""

    def __init__(self, epoch: int, to: str):
        self.epoch, self.to = epoch, to

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            shutil.copytree(trainer.checkpoint_callback.dirpath, self.to)


class InterruptValidation(pl.Callback):
    """Ctrl+C inside the forward pass of validation batch `batch` of epoch `epoch` (where the time goes)."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch, self.armed = epoch, batch, False

    def setup(self, trainer, pl_module, stage):
        pl_module.register_forward_pre_hook(self._interrupt)

    def _interrupt(self, module, args):
        if self.armed:
            raise KeyboardInterrupt

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.armed = trainer.current_epoch == self.epoch and batch_idx == self.batch


# the highest val/loss is the best: epoch 0, the one whose validation the tests interrupt, is then the best checkpoint
EPOCH0_BEST = ["callbacks.model_checkpoint.monitor=val/loss", "callbacks.model_checkpoint.mode=max"]


@pytest.fixture(scope="module")
def full(archive, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    metrics = train(make_cfg(archive, tmp, *EPOCH0_BEST, name="full"))
    assert "epoch00" in metrics["best_ckpt"]
    return tmp, metrics


def test_resumed_from_an_end_of_epoch_checkpoint_a_run_ends_like_an_uninterrupted_one(archive, full, tmp_path):
    tmp, uninterrupted = full
    at_kill = tmp_path / "at-kill"
    train(make_cfg(archive, tmp_path, *EPOCH0_BEST, f"+callbacks.copy._target_={__name__}.CopyCheckpointsAtEpochStart",
                   "+callbacks.copy.epoch=1", f"+callbacks.copy.to={at_kill}", name="cut"))
    shutil.rmtree(tmp_path / "cut")  # the run folder as the SIGKILL left it
    shutil.copytree(at_kill, tmp_path / "cut" / "checkpoints")
    saved = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    assert torch.load(saved, weights_only=False)["global_step"] == 3  # end of epoch 0
    shutil.copytree(tmp / "full", tmp_path / "full")
    resumed = train(make_cfg(archive, tmp_path, *EPOCH0_BEST, f"ckpt_path={saved}", name="cut"))
    assert_same_run(resumed, uninterrupted, tmp_path)


@pytest.mark.parametrize("batch", [0, 2])
def test_ctrl_c_during_validation_reruns_that_validation_in_full_on_resume(archive, full, tmp_path, batch):
    tmp, uninterrupted = full
    try:
        with pytest.raises(SystemExit):
            train(make_cfg(archive, tmp_path, *EPOCH0_BEST, f"+callbacks.stop._target_={__name__}.InterruptValidation",
                           "+callbacks.stop.epoch=0", f"+callbacks.stop.batch={batch}", name="cut"))
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores further Ctrl+C
    shutil.copytree(tmp / "full", tmp_path / "full")
    resumed = train(make_cfg(archive, tmp_path, *EPOCH0_BEST, f"ckpt_path={tmp_path / 'cut' / 'checkpoints' / 'last.ckpt'}",
                             name="cut"))
    assert_same_run(resumed, uninterrupted, tmp_path)
