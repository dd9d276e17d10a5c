"""Run (or resume, or join) a study: every cell's trials until each has ``search.trials`` of them.

A worker repeats: mark the trials whose process died as failed (their parameters are queued again), pick the cell
with the fewest trials taken, and run one trial of it with Optuna's ``Study.optimize`` (which keeps the trial's
heartbeat). A trial is *taken* while it runs, waits to be rerun, has finished, or diverged; a cell is done when it has
``search.trials`` taken trials that finished or diverged. Trial numbers are given by the storage, so two workers that
ask at the same moment are ordered: one whose trial has ``search.trials`` taken trials before it records it as
pruned (``user_attrs["surplus"]``) and runs nothing, and no cell ever gets more trials than the others.
"""
from __future__ import annotations

import logging
import math
import os
import shlex
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.budget import step_budget

log = logging.getLogger(__name__)
TRIAL_DIR = "trial_{:04d}"


def compose(name: str, overrides: list[str]) -> DictConfig:
    """rnnlab's Hydra config ``name`` (``study`` or ``train``) with the overrides; a bad key or value is a ValueError
    with Hydra's message."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.errors import HydraException

    import rnnlab.conf  # noqa: F401  (registers the schemas)

    try:
        with initialize_config_module("rnnlab.conf", version_base="1.3"):
            return hydra_compose(name, overrides=list(overrides))
    except HydraException as error:  # composition and override-grammar errors: the user's overrides
        raise ValueError(f"{name} config: {error}".replace("\n", " ")) from error


def space(params) -> dict:
    """The search space: ``{config key: optuna distribution}`` from Hydra's sweep syntax.

    ``interval(a, b)``: a float in [a, b] (ints in ``int(interval(a, b))``); ``tag(log, ...)``: on a log scale;
    ``range(a, b[, step])``: the ints a, a + step, ... < b; ``choice(x, y, ...)``: a category.

    >>> space({"model.optimizer.lr": "tag(log, interval(1e-4, 1e-1))", "model.num_layers": "range(1, 3)"})
    {'model.optimizer.lr': FloatDistribution(high=0.1, log=True, low=0.0001, step=None), \
'model.num_layers': IntDistribution(high=2, log=False, low=1, step=1)}
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    parser, out = OverridesParser.create(), {}
    for key, text in dict(params).items():
        try:
            value = parser.parse_override(f"{key}={text}").value()
        except Exception as error:  # Hydra's grammar errors
            raise ValueError(f"search.params.{key} must be in Hydra's sweep syntax: expected e.g. "
                             f"tag(log, interval(1e-4, 1e-1)), choice(16, 32) or range(1, 3), got {text!r} ({error})")
        if isinstance(value, IntervalSweep):
            kind = IntDistribution if isinstance(value.start, int) and isinstance(value.end, int) else FloatDistribution
            out[key] = kind(value.start, value.end, log="log" in value.tags)
        elif isinstance(value, RangeSweep) and all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            out[key] = IntDistribution(value.start, value.stop - value.step, step=value.step)
        elif isinstance(value, (ChoiceSweep, RangeSweep)):
            out[key] = CategoricalDistribution(list(value.list if isinstance(value, ChoiceSweep) else
                                                    parser.parse_override(f"{key}={text}").sweep_iterator()))
        else:
            raise ValueError(f"search.params.{key} must be a range of values to search: expected interval(...), "
                             f"range(...) or choice(...), got {text!r} (a fixed value belongs in search.overrides)")
    return out


def suggest(trial, name: str, distribution):
    """The trial's value of ``name`` from ``distribution`` (Optuna's ``suggest_*``; a queued retry's own value)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step,
                                 log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def _value(v) -> str:
    """A value as Hydra's override grammar reads it back."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_overrides(cfg: DictConfig, cell: str, params: dict, out: Path, tag: dict) -> list[str]:
    """The ``rnnlab.train`` overrides of one run of the study: its task and budget, the cell (the value of
    ``search.axis``, ``model.cell`` by default, then that value's own ``search.axis_overrides``, if any), the
    parameters, its folder and its ``study_trial`` tag (``{"study": ..., "cell": ..., "trial": n}``)."""
    search = cfg.search
    own = list((search.get("axis_overrides") or {}).get(str(cell), []))  # e.g. np: [model.peephole=false]
    return ([f"+experiment={search.experiment}", *search.overrides, f"{search.axis}={cell}", *own]
            + [f"{key}={_value(v)}" for key, v in params.items()] + [f"output_dir={out}"]
            + [f"+study_trial.{k}={_value(v)}" for k, v in tag.items()])


def train_run(overrides: list[str]) -> dict:
    """Compose the train config from ``overrides``, check that its budget is in steps or epochs, run it (in this
    process), and return its metrics; the run's own ``overrides.yaml`` lists them."""
    import yaml

    from rnnlab.train import train

    cfg = compose("train", overrides)
    if step_budget(cfg.trainer) is None:
        raise ValueError(f"a study's runs must end by a budget in steps or epochs: expected trainer.max_steps > 0 "
                         f"or trainer.max_epochs > 0 in search.overrides, got max_steps={cfg.trainer.max_steps}, "
                         f"max_epochs={cfg.trainer.max_epochs}")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))  # as `python -m rnnlab.train` writes it
    return train(cfg)


def storage(cfg: DictConfig):
    """Optuna's RDB storage of the study, with the heartbeat that fails and retries the trials of dead processes."""
    import sqlalchemy
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    study = cfg.study
    url = sqlalchemy.engine.make_url(study.storage)
    engine = {}
    if url.get_backend_name() == "sqlite":
        if url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": 60}}  # workers wait for each other's writes instead of failing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=Warning)  # ExperimentalWarning of the retry callback
        kwargs = dict(engine_kwargs=engine, heartbeat_interval=study.heartbeat_interval,
                      grace_period=study.grace_period,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=study.max_retry))
        try:
            return RDBStorage(study.storage, **kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError):  # two workers creating the tables of
            # a new file at the same moment: the file is locked, or both inserted alembic_version (the loser: UNIQUE)
            time.sleep(1.0)
            return RDBStorage(study.storage, **kwargs)


def cell_study(cfg: DictConfig, cell: str, rdb, load_only: bool = False):
    """The Optuna study of one cell, ``<study.name>/<cell>``, created on first use."""
    import optuna

    name = f"{cfg.study.name}/{cell}"
    if load_only:
        return optuna.load_study(study_name=name, storage=rdb)
    kind = getattr(optuna.samplers, str(cfg.study.sampler), None)
    if not (isinstance(kind, type) and issubclass(kind, optuna.samplers.BaseSampler)):
        raise ValueError(f"study.sampler must name a class of optuna.samplers: expected e.g. RandomSampler or "
                         f"TPESampler, got {cfg.study.sampler!r}")
    sampler = kind(**OmegaConf.to_container(cfg.study.sampler_args))
    return optuna.create_study(study_name=name, storage=rdb, sampler=sampler, direction=cfg.search.direction,
                               load_if_exists=True)


def finished(trial) -> bool:
    """A trial with a result: its run ended by its budget, or diverged (a result of its parameters too)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.COMPLETE or (trial.state == TrialState.FAIL and "diverged" in trial.user_attrs)


def taken(trial) -> bool:
    """A trial that counts toward its cell's number: finished, running, or waiting to be rerun."""
    from optuna.trial import TrialState

    return finished(trial) or trial.state in (TrialState.RUNNING, TrialState.WAITING)


@dataclass
class Progress:
    taken: int
    done: int  # finished
    waiting: int


def progress(study) -> Progress:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return Progress(sum(taken(t) for t in trials), sum(finished(t) for t in trials),
                    sum(t.state == TrialState.WAITING for t in trials))


def fail_stale(study) -> None:
    """Optuna's own: RUNNING trials whose heartbeat stopped become FAIL, and their parameters are queued again."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def objective(cfg: DictConfig, cell: str, study, distributions: dict):
    """The function Optuna's ``optimize`` calls for one trial of ``cell``: one rnnlab run, its metric the value."""
    import optuna

    search = cfg.search

    def run(trial) -> float:
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number and taken(t)]
        if len(before) >= search.trials:  # another worker asked at the same moment and got the last place
            trial.set_user_attr("surplus", True)
            raise optuna.TrialPruned(f"{cell} already has {search.trials} trials")
        params = {name: suggest(trial, name, d) for name, d in distributions.items()}
        out = Path(cfg.study.dir) / cell / TRIAL_DIR.format(trial.number)
        for key, value in (("run_dir", str(out)), ("pid", os.getpid()), ("host", socket.gethostname())):
            trial.set_user_attr(key, value)
        start = time.perf_counter()
        try:
            metrics = train_run(run_overrides(cfg, cell, params, out,
                                              {"study": cfg.study.name, "cell": cell, "trial": trial.number}))
        except FloatingPointError as error:  # the divergence stop: a result of these parameters, not an accident
            trial.set_user_attr("diverged", str(error))
            log.info("%s trial %d diverged: %s", cell, trial.number, error)
            raise
        if search.metric not in metrics:
            raise ValueError(f"search.metric must be a key of the runs' metrics.json: expected one of "
                             f"{sorted(k for k, v in metrics.items() if isinstance(v, float))}, got {search.metric!r}")
        value = float(metrics[search.metric])
        trial.set_user_attr("stopped_by", metrics.get("stopped_by"))
        trial.set_user_attr("steps", metrics.get("steps"))
        if not math.isfinite(value):
            trial.set_user_attr("diverged", f"{search.metric} = {value}")
            raise FloatingPointError(f"{cell} trial {trial.number}: {search.metric} = {value}")
        log.info("%s trial %d: %s = %.6g after %s steps (%s) in %.0f s, %s", cell, trial.number, search.metric, value,
                 metrics.get("steps"), metrics.get("stopped_by"), time.perf_counter() - start, out)
        return value

    return run


def work(cfg: DictConfig, poll_s: float | None = None) -> dict:
    """Run trials of the study's cells until every cell has ``search.trials`` of them finished or diverged; returns
    ``{cell: Progress}``. Other workers on the same storage share the trials; this one waits for theirs to end (or
    for a dead one's heartbeat to go stale, ``study.grace_period``) before it returns."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial from rnnlab instead
    search = cfg.search
    if not search.cells or search.trials < 1:
        raise ValueError(f"a study needs cells and trials: expected search.cells=[lstm,gru] and search.trials >= 1, "
                         f"got cells={list(search.cells)}, trials={search.trials}")
    distributions = space(search.params)
    rdb = storage(cfg)
    studies = {cell: cell_study(cfg, cell, rdb) for cell in search.cells}
    poll_s = poll_s if poll_s is not None else min(5.0, cfg.study.heartbeat_interval)
    while True:
        for study in studies.values():
            fail_stale(study)
        state = {cell: progress(study) for cell, study in studies.items()}
        open_cells = [c for c in search.cells if state[c].taken < search.trials or state[c].waiting]
        if open_cells:
            cell = min(open_cells, key=lambda c: state[c].taken - state[c].waiting)  # first listed among equals
            studies[cell].optimize(objective(cfg, cell, studies[cell], distributions), n_trials=1,
                                   catch=(FloatingPointError,))
        elif all(s.done >= search.trials for s in state.values()):
            return state
        else:  # the last trials run in other workers (or in dead ones, until their heartbeat is stale)
            time.sleep(poll_s)


def run_from_config(cfg: DictConfig, overrides: list[str]) -> None:
    """``python -m rnnlab.study run ...``: work on the study, then say where it stands and how to report it."""
    start = time.perf_counter()
    state = work(cfg)
    log.info("study %s: every cell has its %d trials (%s); this worker ran %.0f s. Report: python -m rnnlab.study "
             "report %s", cfg.study.name, cfg.search.trials, ", ".join(f"{c} {s.done}" for c, s in state.items()),
             time.perf_counter() - start, shlex.join(overrides))


def study_config(overrides: list[str]) -> DictConfig:
    cfg = compose("study", overrides)
    OmegaConf.resolve(cfg)
    return cfg
