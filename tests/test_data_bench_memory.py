"""scripts/bench_memory.py runs the main job under a peak-RSS measurement (a smoke test on a tiny archive, no timing)."""
import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import make_imdb_archive

ROOT = Path(__file__).resolve().parents[1]


def test_bench_memory_prints_peak_rss_beside_epoch_times_and_test_accuracy(tmp_path):
    archive = make_imdb_archive(tmp_path / "imdb.tar.gz", n_per_class=12)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RNNLAB_IMDB_ARCHIVE": str(archive), "RNNLAB_DATA": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_memory.py"), "--epochs", "1", "--json",
                           str(tmp_path / "runs.json"), "--", "model.embedding_dim=8", "model.hidden_size=4",
                           "data.batch_size=4"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert "peak RSS" in done.stdout and "epoch times" in done.stdout and "test acc" in done.stdout
    (run,) = json.loads((tmp_path / "runs.json").read_text())
    assert run["peak_mb"] > 50 and len(run["epoch_times_s"]) == 1 and run["test_acc"] is not None
