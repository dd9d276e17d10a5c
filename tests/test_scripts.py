"""The benchmark scripts the README quotes run end to end (on tiny sizes: these are smoke tests, never timings)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_imdb_archive

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def script(name, *args, cwd=None):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=300, env=ENV, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_bench_cells_times_every_row_against_torch_and_writes_json(tmp_path):
    out = script("bench_cells.py", "--hidden", "8", "--batch", "2", "--steps", "5", "--dirs", "uni,bi", "--lens", "pad,var",
                 "--repeats", "1", "--cells", "lstm,gru,cifg", "--json", str(tmp_path / "b.json"))
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert len(rows) == 3 * 2 * 2 and all(r["torch_ms"] > 0 and r["fused_ms"] > 0 for r in rows)
    assert "ratio to torch.nn per cell and backend" in out and "lstm  fused       median" in out


def test_bench_data_runs_every_pipeline_on_a_small_archive(tmp_path):
    archive = make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=6)
    out = script("bench_data.py", "--archive", str(archive), "--root", str(tmp_path / "root"), "--repeat", "1")
    assert "reference" in out and "bucketing saves" in out


def test_bench_diagnostics_refuses_a_ratio_from_a_run_too_short_to_measure():
    out = script("bench_diagnostics.py", "--steps", "4", "--every-n-steps", "2", "--batch-size", "4", "--max-length",
                 "20", "--compute-batches", "2")
    assert "recording in forward+backward" in out
    # it printed -497% before; a line is either a ratio or "not measurable", whichever the machine's speed gives
    percents = [float(v) for v in re.findall(r"overhead \(probe=\d+\): (-?[\d.]+)%", out)]
    assert len(percents) + out.count("overhead: not measurable") == 2, out  # the wall clock's and the CPU's
    assert all(v >= 0 for v in percents)


def linear_baseline(tmp_path, *args) -> str:
    """scripts/linear_baseline.py's output on a tiny archive, through the experiments' data pipeline."""
    archive = make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=12)
    env = {**ENV, "RNNLAB_IMDB_ARCHIVE": str(archive), "RNNLAB_DATA": str(tmp_path / "root")}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "linear_baseline.py"), *args, "data.val_block=1"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_linear_baseline_fits_both_models_on_the_experiments_splits_with_exact_and_hashed_pairs(tmp_path):
    out = linear_baseline(tmp_path, "--buckets", "0", "64", "--steps", "25")
    rows = re.findall(r"^(binary|nb) +words \+ (exact pairs|64 hashed pair rows) .*val ([\d.]+) +test ([\d.]+)", out, re.M)
    assert [r[:2] for r in rows] == [("binary", "exact pairs"), ("nb", "exact pairs"), ("binary", "64 hashed pair rows"),
                                     ("nb", "64 hashed pair rows")], out
    assert all(0 <= float(v) <= 1 for r in rows for v in r[2:])


@pytest.mark.slow  # fit_minibatch itself: test_linear_baseline_trained_in_batches_learns_a_separable_toy
def test_linear_baseline_trains_hashed_pairs_in_batches_for_the_epochs_asked(tmp_path):
    out = linear_baseline(tmp_path, "--buckets", "64", "--epochs", "2", "--batch-size", "4", "--alpha", "300")
    epochs = re.findall(r"^(binary|nb) +words \+ 64 hashed pair rows, batches of 4 at lr 0.01: epoch (\d) val [\d.]+",
                        out, re.M)
    assert epochs == [("binary", "1"), ("binary", "2"), ("nb", "1"), ("nb", "2")], out


def test_linear_baseline_trained_in_batches_learns_a_separable_toy():
    import torch

    linear = load_script("linear_baseline")
    reviews = torch.arange(8)  # review i has feature i % 2 (its label) and feature 2 + i (its own); none has 10
    rows = reviews.repeat_interleave(2)
    cols = torch.stack([reviews % 2, 2 + reviews], 1).flatten()
    X = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(16), (8, 11)).coalesce()
    y = (reviews % 2).float()
    accs = linear.fit_minibatch((X, y), (X, y), (X, y), torch.ones(11), epochs=30, batch_size=2, lr=0.1)
    assert len(accs) == 30 and accs[-1] == (1.0, 1.0)  # untrained (all weights 0) it would be 0.5


def load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
