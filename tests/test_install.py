"""An installed rnnlab finds its configs: a wheel of the repository, installed into a fresh virtualenv outside the
checkout, composes the train, evaluate and predict configs from another folder."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what a build reads: the tracked sources, not outputs, caches or a stale build/ folder (whose files would ship)
NOT_SOURCES = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "outputs",
                                     "multirun", "lightning_logs", "*.ckpt", ".venv")


def run(*args, cwd) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed rnnlab, not a checkout's
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    """The Python of a fresh virtualenv (on top of this one's packages, for torch) with rnnlab's wheel installed."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCES)
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist",
        cwd=src)
    wheel, = (tmp / "dist").glob("rnnlab-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--no-deps", "-q", wheel, cwd=tmp)  # pip of the base Python, into the venv
    return python


SHOW = """
import rnnlab, rnnlab.conf
from hydra import compose, initialize_config_module
print(rnnlab.__file__)
print(rnnlab.conf.__file__)
with initialize_config_module("rnnlab.conf", version_base="1.3"):
    print(compose("evaluate", overrides=["ckpt=run.ckpt"]).trainer._target_)
    print(compose("predict", overrides=["ckpt=run.ckpt"]).ckpt)
"""


def test_the_wheel_ships_every_config_inside_the_package(venv_python, tmp_path):
    package, conf, trainer, ckpt = run(venv_python, "-c", SHOW, cwd=tmp_path).split()
    package, conf = Path(package), Path(conf)
    assert REPO not in package.parents and conf.parent == package.parent / "conf"
    shipped = sorted(p.relative_to(conf.parent).as_posix() for p in conf.parent.rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))
    assert (trainer, ckpt) == ("lightning.pytorch.Trainer", "run.ckpt")  # the evaluate and predict configs compose


def test_an_installed_rnnlab_train_composes_its_config_from_any_folder(venv_python, tmp_path):
    out = run(venv_python, "-m", "rnnlab.train", "--cfg", "job", "+experiment=bilstm", "model.hidden_size=[8,4]",
              cwd=tmp_path)
    assert "_target_: rnnlab.models.module.SequenceClassifierModule" in out and "bidirectional: true" in out
    assert "_target_: lightning.pytorch.Trainer" in out and "KerasRMSprop" in out and "- 8" in out
    assert not list(tmp_path.iterdir())  # composing wrote nothing
