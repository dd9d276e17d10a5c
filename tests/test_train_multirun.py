"""A Hydra multirun of two jobs in a subprocess, from another working directory, summarised by scripts/summarize.py."""
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import command_line, make_imdb_archive

ROOT = Path(__file__).resolve().parents[1]


# submitit_slurm: the same plugin on SLURM; the launchers other than Hydra's own run the same jobs in make test-all
@pytest.mark.parametrize("launcher", ["basic", pytest.param("joblib", marks=pytest.mark.slow),
                                      pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_two_job_multirun_from_another_directory_then_summarize(tmp_path, launcher):
    archive = make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=12)
    sweep_dir = tmp_path / "multirun"
    cmd = [sys.executable, "-m", "rnnlab.train", "-m", f"hydra/launcher={launcher}", "+experiment=lstm",
           "model.num_layers=1,2",
           f"data.archive={archive}", f"data.root={tmp_path / 'cache'}", "data.batch_size=8", "data.max_length=30",
           "model.embedding_dim=8", "model.hidden_size=4", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
           f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models; spare the shared CPU
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # cwd: not the repo
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep_dir.rglob("metrics.json"))
    assert [j.name for j in jobs] == ["0", "1"]  # one folder per job, named by job number
    layers = sorted(json.loads((j / "metrics.json").read_text())["num_parameters"] for j in jobs)
    assert layers[0] < layers[1]  # the second job really has two layers

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "summarize.py"), str(sweep_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert sorted(r["layers"] for r in rows) == ["1", "2"]
    assert all(r["cell"] == "lstm" and r["experiment"] == "lstm" for r in rows)
    header = (sweep_dir / "summary.md").read_text().splitlines()[0]
    assert all(f" {c} " in header for c in ("cell", "layers", "bidirectional", "clip", "val_acc", "test_acc", "epoch_s"))
    assert (sweep_dir / "summary.png").stat().st_size > 1000


def _summarize():
    spec = importlib.util.spec_from_file_location("summarize", ROOT / "scripts" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summarize_tells_experiments_apart_that_share_a_cell(tmp_path):
    # gru and gru_course are both one GRU layer of 32: only the +experiment= choice distinguishes their rows
    summarize = _summarize()
    for job, experiment, acc in (("0", "gru", 0.87), ("1", "gru_course", 0.50)):
        folder = tmp_path / job
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text(f"- +experiment={experiment}\n- trainer.max_epochs=2\n")
        (folder / "config.yaml").write_text("model: {cell: gru, num_layers: 1, hidden_size: 32}\n")
        (folder / "metrics.json").write_text(json.dumps({"test/acc": acc, "epoch_times_s": [10.0, 20.0],
                                                         "grad/clipped_fraction": 0.25}))
    rows = summarize.collect(tmp_path)
    assert [(r["experiment"], r["test_acc"], r["clipped"], r["epoch_s"]) for r in rows] == [
        ("gru", 0.87, 0.25, 15.0), ("gru_course", 0.50, 0.25, 15.0)]
    assert summarize.swept(rows) == ["experiment"]


def test_the_named_sweep_is_24_jobs_that_each_compose_to_their_settings():
    from hydra import compose, initialize_config_module
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        sweep = compose("train", overrides=["+experiment=bilstm", "+sweep=depth_bidir_clip"], return_hydra_config=True)
        params = sweep.hydra.sweeper.params
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]  # as the sweeper splits
        settings = set()
        for job in jobs:
            cfg = compose("train", overrides=["+experiment=bilstm", *job])
            settings.add((cfg.model.num_layers, cfg.model.bidirectional, cfg.trainer.gradient_clip_val))
    assert str(sweep.hydra.mode) == "RunMode.MULTIRUN"
    assert settings == {(n, b, c) for n in (1, 2, 3) for b in (False, True) for c in (0, 0.25, 1, 5)}


def test_a_multirun_job_that_fails_writes_its_error_in_its_folder_and_returns_nan_to_the_sweeper(tmp_path, capsys):
    from rnnlab.train import train
    from rnnlab.training.run_folder import recorded_job

    job = tmp_path / "multirun" / "1"
    with command_line("model.hidden_size=0", f"output_dir={job}", "hydra.mode=MULTIRUN",
                      f"hydra.runtime.output_dir={job}") as cfg:
        assert recorded_job(train, cfg) == {}  # main returns its val/acc: nan
    error = (job / "error.txt").read_text()
    assert error.startswith("error: model.hidden_size must be a positive int") and error.count("\n") == 1
    assert capsys.readouterr().err.startswith("error: model.hidden_size must be a positive int")

    def bug(cfg):
        raise KeyError("a bug")

    with command_line(f"output_dir={job}", "hydra.mode=MULTIRUN", f"hydra.runtime.output_dir={job}") as cfg:
        with pytest.raises(KeyError):  # a bug is Hydra's to report (and the basic sweeper's to stop at)
            recorded_job(bug, cfg)
    assert "Traceback" in (job / "error.txt").read_text() and "KeyError: 'a bug'" in (job / "error.txt").read_text()
    with command_line("model.hidden_size=0", f"output_dir={tmp_path / 'run'}") as cfg:  # a single run: exit 2
        with pytest.raises(ValueError):
            recorded_job(train, cfg)
    assert not (tmp_path / "run").exists()


def test_summarize_lists_the_failed_and_the_missing_jobs_of_a_multirun(tmp_path, capsys):
    summarize = _summarize()
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": {"seed": "1,2"}},
        "overrides": {"task": ["model.hidden_size=8,0,4", "trainer.max_epochs=1"]}}}))
    for job in ("0", "3"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "metrics.json").write_text(json.dumps({"test/acc": 0.5}))
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "error.txt").write_text("error: model.hidden_size must be a positive int: got 0\n")
    (tmp_path / "2").mkdir()  # started, then killed: its log only
    (tmp_path / "2" / "train.log").write_text("")
    assert summarize.expected_jobs(tmp_path) == 6
    assert summarize.job_status(tmp_path) == ({"1": "error: model.hidden_size must be a positive int: got 0"},
                                              ["2", "4", "5"])
    (tmp_path / "3").rename(tmp_path / "seed=2")  # hydra.sweep.subdir=${hydra.job.override_dirname}: numbers unknown
    assert summarize.job_status(tmp_path)[1] == []
    (tmp_path / "seed=2").rename(tmp_path / "3")
    summarize.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "failed: job 1: error: model.hidden_size must be a positive int: got 0" in out
    assert "missing: jobs 2, 4, 5 (neither metrics.json nor error.txt" in out
    assert "(2 runs, 1 failed, 3 missing;" in out and "missing: jobs 2, 4, 5" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_a_multirun_with_a_bad_job_runs_the_others_and_the_summary_says_which_failed(tmp_path):
    archive = make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=12)
    sweep_dir = tmp_path / "multirun"
    cmd = [sys.executable, "-m", "rnnlab.train", "-m", "+experiment=lstm", "model.hidden_size=4,0,2",
           f"data.archive={archive}", f"data.root={tmp_path / 'cache'}", "data.batch_size=8", "data.max_length=30",
           "model.embedding_dim=8", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
           f"hydra.sweep.dir={sweep_dir}"]
    run = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "error: model.hidden_size must be a positive int" in run.stderr and "Traceback" not in run.stderr
    assert [(sweep_dir / j / "metrics.json").exists() for j in "012"] == [True, False, True]
    assert (sweep_dir / "1" / "error.txt").read_text().startswith("error: model.hidden_size must be a positive int")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "summarize.py"), str(sweep_dir)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "failed: job 1: error: model.hidden_size" in out.stdout
    assert "(2 runs, 1 failed, 0 missing;" in out.stdout
