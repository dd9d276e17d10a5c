"""The training job end to end: the real Hydra config, shrunk to tiny CPU runs on a tiny IMDB archive."""
import json
import math
import re
import signal
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from helpers import compose_train, tiny_text
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException

import rnnlab.conf
from rnnlab.evaluate import evaluate
from rnnlab.models.module import SequenceClassifierModule, load_module
from rnnlab.predict import iter_predict, predict
from rnnlab.train import train

EXPERIMENTS = sorted(p.stem for p in (Path(rnnlab.conf.__file__).parent / "experiment").glob("*.yaml")
                     if "override /data:" not in p.read_text())  # IMDB ones; the synthetic: test_synthetic_configs.py;
# imdb_crossfit, which needs bags: test_crossfit.py


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(archive, out, cache) -> list[str]:
    """Overrides that turn any config into a run of a few seconds on CPU."""
    return [*tiny_text(archive, out, cache), "model.embedding_dim=8", "trainer.max_epochs=1"]


def make_cfg(archive, tmp_path, *overrides, name="run"):
    return compose_train(*tiny(archive, tmp_path / name, tmp_path / "cache"), *overrides)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_trains_and_writes_its_outputs(archive, tmp_path, experiment, caplog):
    cfg = make_cfg(archive, tmp_path, f"+experiment={experiment}", "trainer.limit_train_batches=2",
                   "trainer.limit_val_batches=2", "trainer.limit_test_batches=2")
    with caplog.at_level("INFO", logger="rnnlab.train"):
        metrics = train(cfg)
    cell = str(cfg.model.cell.value)  # the schema's Enum member; the log says the plain name
    name = cell if cfg.model.recurrent else "no recurrent layer"
    assert f"{name}: {metrics['num_parameters']} parameters" in caplog.text and "Cell." not in caplog.text
    out = tmp_path / "run"
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert 0.0 <= metrics["val/acc"] <= 1.0 and 0.0 <= metrics["test/acc"] <= 1.0
    assert metrics["grad/clipped_fraction"] == 0.0  # no clipping by default
    assert len(metrics["epoch_times_s"]) == 1 and metrics["epoch_times_s"][0] > 0
    assert (out / "config.yaml").exists() and list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert Path(metrics["best_ckpt"]).exists()
    last = out / "checkpoints" / "last.ckpt"
    assert last.exists() == bool(cfg.callbacks.get("last_checkpoint"))  # imdb_bags keeps its best checkpoint only
    if last.exists():
        assert torch.load(last, weights_only=False)["global_step"] == metrics["steps"]
    module = SequenceClassifierModule.load_from_checkpoint(metrics["best_ckpt"], weights_only=False)
    assert module.hparams.cell == cfg.model.cell and module.num_parameters() == metrics["num_parameters"]
    assert module.vocabulary is not None and module.class_names == ["neg", "pos"]


def test_seed_makes_runs_identical_and_another_seed_does_not(archive, tmp_path):
    quick = ["+experiment=lstm", "model.hidden_size=4", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
             "trainer.limit_test_batches=2"]
    runs = [train(make_cfg(archive, tmp_path, *quick, f"seed={s}", name=f"r{i}"))
            for i, s in enumerate([1, 1, 2])]
    keys = ("train/loss", "val/loss", "val/acc", "test/acc")
    assert [runs[0][k] for k in keys] == [runs[1][k] for k in keys]
    assert runs[0]["val/loss"] != runs[2]["val/loss"]
    assert torch.tensor(1e-310, dtype=torch.float64) * 1.5 > 0  # flush_denormal was undone after the runs


def test_metrics_say_how_often_clipping_acted(archive, tmp_path):
    quick = ["+experiment=lstm", "model.hidden_size=4", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
             "trainer.limit_test_batches=2", "trainer.max_epochs=2"]
    always = train(make_cfg(archive, tmp_path, *quick, "trainer.gradient_clip_val=1e-9", name="tiny"))
    never = train(make_cfg(archive, tmp_path, *quick, "trainer.gradient_clip_val=1e9", name="huge"))
    assert always["grad/clipped_fraction"] == 1.0 and never["grad/clipped_fraction"] == 0.0


def test_a_new_run_in_the_folder_of_an_earlier_one_is_refused_and_changes_nothing(archive, tmp_path):
    quick = ["+experiment=lstm", "model.hidden_size=4", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
             "trainer.limit_test_batches=1"]
    train(make_cfg(archive, tmp_path, *quick))
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match=r"already holds a run \(checkpoints/\).*Resume it with ckpt_path=.*last\.ckpt"):
        train(make_cfg(archive, tmp_path, *quick, "seed=7"))
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_mixed_precision_trains_the_rnnlab_cells(archive, tmp_path):
    metrics = train(make_cfg(archive, tmp_path, "+experiment=bilstm", "model.hidden_size=4", "trainer.precision=bf16-mixed",
                             "trainer.limit_train_batches=3", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"))
    assert math.isfinite(metrics["val/loss"]) and 0 <= metrics["test/acc"] <= 1


class InterruptAt(pl.Callback):
    """Ctrl+C after optimizer step `step` (Lightning saves, then exits with status 1)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


# the strong recipe's parts: hashed bigrams, sparse embedding gradients with LazyAdam, embedding dropout, and two
# batches accumulated per step (5 batches: 3 steps an epoch; stopped at step 4, inside the second epoch)
RECIPE = ["model.bigram_buckets=1000", "model.sparse_embeddings=true", "model/optimizer=lazy_adam",
          "model.embedding_dropout=0.3", "model.pooling=max", "+trainer.accumulate_grad_batches=2"]


# the cell's regularizers draw their masks from torch's global generator, reseeded per step (issue 35)
REGULARIZED = ["model.zoneout=0.2", "model.zoneout_cell=0.4", "model.weight_dropout=0.3",
               "model.variational_dropout=0.2"]


@pytest.mark.parametrize("how, limit, stop, options", [("ctrl-c", None, 7, []), ("max_steps", 4, 6, []),
                                                       ("ctrl-c", None, 4, RECIPE), ("ctrl-c", None, 7, REGULARIZED)])
def test_resume_mid_epoch_ends_like_an_uninterrupted_run(archive, tmp_path, how, limit, stop, options):
    # 48 training reviews -> 5 batches of 8 per epoch (or `limit`); stop mid second epoch, resume, compare.
    common = ["+experiment=bilstm", "model.hidden_size=4", "trainer.max_epochs=2",
              f"trainer.limit_train_batches={limit or 'null'}", *options]
    full = train(make_cfg(archive, tmp_path, *common, name="full"))
    if how == "ctrl-c":  # last.ckpt is saved at the interrupted step
        try:
            with pytest.raises(SystemExit):
                train(make_cfg(archive, tmp_path, *common, f"+callbacks.stop._target_={__name__}.InterruptAt",
                               f"+callbacks.stop.step={stop}", name="cut"))
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores further Ctrl+C
        ckpt = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    else:  # a checkpoint every `stop` steps, and the run ends there
        train(make_cfg(archive, tmp_path, *common, f"trainer.max_steps={stop}", "test=false",
                       "+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint",
                       f"+callbacks.steps.every_n_train_steps={stop}", "+callbacks.steps.filename='step{step}'",
                       "+callbacks.steps.auto_insert_metric_name=false",
                       "+callbacks.steps.dirpath=${output_dir}/checkpoints", name="cut"))
        ckpt = tmp_path / "cut" / "checkpoints" / f"step{stop}.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == stop
    # resumed in the same folder, as README says: ModelCheckpoint then restores its best score too
    resumed = train(make_cfg(archive, tmp_path, *common, f"ckpt_path={ckpt}", name="cut"))
    assert resumed["steps"] == full["steps"] == 2 * math.ceil((limit or 5) / (2 if options == RECIPE else 1))
    for key in ("val/loss", "val/acc", "test/acc", "test/loss", "train/acc"):  # train/acc: over all the epoch's batches
        assert resumed[key] == full[key], key
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_metrics_keep_every_epoch_time_when_the_best_checkpoint_is_an_earlier_epoch(archive, tmp_path):
    # monitor=epoch, mode=min: the best checkpoint is epoch 0, which trainer.test reloads (callback states included)
    metrics = train(make_cfg(archive, tmp_path, "+experiment=lstm", "model.hidden_size=4", "trainer.max_epochs=2",
                             "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                             "callbacks.model_checkpoint.monitor=epoch", "callbacks.model_checkpoint.mode=min"))
    assert "epoch00" in Path(metrics["best_ckpt"]).name
    assert len(metrics["epoch_times_s"]) == 2 and all(t > 0 for t in metrics["epoch_times_s"])


def test_weight_averaging_tests_the_averaged_weights_that_validation_chose(archive, tmp_path):
    # Lightning's weight averaging validates and saves the averaged weights (the checkpoint's state_dict) and keeps
    # the raw ones beside them; trainer.test(ckpt_path=...) after fit would restore the raw ones
    metrics = train(make_cfg(archive, tmp_path, "+experiment=bilstm", "model.hidden_size=4", "trainer.max_epochs=2",
                             "+callbacks.ema._target_=lightning.pytorch.callbacks.EMAWeightAveraging",
                             "+callbacks.ema.decay=0.5"))
    checkpoint = torch.load(metrics["best_ckpt"], weights_only=False)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged)
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt={metrics['best_ckpt']}", "trainer.enable_progress_bar=false"])
    result = evaluate(cfg)
    assert result["test/loss"] == metrics["test/loss"] and result["test/acc"] == metrics["test/acc"]


@pytest.fixture(scope="module")
def trained(archive, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    metrics = train(make_cfg(archive, tmp, "+experiment=bilstm", "model.hidden_size=4", "trainer.max_epochs=2"))
    return tmp, metrics


def test_evaluate_rebuilds_the_test_split_of_the_checkpoint(archive, trained):
    tmp, metrics = trained
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt={metrics['best_ckpt']}", "trainer.enable_progress_bar=false"])
    result = evaluate(cfg)
    assert result["test/acc"] == metrics["test/acc"] and result["test/loss"] == metrics["test/loss"]


def test_evaluate_names_a_split_it_does_not_have(trained):
    tmp, metrics = trained
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt={metrics['best_ckpt']}", "split=train"])
    with pytest.raises(ValueError, match=r"split must be 'test' or 'val' .*: got split='train'"):
        evaluate(cfg)


def test_predict_raw_text_does_not_depend_on_the_other_texts_of_the_batch(trained):
    tmp, metrics = trained
    module = SequenceClassifierModule.load_from_checkpoint(metrics["best_ckpt"], weights_only=False)
    texts = ["A great, wonderful film!", "the worst plot " * 30 + "boring", "", "zzzz unknownword"]
    together = predict(module, texts)
    alone = [predict(module, [t])[0] for t in texts]
    assert together.pop(2) == alone.pop(2) == {"label": None, "probability": None, "error": "empty text", "text": ""}
    for a, b in zip(together, alone):
        assert a["label"] == b["label"] and a["label"] in ("neg", "pos") and a["text"] == b["text"]
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-5) and 0.5 <= a["probability"] <= 1


def test_a_wrong_checkpoint_path_or_file_names_it_and_what_to_pass(trained, tmp_path):
    run, metrics = trained
    with pytest.raises(FileNotFoundError, match=r"does not exist: expected a \.ckpt file written by rnnlab\.train"):
        load_module(tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match=r"is not a file: it is a folder; its checkpoints: .*last\.ckpt"):
        load_module(run / "run")  # the run folder instead of one of its checkpoints
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.ckpt is not a checkpoint of rnnlab\.train, or it is truncated \(UnpicklingError"):
        load_module(tmp_path / "notes.ckpt")
    cut = tmp_path / "cut.ckpt"  # a copy that stopped halfway
    cut.write_bytes(Path(metrics["best_ckpt"]).read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cut\.ckpt is not a checkpoint of rnnlab\.train, or it is truncated \(OSError"):
        load_module(cut)
    assert load_module(metrics["best_ckpt"]).vocabulary is not None


def test_resuming_from_a_missing_checkpoint_fails_before_any_work(archive, tmp_path):
    cfg = make_cfg(archive, tmp_path, "+experiment=lstm", f"ckpt_path={tmp_path / 'run' / 'last.ckpt'}")
    with pytest.raises(FileNotFoundError, match=r"last\.ckpt does not exist"):
        train(cfg)
    assert not (tmp_path / "cache").exists()  # the data was never prepared


def test_predict_streams_in_batches_and_reads_only_what_it_needs(trained):
    tmp, metrics = trained
    module = load_module(metrics["best_ckpt"])
    texts = [f"film number {k} " + "great " * k for k in range(7)]
    widths = []
    module.register_forward_hook(lambda m, args, out: widths.append(args[0].shape[0]))
    assert predict(module, texts, batch_size=3) == predict(module, texts, batch_size=256)
    assert widths == [3, 3, 1, 7]
    consumed = []
    stream = iter_predict(module, (consumed.append(t) or t for t in texts), batch_size=2)
    first = next(stream)
    assert first["text"] == texts[0] and consumed == texts[:2]  # stdin is read a batch at a time
    with pytest.raises(ValueError, match="batch_size must be a positive int .*: got 0"):
        predict(module, texts, batch_size=0)


def test_nan_loss_stops_with_the_step_and_a_clipping_hint():
    module = SequenceClassifierModule(vocab_size=10, embedding_dim=4, cell="torch_gru", hidden_size=3)
    with torch.no_grad():
        module.model.head.bias.fill_(math.nan)
    batch = (torch.tensor([[1, 2, 3]]), torch.tensor([3]), torch.tensor([1.0]))
    with pytest.raises(FloatingPointError, match=r"at step 0 .*gradient_clip_val"):
        module.training_step(batch, 0)


@pytest.mark.parametrize("override, message", [
    ("model.hiden_size=3", "Could not override 'model.hiden_size'"),
    ("model.cell=lsmt", r"Invalid value 'lsmt', expected one of \[lstm, cifg, gru"),
    ("model.num_layers=two", "Value 'two' of type 'str' could not be converted to Integer"),
    ("model.pooling=median", "Invalid value 'median'"),
])
def test_a_wrong_config_key_or_value_is_a_hydra_error_at_composition(archive, tmp_path, override, message):
    with pytest.raises(ConfigCompositionException) as error:
        make_cfg(archive, tmp_path, override)
    assert re.search(message, str(error.value) + str(error.value.__cause__))


def test_trainer_ddp_without_a_gpu_says_it_uses_gpus_and_how_to_run_ddp_on_cpu_before_anything_is_built(
        archive, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("hydra.utils.instantiate", lambda *a, **k: pytest.fail("built something"))
    with pytest.raises(ValueError, match=r"^trainer\.accelerator=gpu needs a CUDA GPU and this machine has none: "
                                         r"trainer=ddp uses GPUs, and trainer=ddp trainer\.accelerator=cpu "
                                         r"trainer\.devices=2 runs DDP on 2 CPU processes; expected "
                                         r"trainer\.accelerator=cpu here, got trainer\.accelerator=gpu$"):
        train(make_cfg(archive, tmp_path, "trainer=ddp"))
    assert not (tmp_path / "run").exists()


def test_tensorboard_has_the_metrics_the_gradient_figures_and_one_hparams_entry(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    tmp, _ = trained
    events = EventAccumulator(str(tmp / "run" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc", "time/epoch_s"} <= set(tags["scalars"])
    assert "grad_t/profile" in tags["images"] and "grad/clipped_fraction" in tags["scalars"]
    hparams = events.PluginTagToContent("hparams")
    declared = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"]).experiment.metric_infos
    assert {"val/acc", "val/loss", "test/acc"} <= {m.name.tag for m in declared}
    session = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    assert {"num_layers", "bidirectional", "trainer.gradient_clip_val", "seed"} <= set(session.session_start_info.hparams)


def test_the_command_line_reports_a_wrong_key_as_hydra_does(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "rnnlab.train", "model.hiden_size=3"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Could not override 'model.hiden_size'" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("job", ["train", "evaluate", "predict"])
def test_the_jobs_bound_the_kernel_caches_before_torch_loads_and_the_environment_wins(tmp_path, job):
    import os
    import subprocess
    import sys

    names = ("THP_MEM_ALLOC_ENABLE", "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
    probe = f"""
import os, sys
class Spy:  # prints the environment at the moment torch is first imported, and stops there (torch takes seconds)
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print(*[os.environ.get(n, "unset") for n in {names!r}], flush=True)
            os._exit(0)
sys.meta_path.insert(0, Spy())
import rnnlab.{job}
print("torch was never imported")
"""
    env = {k: v for k, v in os.environ.items() if k not in names}
    for given, expected in (({}, ["1", "8", "8"]), ({"LRU_CACHE_CAPACITY": "1024"}, ["1", "8", "1024"])):
        run = subprocess.run([sys.executable, "-c", probe], env=env | given, cwd=tmp_path, capture_output=True,
                             text=True, timeout=120, check=True)
        assert run.stdout.split() == expected


def test_a_three_class_folder_trains_with_three_logits_and_predicts_class_names(tmp_path):
    from helpers import make_text_folder

    words = {"comedy": "funny laugh joke", "horror": "scary blood fear", "drama": "tears family loss"}
    texts = {c: [f"{w} the film {i}" for i in range(10)] for c, w in words.items()}
    root = make_text_folder(tmp_path / "texts", texts)
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=folder", f"data.train_dir={root}", f"data.root={tmp_path / 'cache'}", "data.batch_size=8",
            "model.embedding_dim=8", "model.hidden_size=4", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
            f"output_dir={tmp_path / 'run'}"])
    metrics = train(cfg)
    module = SequenceClassifierModule.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt",
                                                           weights_only=False)
    assert module.model.head.out_features == 3 and sorted(module.class_names) == sorted(words)
    assert predict(module, ["scary blood"])[0]["label"] in words and 0 <= metrics["val/acc"] <= 1
    assert "test/acc" not in metrics  # no test_dir, no test split


def test_predict_command_reads_stdin_and_takes_raw_text_with_commas_and_quotes(trained, tmp_path):
    import subprocess
    import sys

    from rnnlab.predict import quote_text_override

    _, metrics = trained
    ckpt = metrics["best_ckpt"]
    run = subprocess.run([sys.executable, "-m", "rnnlab.predict", f"ckpt={ckpt}"], input="great film\n\nawful, dull\n",
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["great film", "", "awful, dull"]  # one row per line, the blank one flagged
    assert [r["label"] for r in rows][1] is None and all(rows[i]["label"] in ("neg", "pos") for i in (0, 2))
    # what the shell hands over for text="it's great, [really] \" — Hydra's grammar would reject it unquoted
    from hydra.core.override_parser.overrides_parser import OverridesParser

    raw = 'text=it\'s great, [really] \\'
    parsed = OverridesParser.create().parse_override(quote_text_override(raw))
    assert parsed.value() == raw[5:]


def test_nb_scale_takes_its_ratios_from_the_training_split_only_and_the_checkpoint_keeps_them(archive, tmp_path):
    from rnnlab.models.classifier import nb_log_count_ratios
    from rnnlab.train import build

    cfg = make_cfg(archive, tmp_path, "+experiment=imdb_best", "model.hidden_size=4", "model.bigram_buckets=101",
                   "model.nb_scale=true", "model.nb_alpha=5", "trainer.limit_train_batches=2", "test=false")
    datamodule, module = build(cfg)[:2]
    data = datamodule.datasets["train"]
    r_words, r_pairs = nb_log_count_ratios(data.flat, data.lengths, data.labels, datamodule.vectorizer.vocab_size,
                                           101, alpha=5)
    torch.testing.assert_close(module.model.word_scale, r_words)
    torch.testing.assert_close(module.model.pair_scale, r_pairs)
    every = datamodule.datasets["val"]  # validation's labels would give other ratios
    assert not torch.allclose(nb_log_count_ratios(every.flat, every.lengths, every.labels,
                                                  datamodule.vectorizer.vocab_size, 101, alpha=5)[0], r_words)
    metrics = train(cfg)
    loaded = load_module(metrics["best_ckpt"])
    torch.testing.assert_close(loaded.model.word_scale, r_words)


def test_the_recipe_without_a_recurrent_layer_trains_saves_and_reloads_as_a_bag(archive, tmp_path):
    cfg = make_cfg(archive, tmp_path, "+experiment=imdb_best", "model.recurrent=false", "model.pooling=sum_sqrt_max",
                   "model.bigram_buckets=101", "trainer.max_epochs=1", "trainer.limit_train_batches=2")
    metrics = train(cfg)
    assert 0 <= metrics["test/acc"] <= 1
    loaded = load_module(metrics["best_ckpt"])
    assert loaded.model.encoder is None and loaded.hparams.recurrent is False
    assert loaded.model.head.in_features == 2 * loaded.hparams.embedding_dim


def test_the_indrnn_cell_and_layer_norm_train_through_the_main_job(archive, tmp_path):
    # issue 35: `python -m rnnlab.train +experiment=bilstm model.cell=indrnn` (IndRNN has no forget gate: the bilstm
    # recipe's forget_bias is unused), and a layer-normalized LSTM with zoneout
    for name, options in (("ind", ["model.cell=indrnn"]), ("ln", ["model.layer_norm=true", "model.zoneout=0.1"])):
        cfg = make_cfg(archive, tmp_path, "+experiment=bilstm", "model.hidden_size=4", "trainer.limit_train_batches=2",
                       *options, name=name)
        metrics = train(cfg)
        assert 0 <= metrics["test/acc"] <= 1
        loaded = load_module(metrics["best_ckpt"])
        assert type(loaded.model.encoder).__name__ == ("IndRNN" if name == "ind" else "LSTM")
