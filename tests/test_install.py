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


def test_the_wheel_ships_every_config_inside_the_package(venv_python, tmp_path):
    out = run(venv_python, "-c", "import rnnlab, rnnlab.conf; print(rnnlab.__file__); print(rnnlab.conf.__file__)",
              cwd=tmp_path)
    package, conf = (Path(line) for line in out.split())
    assert REPO not in package.parents and conf.parent == package.parent / "conf"
    shipped = sorted(p.relative_to(conf.parent).as_posix() for p in conf.parent.rglob("*.yaml"))
    assert shipped == sorted(p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml"))


def test_an_installed_rnnlab_composes_its_configs_from_any_folder(venv_python, tmp_path):
    env_out = run(venv_python, "-m", "rnnlab.train", "--cfg", "job", "+experiment=bilstm", "model.hidden_size=[8,4]",
                  cwd=tmp_path)
    assert "_target_: rnnlab.models.module.SequenceClassifierModule" in env_out and "bidirectional: true" in env_out
    assert "_target_: lightning.pytorch.Trainer" in env_out and "KerasRMSprop" in env_out
    assert "_target_: lightning.pytorch.Trainer" in run(venv_python, "-m", "rnnlab.evaluate", "--cfg", "job",
                                                        "ckpt=run.ckpt", cwd=tmp_path)
    assert "ckpt: run.ckpt" in run(venv_python, "-m", "rnnlab.predict", "--cfg", "job", "ckpt=run.ckpt", cwd=tmp_path)
    assert not list(tmp_path.iterdir())  # composing wrote nothing
