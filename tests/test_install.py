"""An installed rnnlab stands on its own: a wheel of the repository, installed into a fresh virtualenv outside the
checkout, composes the train, evaluate and predict configs from another folder, and builds the fused cells' C++ loops
from the source it ships (a fresh extension cache: the compile takes ~20-40 s of CPU) to the loop reference's numbers."""
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


FUSED = r"""
import os, sys
import torch
import rnnlab
from rnnlab.nn.backends import cpp, fused, loop

venv = sys.argv[1]
assert os.path.realpath(rnnlab.__file__).startswith(os.path.realpath(venv)), rnnlab.__file__
ops = cpp.loops()
assert ops is not None, "the C++ loops did not build"
assert os.path.realpath(cpp.SOURCES[0]).startswith(os.path.realpath(venv)), cpp.SOURCES
g = torch.Generator().manual_seed(0)
T, B, I, H = 5, 4, 3, 6
worst = 0.0
for cell, G in (("lstm", 4), ("cifg", 3), ("gru", 3), ("rnn", 1)):
    args = [torch.randn(T, B, I, generator=g, dtype=torch.float64), torch.randn(B, H, generator=g, dtype=torch.float64),
            torch.randn(B, H, generator=g, dtype=torch.float64) if cell in ("lstm", "cifg") else None,
            torch.randn(G * H, I, generator=g, dtype=torch.float64), torch.randn(G * H, H, generator=g, dtype=torch.float64),
            torch.randn(G * H, generator=g, dtype=torch.float64), torch.randn(G * H, generator=g, dtype=torch.float64)]
    args = [a.requires_grad_() if a is not None else None for a in args]
    leaves = [a for a in args if a is not None]
    results = []
    for backend in (loop, fused):
        out, h_n, _ = backend.run_layer(cell, *args, torch.tensor([5, 3, 1, 5]), True)
        results.append([out, *torch.autograd.grad((out * out.detach().cos()).sum() + h_n.sum(), leaves)])
    worst = max(worst, max((a - b).abs().max().item() for a, b in zip(*results)))
assert fused.loops() is ops
print("max abs difference fused (C++) vs loop:", worst)
assert worst <= 1e-10
"""



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


def test_an_installed_rnnlab_builds_its_cpp_loops_from_the_shipped_source_and_matches_loop(venv_python, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RNNLAB_FUSED_PRETEND")}
    env.update(RNNLAB_FUSED_EXT="wait", TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    done = subprocess.run([str(venv_python), "-c", FUSED, str(venv_python.parents[1])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "max abs difference fused (C++) vs loop" in done.stdout
    assert list((tmp_path / "ext").glob("rnnlab_fused_*/READY"))
