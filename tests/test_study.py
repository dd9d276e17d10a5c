"""rnnlab.study: an equal Optuna search for every cell that survives kill -9, shared by several processes, reported.

Each test runs a tiny study (2 cells x 3 trials of 2 steps at T = 6) on an SQLite file under tmp_path. The second
process is forked from the test's own (so it starts in milliseconds, torch already imported): a real process with
its own connection to the storage, killed with SIGKILL like `kill -9`.
"""
import csv
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the `study` extra: pip install -e '.[study]'")
from omegaconf import OmegaConf  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from rnnlab.budget import max_time_seconds, step_budget  # noqa: E402
from rnnlab.study.search import cell_study, compose, run_overrides, space, storage, study_config, work  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["data.length=6", "data.train_size=20", "data.val_size=10", "data.test_size=10", "trainer.max_steps=2",
        "trainer.enable_progress_bar=false", "diagnostics.every_n_steps=50", "logger=csv"]


def tiny_study(tmp_path, *overrides):
    """The adding study shrunk to 2 cells x 3 trials of 2 steps, with a heartbeat every second."""
    list_ = "[" + ",".join(f'"{o}"' for o in TINY) + "]"
    cfg = study_config(["search=adding", "search.cells=[lstm,gru]", "search.trials=3", f"study.dir={tmp_path}",
                        f"search.overrides={list_}", "study.heartbeat_interval=1", "study.grace_period=2",
                        "report.seeds=[1,2]", *overrides])
    cfg.search.params = {"model.optimizer.lr": "tag(log, interval(1e-3, 1e-1))", "model.hidden_size": "choice(4, 8)",
                         "model.num_layers": "range(1, 3)", "model.dropout": "interval(0, 0.5)",
                         "trainer.gradient_clip_val": "choice(0, 1)", "data.batch_size": "choice(10, 20)"}
    return cfg


def trials_of(cfg):
    rdb = storage(cfg)
    return {cell: cell_study(cfg, cell, rdb, load_only=True).get_trials() for cell in cfg.search.cells}


def forked(target, *args) -> multiprocessing.Process:
    process = multiprocessing.get_context("fork").Process(target=target, args=args)
    process.start()
    return process


def assert_every_cell_has_its_trials_once(cfg):
    run_dirs = []
    for cell, trials in trials_of(cfg).items():
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == cfg.search.trials, (cell, [(t.number, t.state) for t in trials])
        assert all((t.state == TrialState.PRUNED) == bool(t.user_attrs.get("surplus")) for t in trials)
        for t in complete:
            assert os.path.exists(os.path.join(t.user_attrs["run_dir"], "metrics.json"))
        run_dirs += [t.user_attrs["run_dir"] for t in trials if "run_dir" in t.user_attrs]
    assert len(run_dirs) == len(set(run_dirs))  # no trial recorded (or run) twice


def test_the_search_space_reads_hydras_sweep_syntax_into_optuna_distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    assert space({"lr": "tag(log, interval(1e-4, 1e-1))", "dropout": "interval(0, 0.5)", "layers": "range(1, 3)",
                  "units": "tag(log, int(interval(16, 128)))", "clip": "choice(0, 0.25, 1)"}) == {
        "lr": FloatDistribution(1e-4, 1e-1, log=True), "dropout": FloatDistribution(0.0, 0.5),
        "layers": IntDistribution(1, 2), "units": IntDistribution(16, 128, log=True),
        "clip": CategoricalDistribution([0, 0.25, 1])}
    with pytest.raises(ValueError, match=r"search.params.lr must be a range of values to search: .* got '0.1'"):
        space({"lr": "0.1"})
    with pytest.raises(ValueError, match=r"search.params.lr must be in Hydra's sweep syntax"):
        space({"lr": "interval(1"})


def test_the_docstring_examples_of_the_study_run():
    import doctest

    from rnnlab.study import search

    result = doctest.testmod(search)
    assert result.attempted > 0 and result.failed == 0


SEARCHES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "search").glob("*.yaml"))


@pytest.mark.parametrize("search", SEARCHES)
def test_every_search_space_composes_into_trials_that_end_by_a_step_budget(search, tmp_path):
    cfg = study_config([f"search={search}", f"study.dir={tmp_path}"])
    distributions = space(cfg.search.params)
    trial = optuna.create_study().ask(fixed_distributions=distributions)  # in memory: a draw from the space
    value = cfg.search.cells[-1]  # a value of the compared axis (model.cell, or model.variant for odyssey)
    train = compose("train", run_overrides(cfg, value, trial.params, tmp_path / "run", {"trial": 0}))
    assert step_budget(train.trainer) is not None
    assert (max_time_seconds(train.trainer.get("max_time")) or math.inf) >= 3600  # a safety net, not the budget
    assert OmegaConf.select(train, cfg.search.axis) == value and train.study_trial.trial == 0
    for key, value in trial.params.items():
        assert OmegaConf.select(train, key) == value
    assert set(distributions) == {"model.optimizer.lr", "model.hidden_size", "model.num_layers", "model.dropout",
                                  "trainer.gradient_clip_val", "data.batch_size"}


def test_the_compared_axis_may_be_another_setting_than_the_cell(tmp_path):
    cfg = study_config(["search=adding", "search.axis=model.forget_bias", "search.cells=[0.0,1.0]"])
    train = compose("train", run_overrides(cfg, "0.0", {}, tmp_path / "run", {"trial": 0}))
    assert train.model.forget_bias == 0.0 and train.model.cell == "lstm"


def test_a_value_of_the_axis_gets_its_own_overrides_and_the_others_do_not(tmp_path):
    """The odyssey study: every variant with peepholes (search.overrides) but NP (search.axis_overrides.np)."""
    cfg = study_config(["search=odyssey", f"study.dir={tmp_path}"])
    np_, nig = (compose("train", run_overrides(cfg, v, {}, tmp_path / v, {"trial": 0})).model for v in ("np", "nig"))
    assert (np_.variant, np_.peephole, nig.variant, nig.peephole) == ("np", False, "nig", True)


@pytest.mark.timeout(300)  # a worker that waited forever on a dead trial would hang here
def test_a_study_killed_with_sigkill_mid_trial_goes_on_from_its_storage_and_reruns_that_trial(tmp_path):
    cfg = tiny_study(tmp_path, "study.grace_period=1")
    child = forked(work, cfg)
    rdb, killed = None, None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline:
        time.sleep(0.01)
        if not (tmp_path / "study.db").exists():
            continue
        rdb = rdb or storage(cfg)  # after the fork: the child has its own connection
        for cell in cfg.search.cells:
            try:
                running = [t for t in cell_study(cfg, cell, rdb, load_only=True).get_trials(
                    states=(TrialState.RUNNING,)) if t.user_attrs.get("pid") == child.pid]
            except KeyError:  # the child has not created this cell's study yet
                continue
            if running:
                os.kill(child.pid, signal.SIGKILL)  # mid-trial: its run has started and not finished
                killed = (cell, running[0])
                break
    child.join()
    assert killed is not None and child.exitcode == -signal.SIGKILL
    cell, trial = killed
    assert not (tmp_path / cell / f"trial_{trial.number:04d}" / "metrics.json").exists()

    work(cfg, poll_s=0.1)  # the restart: waits for the dead trial's heartbeat to go stale, then reruns it
    assert_every_cell_has_its_trials_once(cfg)
    trials = {t.number: t for t in trials_of(cfg)[cell]}
    assert trials[trial.number].state == TrialState.FAIL and "diverged" not in trials[trial.number].user_attrs
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == trial.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == trial.params


@pytest.mark.timeout(300)  # a worker that waited forever on a dead trial would hang here
def test_two_processes_on_one_study_share_its_trials_and_run_none_twice(tmp_path):
    cfg = tiny_study(tmp_path)
    storage(cfg)  # the tables exist before the two start
    child = forked(work, cfg)
    work(cfg, poll_s=0.1)
    child.join(timeout=120)
    assert child.exitcode == 0
    assert_every_cell_has_its_trials_once(cfg)
    pids = {t.user_attrs.get("pid") for trials in trials_of(cfg).values() for t in trials
            if t.state == TrialState.COMPLETE}
    assert pids == {os.getpid(), child.pid}


@pytest.mark.timeout(300)  # a worker that waited forever on a dead trial would hang here
def test_a_diverged_trial_counts_toward_its_cells_trials_and_the_study_still_ends(tmp_path):
    cfg = tiny_study(tmp_path, "search.cells=[lstm]", "search.trials=2")
    # the divergence stop after one step above 1e-9 x the first loss: every trial diverges (FloatingPointError)
    cfg.search.overrides = [*cfg.search.overrides, "callbacks.divergence.factor=1e-9", "callbacks.divergence.patience=1"]
    state = work(cfg)
    assert (state["lstm"].done, state["lstm"].taken) == (2, 2)
    trials = trials_of(cfg)["lstm"]
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all(t.user_attrs["diverged"].startswith("training diverged") for t in trials)


@pytest.mark.slow  # 2 x 3 trials and 2 x 2 reruns: ~8 s on the loaded 2-core machine
def test_the_report_has_every_trial_the_best_configurations_over_seeds_and_fanova_importances(tmp_path):
    cfg = tiny_study(tmp_path)
    work(cfg)
    from rnnlab.study.report import report

    out = report(cfg)
    trials = list(csv.DictReader(open(out / "trials.csv")))
    assert sorted((r["cell"], r["state"]) for r in trials) == [("gru", "COMPLETE")] * 3 + [("lstm", "COMPLETE")] * 3
    best = list(csv.DictReader(open(out / "best.csv")))
    assert {(r["cell"], r["metric"], r["n"], r["seeds"]) for r in best if r["metric"] == "test/loss"} == {
        ("lstm", "test/loss", "2", "1 2"), ("gru", "test/loss", "2", "1 2")}
    gru = next(r for r in best if r["cell"] == "gru" and r["metric"] == "test/loss")
    assert gru["test"] == "paired" and float(gru["ci95_low"]) <= float(gru["mean"]) <= float(gru["ci95_high"])
    for cell in cfg.search.cells:  # the reruns are ordinary runs of the best trial's parameters, tagged with it
        assert (tmp_path / cell / "best_seed2" / "metrics.json").exists()
    importance = list(csv.DictReader(open(out / "importance.csv")))
    for cell in cfg.search.cells:
        shares = [float(r["importance"]) for r in importance if r["cell"] == cell]
        assert len(shares) == 6 and sum(shares) == pytest.approx(1.0)
    text = (out / "report.md").read_text()
    assert "![trials](trials.png)" in text and "| gru | 3 | 0 | 0 |" in text
    assert all((out / f).stat().st_size > 1000 for f in ("trials.png", "best.png", "importance.png"))


def test_the_command_line_refuses_a_bad_key_in_one_line_with_exit_status_2(capsys):
    from rnnlab.study.__main__ import main

    for argv, message in ((["search.trails=3"], "error: study config: Could not override 'search.trails'"),
                          (["summary"], "error: the command must be one of run, report"),
                          (["study.sampler=GridSearch", "search.trials=1", "study.dir=/nonexistent/x",
                            "study.storage=sqlite:///:memory:"], "error: study.sampler must name a class of optuna")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith(message) and err.count("\n") == 1


@pytest.mark.slow
def test_the_documented_commands_run_a_study_and_its_report_in_subprocesses(tmp_path):
    list_ = "[" + ",".join(f'"{o}"' for o in TINY) + "]"
    common = ["search=adding", "search.cells=[lstm,gru]", "search.trials=2", f"study.dir={tmp_path / 'study'}",
              f"search.overrides={list_}", "report.seeds=[1,2]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for command in (["run"], ["report"]):
        done = subprocess.run([sys.executable, "-m", "rnnlab.study", *command, *common], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "study" / "report" / "report.md").exists()


@pytest.mark.parametrize("error", ["OperationalError", "IntegrityError"])  # a locked file; both wrote alembic_version
def test_a_worker_that_loses_the_race_to_create_the_storage_opens_the_one_the_other_created(tmp_path, monkeypatch,
                                                                                         error):
    import optuna.storages
    import sqlalchemy

    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, **kwargs):  # the first attempt meets the other worker's half-made tables
        calls.append(args)
        if len(calls) == 1:
            raise getattr(sqlalchemy.exc, error)("INSERT INTO alembic_version", {}, Exception("the other worker"))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    assert storage(tiny_study(tmp_path)) is not None and len(calls) == 2
