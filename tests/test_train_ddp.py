"""Lightning's DDP on two CPU processes (gloo): the sharded loaders train, and test every review exactly once."""
import json
import os
import subprocess
import sys

import pytest

from helpers import make_imdb_archive


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    archive = make_imdb_archive(tmp / "imdb.tar.gz", n_per_class=25)  # 50 test reviews: batches of 8 split 4 + 3
    data = [f"+data.archive={archive}", f"+data.root={tmp / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(module, *args):
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]  # 134 was an abort at exit, before end_distributed
        return done

    cli("rnnlab.train", "+experiment=bilstm", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        *[d[1:] for d in data], "data.batch_size=8", "data.max_length=40", "model.embedding_dim=8",
        "model.hidden_size=4", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp / 'run'}")
    return tmp, data, cli


def test_ddp_training_writes_one_metrics_file(run):
    tmp, _, _ = run
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["test/acc"] <= 1 and metrics["grad/clipped_fraction"] == 0.0
    assert (tmp / "run" / "checkpoints" / "last.ckpt").exists()


def test_ddp_evaluation_equals_one_process_and_prints_once(run):
    tmp, data, cli = run
    ckpt = f"ckpt={tmp / 'run' / 'checkpoints' / 'last.ckpt'}"
    one = cli("rnnlab.evaluate", ckpt, *data, "trainer.enable_progress_bar=false")
    two = cli("rnnlab.evaluate", ckpt, *data, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
              "trainer.enable_progress_bar=false")
    assert two.stdout.count('"test/acc"') == 1  # rank 0 prints
    acc = [json.loads(out.stdout[out.stdout.index("{"):])["test/acc"] for out in (one, two)]
    assert acc[0] == acc[1]  # the two ranks together saw each of the 50 test reviews once
