"""scripts/plot_phenomena.py sweep: one row per cell and T over its seeds, with the interval and the paired test."""
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("plot_phenomena", ROOT / "scripts" / "plot_phenomena.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, cell: str, seed: int, ratio: float) -> None:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {"seed": seed, "model": {"cell": cell}, "data": {"length": 50, "train_size": 100, "batch_size": 50}}))
    (folder / "metrics.json").write_text(json.dumps(
        {"steps": 3000, "test/loss_vs_baseline": ratio, "test/baseline_loss": 1 / 6, "val/baseline_loss": 1 / 6}))


def test_sweep_rows_group_seeds_with_their_interval_solved_count_and_paired_test(tmp_path, capsys):
    values = {"rnn": [0.01, 0.02, 0.03], "lstm": [0.02, 0.9, 0.04]}  # rnn comes before the reference
    job = 0
    for cell, ratios in values.items():
        for seed, r in enumerate(ratios, start=1):
            _run(tmp_path / "runs" / str(job), cell, seed, r)
            job += 1
    _module().sweep(tmp_path / "runs", str(tmp_path / "fig"), 0.1, "lstm")
    rows = {line.split(" | ")[0].strip("| "): line for line in capsys.readouterr().out.splitlines()}
    # rnn: mean 0.02, sd 0.01, t(0.975, 2) = 4.3027: 0.02 +- 0.024841; paired d = (-0.01, -0.88, -0.01): sd 0.50229, t = -1.0345, df 2, p = 0.4096
    assert "| rnn | 50 | 1 2 3 | 3000 | 0.0200 [-0.0048, 0.0448] | 0.010 / 0.020 / 0.030 | 3/3 |" in rows["rnn"]
    # Fisher's exact test of 3/3 solved against 2/3: p = 1 (every table at least as extreme)
    assert rows["rnn"].endswith("| -0.300, p = 0.41 | 3/3 vs 2/3, p = 1 |")
    assert "| 2/3 |" in rows["lstm"] and rows["lstm"].endswith("|  |  |")
    assert (tmp_path / "fig_loss.png").exists() and (tmp_path / "fig_grad.png").exists()
