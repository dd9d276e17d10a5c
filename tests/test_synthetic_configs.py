"""Every synthetic-task experiment and the cells x lengths sweep compose, and each experiment trains end to end."""
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

import rnnlab.conf
from helpers import tiny_synthetic

from rnnlab.models.tasks import TaskModule
from rnnlab.train import train

CONF = Path(rnnlab.conf.__file__).parent
SYNTHETIC = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")  # imdb_crossfit overrides the data with IMDB's
                   if "override /data:" in p.read_text() and "override /data: imdb" not in p.read_text())


def test_the_synthetic_experiments_are_the_ones_this_file_tests():
    assert SYNTHETIC == ["adding", "adding_explode", "copy"]


@pytest.mark.parametrize("experiment", SYNTHETIC)
def test_every_synthetic_experiment_trains_and_reports_its_baseline(experiment, tmp_path, one_thread):
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            f"+experiment={experiment}", "data.length=6", "data.train_size=40", "data.val_size=10",
            "data.test_size=10", "data.batch_size=10", "model.hidden_size=4", "trainer.max_steps=6",
            "trainer.enable_progress_bar=false", "diagnostics.every_n_steps=2", "diagnostics.probe=3",
            f"output_dir={tmp_path}"])
    metrics = train(cfg)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert metrics["test/baseline_loss"] > 0 and metrics["val/baseline_loss"] > 0
    assert metrics["test/loss_vs_baseline"] == pytest.approx(metrics["test/loss"] / metrics["test/baseline_loss"],
                                                             rel=1e-4)
    assert (tmp_path / "tensorboard" / "grad_t_probe.pt").exists()
    module = TaskModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert module.hparams.cell == cfg.model.cell and module.vocabulary is not None


@pytest.mark.parametrize("options", [["model.zoneout=0.1"], ["model.cell=indrnn", "model.nonlinearity=relu"],
                                     ["model.cell=gru", "model.layer_norm=true", "model.weight_dropout=0.2",
                                      "model.variational_dropout=0.2"]])
def test_the_cell_regularizers_and_indrnn_train_on_the_adding_problem_with_their_gradient_figures(options, tmp_path,
                                                                                               one_thread):
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=tiny_synthetic(tmp_path) + ["diagnostics.every_n_steps=2", *options])
    metrics = train(cfg)
    assert metrics["steps"] == 4 and metrics["test/loss"] > 0
    grad_t = torch.load(tmp_path / "tensorboard" / "grad_t.pt")
    assert grad_t  # the per-timestep gradient norms were recorded
    module = TaskModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    for option in options:
        key, value = option.removeprefix("model.").split("=")
        assert str(module.hparams[key]).lower() == value


def test_the_named_sweep_is_20_jobs_of_every_cell_at_every_length():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for experiment in ("adding", "copy"):
        with initialize_config_module("rnnlab.conf", version_base="1.3"):
            sweep = compose("train", overrides=[f"+experiment={experiment}", "+sweep=cells_lengths"],
                            return_hydra_config=True)
            params = sweep.hydra.sweeper.params
            parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
            jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
            settings = set()
            for job in jobs:
                cfg = compose("train", overrides=[f"+experiment={experiment}", *job])
                settings.add((cfg.model.cell, cfg.data.length))
        assert str(sweep.hydra.mode) == "RunMode.MULTIRUN" and len(jobs) == 20
        assert settings == {(c, t) for c in ("rnn", "lstm", "lstm_noforget", "cifg", "gru") for t in (50, 100, 200, 400)}


def test_the_explode_experiment_differs_from_its_rescue_only_by_the_clipping_threshold():
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        plain = compose("train", overrides=["+experiment=adding_explode"])
        clipped = compose("train", overrides=["+experiment=adding_explode", "trainer.gradient_clip_val=1"])
    assert plain.trainer.gradient_clip_val == 0 and clipped.trainer.gradient_clip_val == 1
    plain.trainer.gradient_clip_val = 1
    assert plain == clipped


def test_the_task_model_config_builds_a_module_for_either_task():
    from hydra.utils import instantiate

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=["model=task", "model.hidden_size=3", "model.recurrent_init=orthogonal",
                                          "model.recurrent_scale=0.5"])
    module = instantiate(cfg.model, vocab_size=2, num_classes=1, _recursive_=False)
    assert module(torch.rand(4, 5, 2)).shape == (4,)
    w = module.model.encoder.weight_hh_l0.detach()
    torch.testing.assert_close(torch.linalg.svdvals(w[:3]), torch.full((3,), 0.5))  # each gate block: radius 0.5


def test_an_unknown_recurrent_init_names_the_setting_and_the_choices():
    with pytest.raises(ValueError, match=r"model\.recurrent_init must be null or one of \['orthogonal'"):
        TaskModule(2, 1, recurrent_init="xavier")


@pytest.mark.parametrize("data", ["adding", "copy"])
def test_a_synthetic_task_without_the_task_model_says_which_model_it_needs(data, tmp_path):
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"data={data}", "data.length=6", "data.train_size=10", "data.val_size=10",
                                          "data.test_size=10", f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ValueError, match=rf"data={data} needs the model made for its batches and targets: expected "
                                         rf"model=task \(\+experiment={data} sets it, with its settings\), got "
                                         rf"model._target_=rnnlab.models.module.SequenceClassifierModule"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_task_dropout_drops_the_heads_input_in_training_and_nothing_in_eval():
    from rnnlab.models.encoder import run_encoder
    from rnnlab.models.tasks import TaskNet

    net = TaskNet(2, 1, cell="gru", hidden_size=8, embedding_dim=0, dropout=0.5)
    x = torch.rand(16, 5, 2)
    h_last = run_encoder(net.encoder, x, None)[:, -1].detach()  # (B, H); the encoder draws no random numbers
    torch.manual_seed(0)
    dropped = net(x)
    torch.manual_seed(0)
    expected = net.head(torch.nn.functional.dropout(h_last, 0.5, training=True)).squeeze(-1)
    torch.testing.assert_close(dropped, expected)
    net.eval()
    torch.testing.assert_close(net(x), net.head(h_last).squeeze(-1))


@pytest.mark.parametrize("stop", [6, 8], ids=["mid-epoch", "epoch-end"])
def test_a_synthetic_task_resumed_from_a_checkpoint_ends_as_the_uninterrupted_run(stop, tmp_path, one_thread):
    # 4 batches an epoch, 10 steps; a checkpoint at step `stop` (mid third epoch, or its end), resumed to step 10: the
    # shuffle of every epoch and the batches left in the interrupted one are those of the uninterrupted run
    from helpers import tiny_synthetic

    def run(out, *overrides):
        with initialize_config_module("rnnlab.conf", version_base="1.3"):
            return train(compose("train", overrides=[*tiny_synthetic(out), "trainer.max_steps=10", *overrides]))

    full = run(tmp_path / "full")
    run(tmp_path / "cut", f"trainer.max_steps={stop}", "test=false",
        "+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.steps.every_n_train_steps={stop}", "+callbacks.steps.filename='step{step}'",
        "+callbacks.steps.auto_insert_metric_name=false", "+callbacks.steps.dirpath=${output_dir}/checkpoints")
    resumed = run(tmp_path / "cut", f"ckpt_path={tmp_path / 'cut' / 'checkpoints' / f'step{stop}.ckpt'}")
    assert resumed["steps"] == full["steps"] == 10
    for key in ("val/loss", "test/loss"):
        assert resumed[key] == full[key], key
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt")["state_dict"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
