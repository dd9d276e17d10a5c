"""Lightning's DDP on two CPU processes (gloo): sharded training, exact mid-epoch resume, every test review once."""
import json
import os
import subprocess
import sys

import pytest
import torch

from helpers import make_imdb_archive


TRAIN = ["+experiment=bilstm", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data.batch_size=4",
         "data.max_length=40", "model.embedding_dim=8", "model.hidden_size=4", "trainer.max_epochs=2",
         "trainer.enable_progress_bar=false"]  # 40 training reviews: 10 batches, 5 per rank and epoch


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    archive = make_imdb_archive(tmp / "imdb.tar.gz", n_per_class=25)  # 50 test reviews: 13 batches, split 7 + 6
    data = [f"+data.archive={archive}", f"+data.root={tmp / 'cache'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(module, *args):
        done = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]  # 134 was an abort at exit, before end_distributed
        return done

    def train(name, *args):
        cli("rnnlab.train", *TRAIN, *[d[1:] for d in data], f"hydra.run.dir={tmp / name}", *args)
        return json.loads((tmp / name / "metrics.json").read_text())

    return tmp, data, cli, train


@pytest.fixture(scope="module")
def full(run):
    tmp, _, _, train = run
    return train("full")


def test_ddp_training_writes_one_metrics_file(run, full):
    tmp = run[0]
    assert full["epochs"] == 2 and full["steps"] == 10 and 0 <= full["test/acc"] <= 1
    assert full["grad/clipped_fraction"] == 0.0 and (tmp / "full" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow  # a resume in one process is tested in test_resume.py; this one adds the sharded sampler's state
def test_ddp_resumed_mid_epoch_ends_like_an_uninterrupted_run(run, full):
    tmp, _, _, train = run
    step = ["+callbacks.steps._target_=lightning.pytorch.callbacks.ModelCheckpoint", "+callbacks.steps.every_n_train_steps=3",
            "+callbacks.steps.filename='step{step}'", "+callbacks.steps.auto_insert_metric_name=false",
            "+callbacks.steps.dirpath=${output_dir}/checkpoints"]
    train("cut", "trainer.max_steps=3", "test=false", *step)  # a checkpoint at step 3 of 5 in epoch 0
    resumed = train("cut", f"ckpt_path={tmp / 'cut' / 'checkpoints' / 'step3.ckpt'}")
    assert resumed["steps"] == full["steps"]
    for key in ("val/loss", "train/loss", "test/acc"):
        assert resumed[key] == full[key], key  # the resumed epoch skipped the 3 batches already trained on
    a, b = (torch.load(tmp / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"] for name in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_evaluation_equals_one_process_and_prints_once(run, full):
    tmp, data, cli, _ = run
    ckpt = f"ckpt={tmp / 'full' / 'checkpoints' / 'last.ckpt'}"
    one = cli("rnnlab.evaluate", ckpt, *data, "trainer.enable_progress_bar=false")
    two = cli("rnnlab.evaluate", ckpt, *data, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
              "trainer.enable_progress_bar=false")
    assert two.stdout.count('"test/acc"') == 1  # rank 0 prints
    acc = [json.loads(out.stdout[out.stdout.index("{"):])["test/acc"] for out in (one, two)]
    assert acc[0] == acc[1]  # the two ranks together saw each of the 50 test reviews once
