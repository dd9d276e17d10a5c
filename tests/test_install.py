"""An installed rnnlab stands on its own: a wheel of the repository, installed into a fresh virtualenv outside the
checkout, composes the train, evaluate and predict configs from another folder, and builds the fused cells' C++ loops
from the source it ships (a fresh extension cache: the compile takes ~20-40 s of CPU) to the loop reference's numbers.

The new virtualenv reads rnnlab's dependencies (torch, Hydra, ...) from the environment that runs the tests, whatever
it is (the README's virtualenv, the machine's own Python, a conda-like prefix): a ``.pth`` file lists that
environment's site-packages folders. Those folders' own ``.pth`` files are not read from there, so the checkout's
editable install stays invisible, and the tests check that the rnnlab that runs is the installed wheel's."""
import os
import shutil
import site
import subprocess
import sys
import sysconfig
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


def running_site_packages() -> list[str]:
    """The folders the running interpreter imports installed packages from (a virtualenv's own, or the machine's, or a
    prefix's), in its order; never the checkout."""
    folders = [sysconfig.get_paths()[k] for k in ("purelib", "platlib")] + site.getsitepackages()
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    out = []
    for folder in folders:
        if os.path.isdir(folder) and folder not in out and Path(folder).resolve() != REPO:
            out.append(folder)
    return out


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    """The Python of a fresh virtualenv, with rnnlab's wheel installed and, for its dependencies, the running
    environment's packages (a ``.pth`` file: see the module's docstring)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCES)
    run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist",
        cwd=src)
    wheel, = (tmp / "dist").glob("rnnlab-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    # the wheel first: pip would take the running environment's rnnlab (editable, same version) for installed
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp)
    purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).strip()
    Path(purelib, "_running_environment.pth").write_text("".join(f"{f}\n" for f in running_site_packages()))
    return python


def test_the_fresh_environment_finds_the_dependencies_but_not_the_checkout(venv_python, tmp_path):
    where = run(venv_python, "-c", "import rnnlab, torch, hydra; print(rnnlab.__file__)", cwd=tmp_path).strip()
    assert Path(where).resolve().is_relative_to(venv_python.parents[1].resolve()), where


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


def compiler_missing() -> bool:
    from torch.utils.cpp_extension import get_cxx_compiler

    return shutil.which(get_cxx_compiler()) is None


@pytest.mark.skipif(compiler_missing(), reason="no C++ compiler: the fused cells run their Python loops")
@pytest.mark.parametrize("cache", [
    "shared",  # the build `make install` made (the shipped source hashes like the checkout's): loads in a second
    pytest.param("fresh", marks=pytest.mark.slow),  # an empty cache: compiles the shipped source (~20-40 s of CPU)
])
def test_an_installed_rnnlab_builds_its_cpp_loops_from_the_shipped_source_and_matches_loop(venv_python, tmp_path,
                                                                                          cache):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RNNLAB_FUSED_PRETEND")}
    env["RNNLAB_FUSED_EXT"] = "wait"
    if cache == "fresh":
        env["TORCH_EXTENSIONS_DIR"] = str(tmp_path / "ext")
    done = subprocess.run([str(venv_python), "-c", FUSED, str(venv_python.parents[1])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "max abs difference fused (C++) vs loop" in done.stdout
    if cache == "fresh":
        assert list((tmp_path / "ext").glob("rnnlab_fused_*/READY"))
