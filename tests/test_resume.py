"""Resume restores the run or refuses it: interrupted anywhere and resumed, a run ends like an uninterrupted one."""
import fcntl
import json
import os
import re
import shutil
import signal

import lightning.pytorch as pl
import pytest
import torch
import yaml
from helpers import command_line, make_imdb_archive
from hydra import compose, initialize_config_module

from rnnlab.train import train

pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = ("val/loss", "val/acc", "test/acc", "test/loss", "best/val/acc", "train/acc")


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
        if trainer.current_epoch == self.epoch and not os.path.exists(self.to):  # once: not again in a resumed run
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


def files(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def killed(archive, tmp_path_factory):
    """A run folder as a SIGKILL during epoch 1 of 3 left it: the checkpoints of the end of epoch 0 (the best one, by
    EPOCH0_BEST, and last.ckpt) and nothing else. Tests copy it or resume from it; none changes it."""
    tmp = tmp_path_factory.mktemp("killed")
    train(make_cfg(archive, tmp, *EPOCH0_BEST, f"+callbacks.copy._target_={__name__}.CopyCheckpointsAtEpochStart",
                   "+callbacks.copy.epoch=1", f"+callbacks.copy.to={tmp / 'at-kill'}", name="run"))
    shutil.rmtree(tmp / "run")
    shutil.copytree(tmp / "at-kill", tmp / "run" / "checkpoints")
    return tmp / "run"


def test_a_bare_resume_keeps_the_runs_max_epochs_and_callbacks_the_command_line_does_not_give(archive, full, killed,
                                                                                              tmp_path):
    # started with trainer.max_epochs=3 and val/loss as the best checkpoint's monitor; resumed with the README's bare
    # command, whose defaults say 2 epochs and val/acc
    shutil.copytree(killed, tmp_path / "cut")
    shutil.copytree(full[0] / "full", tmp_path / "full")
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    own = f"+callbacks.copy._target_={__name__}.CopyCheckpointsAtEpochStart"  # a class of its own: trusted when named
    with command_line(f"ckpt_path={last}", f"output_dir={tmp_path / 'cut'}", own) as cfg:  # (docs/security.md)
        assert cfg.trainer.max_epochs == 2 and cfg.callbacks.model_checkpoint.monitor == "val/acc"
        resumed = train(cfg)
    assert_same_run(resumed, full[1], tmp_path)
    config = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    assert config["trainer"]["max_epochs"] == 3 and config["callbacks"]["model_checkpoint"]["monitor"] == "val/loss"
    with command_line(f"ckpt_path={last}", f"output_dir={tmp_path / 'cut'}", own, "trainer.max_epochs=4",
                      "callbacks.model_checkpoint.monitor=val/acc") as cfg:
        given = train(cfg)  # what the command line gives, it changes
    config = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    assert given["epochs"] == 4 and config["callbacks"]["model_checkpoint"]["monitor"] == "val/acc"


def test_ckpt_path_last_is_the_run_folders_last_ckpt_and_goes_through_every_check(archive, killed, tmp_path):
    shutil.copytree(killed, tmp_path / "run")
    before = files(tmp_path / "run")
    for override, key in [("model.optimizer.lr=0.5", "model.optimizer.lr"), ("model.dropout=0.25", "model.dropout"),
                          ("data.max_length=30", "data.max_length")]:
        last = re.escape(str(tmp_path / "run" / "checkpoints" / "last.ckpt"))
        with pytest.raises(ValueError, match=rf"must keep the settings of its checkpoint {last}: {re.escape(key)}: "
                                             rf"expected .* \(the checkpoint's\), got "):
            train(make_cfg(archive, tmp_path, *EPOCH0_BEST, "ckpt_path=last", override))
    assert files(tmp_path / "run") == before
    with pytest.raises(FileNotFoundError, match=rf"ckpt_path=last resumes the last.ckpt of the run folder: expected "
                                                rf"{re.escape(str(tmp_path / 'new' / 'checkpoints' / 'last.ckpt'))}, "
                                                rf"got no such file"):
        train(make_cfg(archive, tmp_path, "ckpt_path=last", name="new"))
    with pytest.raises(ValueError, match=r"ckpt_path must be a checkpoint file or `last` .*got 'best'"):
        train(make_cfg(archive, tmp_path, "ckpt_path=best"))
    assert not (tmp_path / "new").exists() and files(tmp_path / "run") == before


def test_a_copied_run_folder_keeps_its_best_checkpoint_and_ends_like_the_original(archive, full, killed, tmp_path):
    shutil.copytree(killed, tmp_path / "copy")  # another path: ModelCheckpoint keyed its best score by the old one
    shutil.copytree(full[0] / "full", tmp_path / "full")
    last = tmp_path / "copy" / "checkpoints" / "last.ckpt"
    resumed = train(make_cfg(archive, tmp_path, *EPOCH0_BEST, f"ckpt_path={last}", name="copy"))
    assert_same_run(resumed, full[1], tmp_path, b="copy")  # the final test scored the best (epoch 0) weights
    assert resumed["best_ckpt"].startswith(str(tmp_path / "copy" / "checkpoints" / "epoch00"))


def test_a_resume_into_a_new_folder_moves_the_settings_of_the_run_folder_and_leaves_the_old_one(archive, full, killed,
                                                                                              tmp_path):
    before = files(killed)
    shutil.copytree(full[0] / "full", tmp_path / "full")
    resumed = train(make_cfg(archive, tmp_path, *EPOCH0_BEST, f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}",
                             name="new"))
    assert_same_run(resumed, full[1], tmp_path, b="new")
    config = yaml.safe_load((tmp_path / "new" / "config.yaml").read_text())
    assert config["trainer"]["default_root_dir"] == str(tmp_path / "new")
    assert config["callbacks"]["last_checkpoint"]["dirpath"] == str(tmp_path / "new" / "checkpoints")
    assert config["logger"]["tensorboard"]["save_dir"].startswith(str(tmp_path / "new"))
    assert files(killed) == before  # its best checkpoint, which the final test read, stays where it was


def test_resuming_a_finished_run_keeps_every_metric_it_had(archive, gru_run, tmp_path):
    shutil.copytree(gru_run, tmp_path / "run")
    had = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"val/acc", "val/loss", "train/acc", "train/loss"} <= had.keys()
    train(make_cfg(archive, tmp_path, "model.cell=gru", "trainer.max_epochs=1", "test=false", "ckpt_path=last"))
    now = json.loads((tmp_path / "run" / "metrics.json").read_text())  # nothing was left to train
    moved = ("output_dir", "best_ckpt")  # the copy's own
    assert {k: now[k] for k in had if k not in moved} == {k: v for k, v in had.items() if k not in moved}
    assert now["best_ckpt"] == had["best_ckpt"].replace(str(gru_run), str(tmp_path / "run"))


class InterruptTest(pl.Callback):
    """Ctrl+C (or a SIGKILL: the files are the same) as the final test starts."""

    def on_test_start(self, trainer, pl_module):
        raise KeyboardInterrupt


def test_a_run_killed_in_its_final_test_keeps_its_fit_metrics_and_its_resume_adds_the_test(archive, tmp_path):
    try:
        with pytest.raises(SystemExit):
            train(make_cfg(archive, tmp_path, "model.cell=gru", "trainer.max_epochs=1",
                           f"+callbacks.stop._target_={__name__}.InterruptTest"))
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores further Ctrl+C
    fitted = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"val/acc", "val/loss", "train/acc", "best/val/acc", "epoch_times_s"} <= fitted.keys()
    assert not any(k.startswith("test/") for k in fitted)
    resumed = train(make_cfg(archive, tmp_path, "model.cell=gru", "trainer.max_epochs=1", "ckpt_path=last"))
    now = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert now == json.loads(json.dumps(resumed)) and "test/acc" in now
    assert {k: now[k] for k in fitted} == fitted


def test_metrics_json_is_replaced_whole_or_not_at_all_and_merges_the_keys_it_had(tmp_path, monkeypatch):
    from rnnlab.training import run_folder

    run_folder.write_metrics(tmp_path, {"val/acc": 0.5, "train/acc": 0.25})
    assert run_folder.write_metrics(tmp_path, {"test/acc": 0.75, "val/acc": 0.625}) == {
        "val/acc": 0.625, "train/acc": 0.25, "test/acc": 0.75}
    before = (tmp_path / "metrics.json").read_bytes()

    def killed(*args):
        raise KeyboardInterrupt  # between the write of the temporary file and the rename

    monkeypatch.setattr(run_folder.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        run_folder.write_metrics(tmp_path, {"test/acc": 1.0})
    assert (tmp_path / "metrics.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


def test_a_run_folder_held_by_a_live_process_is_refused_and_a_dead_ones_lock_file_is_not(archive, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)  # another run's: flock is per open file
    os.write(holder, b"4242\n")
    fcntl.flock(holder, fcntl.LOCK_EX)
    quick = ["model.cell=gru", "trainer.max_epochs=1", "test=false"]
    lock = re.escape(str(run / ".lock"))
    with pytest.raises(BlockingIOError, match=rf"{re.escape(str(run))} is in use by another run \(process 4242 holds "
                                              rf"{lock}\): a run folder belongs to one process"):
        train(make_cfg(archive, tmp_path, *quick))
    assert files(run) == {run / ".lock": b"4242\n"}
    os.close(holder)  # the holder dies: the kernel drops its lock, the file stays behind
    train(make_cfg(archive, tmp_path, *quick))
    assert (run / "metrics.json").exists() and (run / ".lock").read_text() == f"{os.getpid()}\n"
    fd = os.open(run / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the run ended
    os.close(fd)


@pytest.fixture(scope="module")
def gru_run(archive, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gru")
    train(make_cfg(archive, tmp, "model.cell=gru", "trainer.max_epochs=1", "test=false", name="run"))
    return tmp / "run"


def test_a_checkpoint_carries_the_run_config_and_the_datamodules_vocabulary(gru_run):
    ckpt = torch.load(gru_run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["rnnlab"]["config"]["model"]["cell"] == "gru" and ckpt["rnnlab"]["config"]["data"]["max_length"] == 40
    assert ckpt["IMDBDataModule"]["class_names"] == ["neg", "pos"] and "vocabulary" in ckpt["IMDBDataModule"]


def test_resuming_with_another_cell_is_refused_naming_both_before_anything_is_written(archive, gru_run):
    before = files(gru_run)
    cfg = make_cfg(archive, gru_run.parent, "model.cell=cifg", "trainer.max_epochs=2",
                   f"ckpt_path={gru_run / 'checkpoints' / 'last.ckpt'}", name="run")
    with pytest.raises(ValueError, match=r"must keep the settings of its checkpoint .*last\.ckpt: "
                                         r"model\.cell: expected 'gru' \(the checkpoint's\), got 'cifg'"):
        train(cfg)
    assert files(gru_run) == before


@pytest.mark.parametrize("override, key", [("data.max_length=30", "data.max_length"), ("seed=3", "seed"),
                                           ("model.optimizer.lr=0.5", "model.optimizer.lr")])
def test_resuming_with_other_data_seed_or_optimizer_is_refused_naming_the_key(archive, gru_run, tmp_path, override, key):
    cfg = make_cfg(archive, tmp_path, "model.cell=gru", override, f"ckpt_path={gru_run / 'checkpoints' / 'last.ckpt'}")
    with pytest.raises(ValueError, match=rf"{re.escape(key)}: expected .* \(the checkpoint's\), got "):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_without_a_run_config_is_still_refused_for_another_model_size(archive, gru_run, tmp_path):
    old = torch.load(gru_run / "checkpoints" / "last.ckpt", weights_only=False)
    del old["rnnlab"]  # as written before checkpoints carried the run config
    torch.save(old, tmp_path / "old.ckpt")
    cfg = make_cfg(archive, tmp_path, "model.cell=gru", "model.hidden_size=5", f"ckpt_path={tmp_path / 'old.ckpt'}")
    with pytest.raises(ValueError, match=r"model\.hidden_size: expected 4 \(the checkpoint's\), got 5"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_negative_gradient_clip_val_is_an_error_naming_the_setting(archive, tmp_path):
    with pytest.raises(ValueError, match=r"trainer\.gradient_clip_val must be a number >= 0 .*: expected e\.g\. 1\.0, "
                                         r"got -1"):
        train(make_cfg(archive, tmp_path, "trainer.gradient_clip_val=-1"))
    assert not (tmp_path / "run").exists()


def test_a_loss_that_stays_far_above_its_start_stops_the_run_naming_the_learning_rate_and_clipping(archive, tmp_path):
    cfg = make_cfg(archive, tmp_path, "model.optimizer.lr=1000", "callbacks.divergence.patience=2")
    with pytest.raises(FloatingPointError, match=r"training diverged: the loss was above 10 x its first value .* for 2 "
                                                 r"steps in a row.*model\.optimizer\.lr=.*trainer\.gradient_clip_val"):
        train(cfg)


def test_the_embedding_dim_must_match_the_vectors_file(archive, tmp_path):
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w} " + " ".join(["0.1"] * 6) + "\n" for w in ("great", "awful", "the", "film")))
    with pytest.raises(ValueError, match=r"model\.embedding_dim must equal the dimension of the vectors of "
                                         r"data\.embeddings .*vectors\.txt\): expected 6, got 8; set model\.embedding_dim=6"):
        train(make_cfg(archive, tmp_path, f"+data.embeddings={vectors}"))
    assert not (tmp_path / "run").exists()
    metrics = train(make_cfg(archive, tmp_path, f"+data.embeddings={vectors}", "model.embedding_dim=6",
                             "trainer.max_epochs=1", "test=false"))
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["embedding_dim"] == 6 and metrics["num_parameters"] > 0  # the config says what was trained


class PoisonAfterStep(pl.Callback):
    """Fills the weights with NaN after optimizer step `step`: the next training step's loss is NaN."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(float("nan"))


def test_a_nan_stop_keeps_the_last_good_last_ckpt_and_saves_the_bad_state_beside_it(archive, tmp_path):
    with pytest.raises(FloatingPointError, match="training loss is nan at step 4"):
        train(make_cfg(archive, tmp_path, f"+callbacks.poison._target_={__name__}.PoisonAfterStep",
                       "+callbacks.poison.step=4"))
    folder = tmp_path / "run" / "checkpoints"
    last = torch.load(folder / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3 and all(torch.isfinite(v).all() for v in last["state_dict"].values())
    bad = torch.load(folder / "last-diverged.ckpt", weights_only=False)
    assert bad["global_step"] == 4 and not all(torch.isfinite(v).all() for v in bad["state_dict"].values())


def test_a_full_disk_during_a_checkpoint_write_leaves_the_previous_file_whole_and_says_what_was_needed(
        tmp_path, monkeypatch):
    import errno
    import os

    from rnnlab.models import checkpointing
    from rnnlab.models.checkpointing import AtomicCheckpointIO

    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}}, path)
    before = path.read_bytes()

    class HalfThenFull:  # the disk fills up halfway through the write
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    real_fdopen = os.fdopen
    monkeypatch.setattr(checkpointing.os, "fdopen", lambda fd, mode: HalfThenFull(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match=rf"no space left on device to write checkpoint {re.escape(str(path))}: it needs "
                                      rf"[0-9.]+ MB, {re.escape(str(path.parent))} has [0-9.]+ MB free") as error:
        io.save_checkpoint({"state_dict": {"w": torch.ones(100_000)}}, path)
    assert error.value.errno == errno.ENOSPC
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temp file left
    assert torch.equal(torch.load(path, weights_only=False)["state_dict"]["w"], torch.zeros(1000))


def test_the_trainer_writes_its_checkpoints_through_the_atomic_writer(gru_run, monkeypatch):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    from rnnlab.models.checkpointing import AtomicCheckpointIO

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"output_dir={gru_run}"])
    trainer = instantiate(cfg.trainer, logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


def cli(tmp_path, module, *args, env=None):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    env.pop("HYDRA_FULL_ERROR", None) if "HYDRA_FULL_ERROR" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def test_from_the_command_line_a_resume_restores_the_run_config_and_a_refused_run_changes_nothing(archive, tmp_path):
    import importlib.util
    from pathlib import Path

    run = tmp_path / "run"
    tiny = [f"data.archive={archive}", f"data.root={tmp_path / 'cache'}", "data.batch_size=8", "data.max_tokens=200",
            "data.max_length=40", "data.val_fraction=0.5", "model.embedding_dim=8", "model.hidden_size=4",
            "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"]
    first = cli(tmp_path, "rnnlab.train", "+experiment=gru", *tiny, "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    own = (run / "overrides.yaml").read_text()
    assert "+experiment=gru" in own and "trainer.max_epochs=1" in own

    # a new run in the same folder: one line, exit 2; every file stays as it was, Hydra's record .hydra/ included
    before = files(run)
    assert "+experiment=gru" in (run / ".hydra" / "overrides.yaml").read_text()
    again = cli(tmp_path, "rnnlab.train", "+experiment=lstm", *tiny)
    assert again.returncode == 2 and again.stderr.startswith(f"error: {run} already holds a run (checkpoints/)")
    assert "Traceback" not in again.stderr and files(run) == before
    spec = importlib.util.spec_from_file_location("summarize", Path(__file__).parents[1] / "scripts" / "summarize.py")
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    assert [r["experiment"] for r in summarize.collect(run)] == ["gru"]  # from the run's own overrides.yaml

    # another cell on resume: refused, naming the key and both values
    cifg = cli(tmp_path, "rnnlab.train", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run}",
               "model=cifg")
    assert cifg.returncode == 2 and "model.cell: expected 'gru' (the checkpoint's), got 'cifg'" in cifg.stderr
    assert files(run) == before  # .hydra/config.yaml and .hydra/overrides.yaml too

    # the README's resume command, without the original overrides: the checkpoint's config is restored
    resumed = cli(tmp_path, "rnnlab.train", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={run}",
                  "trainer.max_epochs=2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["cell"] == "gru" and config["data"]["max_length"] == 40 and config["trainer"]["max_epochs"] == 2
    assert (run / "overrides.yaml").read_text() == own  # still the run's own overrides
    metrics = yaml.safe_load((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["steps"] == 6


def test_user_errors_print_one_line_and_exit_2_unless_hydra_full_error(tmp_path, gru_run):
    missing = cli(tmp_path, "rnnlab.train", f"data.archive={tmp_path / 'nope.tar.gz'}", f"data.root={tmp_path / 'c'}",
                  f"hydra.run.dir={tmp_path / 'run'}")
    last = missing.stderr.strip().splitlines()[-1]  # after Lightning's "Seed set to 42"
    assert missing.returncode == 2 and last.startswith("error: IMDB archive not found: ") and "nope.tar.gz" in last
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) <= 2
    full = cli(tmp_path, "rnnlab.train", f"data.archive={tmp_path / 'nope.tar.gz'}", f"data.root={tmp_path / 'c'}",
               f"hydra.run.dir={tmp_path / 'run'}", env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback" in full.stderr
    wrong = cli(tmp_path, "rnnlab.evaluate", f"ckpt={tmp_path / 'nope.ckpt'}")
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: checkpoint ") and "does not exist" in wrong.stderr


@pytest.mark.parametrize("overrides, message", [
    (["model.sparse_embeddings=true", "model/optimizer=lazy_adam", "trainer.gradient_clip_val=1"],
     r"model\.sparse_embeddings=true gives the embeddings sparse gradients, which trainer\.gradient_clip_val=1 cannot "
     r"clip .*: set trainer\.gradient_clip_val=0 or model\.sparse_embeddings=false"),
    (["model.sparse_embeddings=true", "model/optimizer=adam"],
     r"model\.sparse_embeddings=true needs an optimizer that takes sparse gradients: model/optimizer=lazy_adam .*got "
     r"torch\.optim\.Adam"),
])
def test_sparse_embeddings_with_clipping_or_a_dense_optimizer_are_refused_before_anything_is_written(
        archive, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train(make_cfg(archive, tmp_path, *overrides))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("restarts, has_last, resumes", [("1", True, True), ("2", True, True), ("", True, False),
                                                         ("0", True, False), ("1", False, False)])
def test_a_requeued_slurm_job_goes_on_from_its_own_last_checkpoint_and_only_then(tmp_path, monkeypatch, restarts,
                                                                                 has_last, resumes):
    # SLURM sets SLURM_RESTART_COUNT in a job it started again after a requeue (tests/test_cluster.py: on a cluster)
    from rnnlab.training.slurm import requeued_checkpoint

    monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
    last = tmp_path / "checkpoints" / "last.ckpt"
    if has_last:
        last.parent.mkdir()
        last.write_bytes(b"")
    assert requeued_checkpoint(tmp_path) == (str(last) if resumes else None)
