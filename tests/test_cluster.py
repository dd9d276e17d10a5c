"""rnnlab on a real SLURM cluster: the one-node cluster of scripts/slurm_local.sh (munged, slurmctld, slurmd, and a
PostgreSQL server), started once for the test run by the ``slurm_cluster`` fixture. ``make test-cluster``.

- a 4-job sweep through Hydra's ``submitit_slurm`` launcher, its jobs started two at a time on a cold data cache,
  then scripts/summarize.py on the sweep;
- preemption: of three identical jobs, one is requeued by SLURM mid-run (``scontrol requeue``) and one gets
  submitit's requeue signal (USR2, as SLURM sends it ``signal_delay_s`` before a time limit); both go on from their own
  ``last.ckpt`` and end with the uninterrupted job's metrics.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import make_imdb_archive

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slurm
SWEEP_TIMEOUT_S = 400
# Every job asks for one core (submitit's default) and at most 10 minutes; the cluster's node has all the machine's.
LAUNCHER = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.timeout_min=10"]


def _squeue() -> dict[str, str]:
    """``{job id: state}`` of the cluster's jobs (array tasks as ``<array id>_<index>``)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True, timeout=30)
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


def _job_id(index: int) -> str | None:
    """The SLURM id of task ``index`` of the sweep's job array (Hydra's job number is the array index)."""
    return next((job for job in _squeue() if job.endswith(f"_{index}")), None)


def run_sweep(tmp_path: Path, overrides: list[str], while_running=None):
    """``python -m rnnlab.train -m ...`` through submitit_slurm into ``tmp_path/multirun``; ``while_running(sweep_dir)``
    is called every 0.2 s until the sweep ends (it returns True when it has nothing left to do). Returns the finished
    process and the most jobs seen RUNNING at once."""
    sweep_dir = tmp_path / "multirun"
    cmd = [sys.executable, "-m", "rnnlab.train", "-m", *LAUNCHER, *overrides, "trainer.enable_progress_bar=false",
           f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny models; every job has one core
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, most, done = time.monotonic() + SWEEP_TIMEOUT_S, 0, while_running is None
    try:
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"the sweep did not end in {SWEEP_TIMEOUT_S} s: {_squeue()}"
            most = max(most, sum(state == "RUNNING" for state in _squeue().values()))
            if not done:
                done = while_running(sweep_dir)
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.stdout.read()
    assert proc.returncode == 0, output[-4000:]
    return sweep_dir, most, output


# ------------------------------------------------------------------------------------------- a sweep on a cold cache
IMDB = ["+experiment=lstm", "data.batch_size=8", "data.max_length=30", "model.embedding_dim=8", "trainer.max_epochs=1"]


@pytest.fixture(scope="module")
def imdb_sweep(slurm_cluster, tmp_path_factory):
    """4 jobs (1 or 2 layers x 4 or 8 units) on a tiny IMDB archive and an empty data.root."""
    tmp_path = tmp_path_factory.mktemp("imdb_sweep")
    archive = make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=24)
    data = [f"data.archive={archive}", f"data.root={tmp_path / 'data'}"]
    sweep_dir, most, _ = run_sweep(tmp_path, [*IMDB, *data, "model.num_layers=1,2", "model.hidden_size=4,8"])
    return sweep_dir, most, tmp_path / "data", data


def test_a_four_job_submitit_slurm_sweep_writes_every_job_and_summarize_reads_it(imdb_sweep):
    sweep_dir, _, _, _ = imdb_sweep
    jobs = sorted(p.parent.name for p in sweep_dir.glob("*/metrics.json"))
    assert jobs == ["0", "1", "2", "3"]
    for job in jobs:
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert 0 <= metrics["test/acc"] <= 1 and metrics["epochs"] == 1
        assert (sweep_dir / job / "checkpoints" / "last.ckpt").is_file()
    # submitit's record of each SLURM job: one result per array task
    assert len(list((sweep_dir / ".submitit").glob("*/*_result.pkl"))) == 4

    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "summarize.py"), str(sweep_dir)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert sorted((r["layers"], r["hidden"]) for r in rows) == [("1", "4"), ("1", "8"), ("2", "4"), ("2", "8")]


def test_jobs_started_at_once_on_an_empty_data_root_leave_one_intact_cache(imdb_sweep, tmp_path):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the cluster runs one job at a time")
    _, most, data_root, data = imdb_sweep
    assert most >= 2  # at least two jobs vectorized the data at the same time
    entries = [p for p in (data_root / "cache").iterdir()]
    assert len(entries) == 1  # one key: every job built (or read) the same entry
    assert not [p.name for p in entries[0].iterdir() if ".tmp" in p.name]  # no half-written file left

    # the shared entry holds what one process alone builds from the same settings
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*IMDB, *data, f"data.root={tmp_path}"])
    alone = instantiate(cfg.data)
    alone.prepare_data()
    alone.setup()
    assert alone.cache_dir().name == entries[0].name
    assert (alone.cache_dir() / "vectorizer.json").read_text() == (entries[0] / "vectorizer.json").read_text()
    for split in ("train", "val", "test"):
        with np.load(alone.cache_dir() / f"{split}.npz") as mine, np.load(entries[0] / f"{split}.npz") as shared:
            assert sorted(mine.files) == sorted(shared.files)
            for name in mine.files:
                np.testing.assert_array_equal(mine[name], shared[name], err_msg=f"{split}.npz: {name}")


# ------------------------------------------------------------------------------------------------------ preemption
# 3 identical jobs (seed 5) on a tiny IMDB archive: 30 batches an epoch, 20 epochs.
PREEMPTED = [*IMDB, "seed=5,5,5", "trainer.max_epochs=20"]


def test_a_requeued_or_signalled_job_resumes_from_its_last_checkpoint_and_ends_as_the_uninterrupted_one(
        slurm_cluster, tmp_path):
    archive = make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=150)
    interrupt = {1: ["scontrol", "requeue"],  # preemption: SLURM stops the job (SIGTERM) and queues it again
                 2: ["scancel", "--signal=USR2"]}  # submitit's signal before a time limit: it requeues the job itself
    sent = {}

    def interrupt_mid_run(sweep_dir: Path) -> bool:
        for index, command in interrupt.items():
            job = _job_id(index)
            if index in sent or job is None or not (sweep_dir / str(index) / "checkpoints" / "last.ckpt").exists():
                continue  # not yet through its first epoch
            subprocess.run([*command, job], check=True, timeout=30)
            sent[index] = job
        return len(sent) == len(interrupt)

    # submitit counts a USR2 within 10 minutes of the time limit as a timeout, and requeues at most max_num_timeout
    # of them (Hydra's default: 0, no requeue)
    sweep_dir, _, _ = run_sweep(tmp_path, [*PREEMPTED, f"data.archive={archive}", f"data.root={tmp_path / 'data'}",
                                           "hydra.launcher.max_num_timeout=3"], while_running=interrupt_mid_run)
    assert sorted(sent) == [1, 2]
    uninterrupted = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert uninterrupted["epochs"] == 20
    for index in sent:
        logs = "".join(p.read_text(errors="replace") for p in (sweep_dir / ".submitit").glob(f"*_{index}/*_log.*"))
        resumed = re.search(r"requeued \(restart 1\): resuming from (\S+)", logs)
        assert resumed and resumed.group(1) == str(sweep_dir / str(index) / "checkpoints" / "last.ckpt"), logs[-3000:]
        step = int(re.search(r"resume: \S+ at epoch \d+, step (\d+)", logs).group(1))
        assert 0 < step < uninterrupted["steps"]  # mid-run
        metrics = json.loads((sweep_dir / str(index) / "metrics.json").read_text())
        for key in ("steps", "epochs", "val/loss", "val/acc", "best/val/acc", "test/loss", "test/acc"):
            assert metrics[key] == uninterrupted[key], (index, key)


# ---------------------------------------------------------------------------------- one study, two jobs, PostgreSQL
# python -m rnnlab.study: the adding search (its space), 2 cells x 3 trials, each trial 150 steps at T = 6
STUDY_RUNS = ["data.length=6", "data.train_size=200", "data.val_size=20", "data.test_size=20", "trainer.max_steps=150",
              "trainer.enable_progress_bar=false", "diagnostics.every_n_steps=1000", "logger=csv"]


def _sbatch(tmp_path: Path, name: str, command: list[str]) -> str:
    out = subprocess.run(["sbatch", "--parsable", "--partition=debug", "--cpus-per-task=1", "--time=10",
                          f"--job-name={name}", f"--chdir={tmp_path}", f"--output={tmp_path / name}.log",
                          f"--wrap={shlex.join(command)}"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def _job_pids(job: str) -> set[int]:
    out = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True, timeout=30)
    return {int(line.split()[0]) for line in out.stdout.splitlines()[1:] if line.split()[:1] != ["-1"]}


def test_two_slurm_jobs_share_one_study_on_postgresql_and_a_killed_jobs_trial_is_run_again(slurm_cluster, tmp_path):
    pytest.importorskip("optuna", reason="the `study` extra: pip install -e '.[study]'")
    pytest.importorskip("psycopg", reason="the `cluster` extra (PostgreSQL's driver): pip install -e '.[cluster]'")
    from optuna.trial import TrialState
    from test_study import assert_every_cell_has_its_trials_once, trials_of

    from rnnlab.study.search import cell_study, storage, study_config

    overrides = ["search=adding", "search.cells=[lstm,gru]", "search.trials=3", f"study.dir={tmp_path / 'study'}",
                 f"study.storage='{slurm_cluster['RNNLAB_PG_URL']}'", "study.heartbeat_interval=1",
                 "study.grace_period=3", "search.overrides=[" + ",".join(f"'{o}'" for o in STUDY_RUNS) + "]"]
    cfg = study_config(overrides)
    rdb = storage(cfg)
    for cell in cfg.search.cells:  # the cells' studies exist before the two jobs start, as a worker creates them
        cell_study(cfg, cell, rdb)
    worker = ["srun", sys.executable, "-m", "rnnlab.study", *overrides]  # a job step, as on a real cluster
    jobs = [_sbatch(tmp_path, f"worker{i}", worker) for i in (1, 2)]

    # SIGKILL the first job (as a node that dies: no Python handler runs) while it runs a trial, after it finished one
    killed, deadline = None, time.monotonic() + SWEEP_TIMEOUT_S
    while killed is None:
        assert time.monotonic() < deadline, "the first job never ran a trial after finishing one"
        assert jobs[0] in _squeue(), f"the first job ended before it could be killed: {(tmp_path / 'worker1.log').read_text()[-3000:]}"
        pids = _job_pids(jobs[0])
        trials = [t for cell_trials in trials_of(cfg).values() for t in cell_trials if t.user_attrs.get("pid") in pids]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if running and any(t.state == TrialState.COMPLETE for t in trials):
            subprocess.run(["scancel", "--signal=KILL", "--full", jobs[0]], check=True, timeout=30)
            killed = running[0]
        time.sleep(0.2)

    while jobs[1] in _squeue():  # the second job ends the study alone
        assert time.monotonic() < deadline, f"the second job did not end: {(tmp_path / 'worker2.log').read_text()[-3000:]}"
        time.sleep(0.5)
    log = (tmp_path / "worker2.log").read_text()
    assert "every cell has its 3 trials" in log, log[-3000:]
    assert_every_cell_has_its_trials_once(cfg)
    trials = trials_of(cfg)
    cell = next(c for c, cell_trials in trials.items() if killed._trial_id in {t._trial_id for t in cell_trials})
    same = {t._trial_id: t for t in trials[cell]}
    assert same[killed._trial_id].state == TrialState.FAIL  # the second job found its heartbeat stale
    retry = [t for t in trials[cell] if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == killed.params
    workers = {t.user_attrs["pid"] for cell_trials in trials.values() for t in cell_trials
               if t.state == TrialState.COMPLETE}
    assert len(workers) == 2  # both jobs recorded trials
