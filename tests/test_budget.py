"""Budgets in steps: every experiment ends by steps or epochs, and metrics.json says what ended a run."""
from pathlib import Path

import pytest
from helpers import compose_train, tiny_synthetic

import rnnlab.conf
from rnnlab.budget import max_time_seconds, step_budget
from rnnlab.train import train

EXPERIMENTS = sorted(p.stem for p in (Path(rnnlab.conf.__file__).parent / "experiment").glob("*.yaml"))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_ends_by_steps_or_epochs_and_max_time_is_at_most_a_safety_net_of_an_hour(experiment):
    trainer = compose_train(f"+experiment={experiment}").trainer
    assert step_budget(trainer) is not None
    limit = max_time_seconds(trainer.get("max_time"))
    assert limit is None or limit >= 3600


@pytest.mark.parametrize("overrides, reason, steps", [
    (["trainer.max_steps=3"], "max_steps", 3),
    (["trainer.max_steps=-1", "trainer.max_epochs=1"], "max_epochs", 4),  # 40 sequences in batches of 10
    (["trainer.max_time=00:00:00:00"], "max_time", 0),  # Lightning's Timer: out of time before the first step
])
def test_metrics_json_says_whether_the_budget_or_the_wall_clock_ended_the_run(tmp_path, overrides, reason, steps):
    metrics = train(compose_train(*tiny_synthetic(tmp_path), *overrides))
    assert (metrics["stopped_by"], metrics["steps"]) == (reason, steps)


def test_max_time_reads_every_form_lightning_takes():
    assert max_time_seconds("01:00:00:30") == 86430.0
    assert max_time_seconds({"hours": 2}) == 7200.0
