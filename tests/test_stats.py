"""Seeds as an axis: intervals and tests checked against values worked out by hand, and the summary that uses them.

The numbers below come from the formulas and a t table, not from scipy:

* t quantiles (two-sided 95 %): t_{0.975, 2} = 4.3027, t_{0.975, 4} = 2.7764.
* Student's t CDF in closed form: for 2 degrees of freedom F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so the two-sided
  p = 1 - t / sqrt(2 + t^2); for 4, F(t) = 1/2 + (3/8) u (1 - u^2 / 12) with u = t / sqrt(1 + t^2 / 4), the
  two-sided p = 2 (1 - F(t)).
"""
import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from rnnlab import budget, stats

ROOT = Path(__file__).resolve().parents[1]

GRU = {1: 0.80, 2: 0.82, 3: 0.84}   # mean 0.82, s = 0.02
LSTM = {1: 0.78, 2: 0.79, 3: 0.83}  # mean 0.80, deviations (-0.02, -0.01, 0.03): s = sqrt(0.0014 / 2) = 0.026458
RNN = {4: 0.68, 5: 0.69, 6: 0.73}   # LSTM - 0.10, other seeds: mean 0.70, s = 0.026458


def test_the_interval_is_the_mean_plus_or_minus_the_t_quantile_times_the_standard_error():
    s = stats.summarize_seeds(GRU.values())
    # 0.82 +- 4.3027 * 0.02 / sqrt(3) = 0.82 +- 0.049683
    assert (s.n, s.mean, s.sd) == (3, pytest.approx(0.82), pytest.approx(0.02))
    assert (s.low, s.high) == (pytest.approx(0.770317, abs=2e-6), pytest.approx(0.869683, abs=2e-6))
    s = stats.summarize_seeds(LSTM.values())  # 0.80 +- 4.3027 * 0.026458 / sqrt(3) = 0.80 +- 0.065725
    assert (s.low, s.high) == (pytest.approx(0.734275, abs=2e-6), pytest.approx(0.865725, abs=2e-6))
    s = stats.summarize_seeds([1.0, 2.0, 3.0, 4.0, 5.0])  # s = sqrt(2.5); 3 +- 2.7764 * 1.5811 / sqrt(5) = 3 +- 1.9632
    assert (s.low, s.high) == (pytest.approx(1.0368, abs=1e-4), pytest.approx(4.9632, abs=1e-4))


def test_one_run_has_a_mean_but_no_spread_no_interval_and_no_test():
    s = stats.summarize_seeds([0.5])
    assert s.mean == 0.5 and math.isnan(s.sd) and math.isnan(s.low) and math.isnan(s.high)
    assert stats.compare([(1, 0.5)], LSTM.items()) is None
    with pytest.raises(ValueError, match="at least one value"):
        stats.summarize_seeds([])


def test_groups_that_ran_the_same_seeds_are_compared_by_a_paired_t_test():
    # d = GRU - LSTM by seed = (0.02, 0.03, 0.01): mean 0.02, s_d = 0.01, t = 0.02 / (0.01 / sqrt 3) = 3.4641, df 2
    # p = 1 - 3.4641 / sqrt(2 + 12) = 1 - 0.92582 = 0.07418
    c = stats.compare(GRU.items(), reversed(list(LSTM.items())))  # matched by seed, not by position
    assert c.test == "paired" and c.df == 2
    assert (c.diff, c.t, c.p) == (pytest.approx(0.02), pytest.approx(3.4641, abs=1e-4), pytest.approx(0.07418, abs=1e-5))


def test_groups_with_other_seeds_are_compared_by_welchs_test():
    # se = sqrt(0.0007 / 3 + 0.0007 / 3) = 0.021602, t = 0.10 / 0.021602 = 4.6291; equal variances and sizes: the
    # Welch-Satterthwaite df = (2v)^2 / (2 v^2 / 2) = 4; u = 4.6291 / sqrt(1 + 21.4286 / 4) = 1.83597,
    # F = 1/2 + 3/8 * 1.83597 * (1 - 3.37079 / 12) = 0.995093, p = 0.009814
    c = stats.compare(LSTM.items(), RNN.items())
    assert c.test == "welch"
    assert (c.diff, c.t, c.df, c.p) == (pytest.approx(0.10), pytest.approx(4.6291, abs=1e-4), pytest.approx(4.0),
                                        pytest.approx(0.009814, abs=2e-6))
    repeated = stats.compare([(1, 0.80), (1, 0.82), (2, 0.84)], [(1, 0.78), (2, 0.79), (2, 0.83)])
    assert repeated.test == "welch"  # a seed run twice: no pairing


def test_runs_that_differ_only_in_their_seed_and_what_follows_it_form_one_group():
    configs = [stats.flatten({"seed": s, "output_dir": f"/runs/{i}", "data": {"seed": s, "length": 50},
                              "model": {"cell": cell, "step_seed": s},
                              "callbacks": {"ckpt": {"dirpath": f"/runs/{i}/checkpoints"},
                                            "log_hparams": {"settings": {"cell": cell}}}})  # a copy: no label
               for i, (cell, s) in enumerate([("gru", 1), ("gru", 2), ("lstm", 1), ("gru", 3), ("lstm", 2)])]
    assert stats.seed_groups(configs) == ([0, 0, 1, 0, 1], ["model.cell"])


def test_the_docstring_examples_of_stats_and_budget_run():
    import doctest

    for module in (stats, budget):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def _summarize():
    import importlib.util

    spec = importlib.util.spec_from_file_location("summarize", ROOT / "scripts" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(folder: Path, cell: str, seed: int, acc: float, stopped_by: str | None = "max_steps", steps=3000):
    folder.mkdir(parents=True)
    config = {"seed": seed, "output_dir": str(folder), "data": {"seed": seed, "length": 50},
              "model": {"cell": cell, "num_layers": 1, "hidden_size": 64},
              "trainer": {"default_root_dir": str(folder), "max_steps": 3000, "max_time": "00:00:01:30"}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"test/acc": acc, "test/loss": 1 - acc, "steps": steps, "epoch_times_s": [1.0]}
    if stopped_by is not None:
        metrics["stopped_by"] = stopped_by
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_summary_gives_each_group_of_seeds_its_interval_and_its_test_against_the_reference(tmp_path, capsys):
    job = 0
    for cell, values in (("gru", GRU), ("lstm", LSTM), ("rnn", RNN)):
        for seed, acc in values.items():
            write_run(tmp_path / str(job), cell, seed, acc)
            job += 1
    _summarize().main([str(tmp_path), "--reference", "model.cell=lstm", "--metric", "test_acc"])
    rows = {r["model.cell"]: r for r in csv.DictReader(open(tmp_path / "summary_seeds.csv"))}
    assert {c: (r["n"], r["seeds"], r["test"]) for c, r in rows.items()} == {
        "gru": ("3", "1 2 3", "paired"), "lstm": ("3", "1 2 3", ""), "rnn": ("3", "4 5 6", "welch")}
    assert float(rows["gru"]["ci95_low"]) == pytest.approx(0.770317, abs=2e-6)
    assert float(rows["gru"]["p"]) == pytest.approx(0.07418, abs=1e-5)
    assert float(rows["rnn"]["p"]) == pytest.approx(0.009814, abs=2e-6) and float(rows["rnn"]["df"]) == pytest.approx(4)
    text = (tmp_path / "summary.md").read_text()
    assert "## Seeds" in text and "| gru | 3 | 1 2 3 | 0.8200 | 0.0200 | [0.7703, 0.8697] | model.cell=lstm | paired" in text
    assert "Wall-clock" not in text
    assert (tmp_path / "summary_seeds.png").stat().st_size > 1000 and (tmp_path / "summary.png").exists()


def test_summary_flags_runs_the_wall_clock_ended_and_says_the_table_mixes_them(tmp_path):
    write_run(tmp_path / "0", "gru", 1, 0.9)
    write_run(tmp_path / "1", "gru", 2, 0.6, stopped_by="max_time", steps=810)
    write_run(tmp_path / "2", "lstm", 1, 0.5, stopped_by=None, steps=810)  # written before stopped_by: inferred
    summarize = _summarize()
    summarize.main([str(tmp_path)])
    text = (tmp_path / "summary.md").read_text()
    assert text.startswith("**Wall-clock budget: trainer.max_time ended 2 of 3 runs, not their step or epoch budget**")
    assert "not comparable with the complete runs'" in text
    assert [r["stopped_by"] for r in summarize.collect(tmp_path)] == ["max_steps", "max_time", "max_time?"]
    assert "| **max_time** |" in text and "| **max_time?** |" in text
    assert "| gru | 2 (1 **max_time**) |" in text  # the group of seeds says it holds one


def test_summary_refuses_a_reference_that_is_no_setting_of_the_runs_in_one_line(tmp_path, capsys):
    write_run(tmp_path / "0", "gru", 1, 0.9)
    with pytest.raises(SystemExit) as exit_:
        _summarize().main([str(tmp_path), "--reference", "model.celll=lstm"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: --reference must name a setting") and err.count("\n") == 1


def test_the_run_table_keeps_four_decimals_of_a_ratio_above_one(tmp_path):
    """A loss 1.0571 times the baseline was printed as 1.1, and 0.9936 beside it kept its four decimals."""
    fmt = _summarize()._fmt
    assert [fmt(v) for v in (0.9936, 1.0571, 1.0, 25.73, 4.9e14, 0.00011)] == [
        "0.9936", "1.0571", "1.0000", "25.7", "4.9e+14", "0.00011"]


def test_reference_experiment_compares_each_recipe_with_the_reference_recipe_over_the_same_seeds(tmp_path):
    """`-m +experiment=bilstm,lstm,gru seed=1,2,3`: the recipes differ in settings they fix (bidirectional), which
    come with the experiment; the test pairs each with bilstm on the seeds."""
    job = 0
    for experiment, cell, bidirectional, values in (("bilstm", "lstm", True, LSTM), ("lstm", "lstm", False, GRU),
                                                    ("gru", "gru", False, LSTM)):
        for seed in (1, 2, 3):
            folder = tmp_path / str(job)
            write_run(folder, cell, seed, values.get(seed, 0.0))
            config = yaml.safe_load((folder / "config.yaml").read_text())
            config["model"]["bidirectional"] = bidirectional
            (folder / "config.yaml").write_text(yaml.safe_dump(config))
            (folder / "overrides.yaml").write_text(yaml.safe_dump([f"+experiment={experiment}", f"seed={seed}"]))
            job += 1
    _summarize().main([str(tmp_path), "--reference", "experiment=bilstm", "--metric", "test_acc"])
    rows = {r["experiment"]: r for r in csv.DictReader(open(tmp_path / "summary_seeds.csv"))}
    assert set(rows["lstm"]) >= {"experiment", "n", "p"} and "model.bidirectional" not in rows["lstm"]
    assert (rows["lstm"]["reference"], rows["lstm"]["test"]) == ("experiment=bilstm", "paired")
    assert float(rows["lstm"]["p"]) == pytest.approx(0.07418, abs=1e-5)  # GRU's values against LSTM's, as above
    assert rows["gru"]["test"] == "paired" and float(rows["gru"]["diff"]) == pytest.approx(0.0)
    assert rows["bilstm"]["test"] == ""
