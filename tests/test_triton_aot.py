"""The Triton kernels (persistent, column-split, per-step in 16 bits) compile for an H100 (sm_90) here, without a GPU.

The interpreter runs kernels as Python, so code that Triton's compiler rejects can pass every interpreted test: a
variable set before the time loop and re-assigned inside it with another type did (the compiler requires a loop's
variables to keep their type). `rnnlab.nn.backends.triton.aot` records the launches of each cell's forward and backward and
compiles them with Triton's own NVIDIA toolchain; it runs in a subprocess because this process imports triton with
TRITON_INTERPRET=1 (see conftest).
"""
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")
pytestmark = pytest.mark.triton


def _aot(*args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, "-m", "rnnlab.nn.backends.triton.aot", "--target", "cuda:90", *args], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("config,hidden,cells,dtypes", [  # the default kernels in make test, all in make test-all
    pytest.param("split_units=16", 48, "lstm,lstm_noforget,cifg,gru,rnn", "float32,float64",  # 3 programs a row block
                 marks=pytest.mark.slow),
    ("", 40, "lstm,cifg,gru,rnn", "float32"),  # the default kernels, 64-wide chunks (one partly masked)
    pytest.param("per-step", 40, "lstm,lstm_noforget,cifg,gru,rnn", "float16,bfloat16",  # exp, sqrt widened to fp32
                 marks=pytest.mark.slow),
], ids=["split", "default", "per-step-16-bit"])
def test_kernels_compile_for_sm90(config, hidden, cells, dtypes):
    mode = ["--per-step"] if config == "per-step" else ["--config", config]
    r = _aot(*mode, "--hidden", str(hidden), "--cells", cells, "--dtypes", dtypes, "--no-resources")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    n = 4 * len(cells.split(",")) * len(dtypes.split(","))  # fwd + bwd, padded + variable lengths
    assert f"{n} kernels compiled for cuda:90 (hidden {hidden}), 0 failed" in r.stdout


def test_refuses_to_run_interpreted():
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-m", "rnnlab.nn.backends.triton.aot"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "unset TRITON_INTERPRET" in r.stderr


def test_unknown_cell_is_one_clear_error_naming_the_registry_names():
    r = _aot("--cells", "lstm,lstm_nofg", "--no-resources")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "`--cells` must be a comma list of lstm, lstm_noforget, cifg, gru, rnn: got lstm_nofg" in r.stderr
