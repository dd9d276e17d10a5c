"""A wheel built from the repository ships the C++ source, and an install of it outside the checkout builds the
fused cells' C++ loops and runs them to the loop reference's numbers.

`pip wheel . --no-deps --no-build-isolation`, installed into a fresh virtualenv (`--system-site-packages`, so torch
is not installed again) and run from a folder outside the checkout, with a fresh extension cache: the compile alone
takes ~20-40 s of CPU, hence `slow`.
"""
import glob
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK = r"""
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


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_installed_outside_the_checkout_builds_the_cpp_loops_and_matches_loop(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(dist)], check=True, cwd=tmp_path)
    (wheel,) = glob.glob(str(dist / "rnnlab-*.whl"))
    assert "rnnlab/nn/backends/csrc/fused_loops.cpp" in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    # --ignore-installed: the checkout's own editable install is visible through --system-site-packages; it is left
    # alone (nothing is uninstalled) and the venv's copy comes first on the path
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel], check=True, cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RNNLAB_FUSED_PRETEND")}
    env.update(RNNLAB_FUSED_EXT="wait", TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    r = subprocess.run([python, "-c", CHECK, str(venv)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "max abs difference fused (C++) vs loop" in r.stdout
    assert glob.glob(str(tmp_path / "ext" / "rnnlab_fused_*" / "READY"))
