"""rnnlab.nn's LSTM, GRU, RNN and cells pass the checks PyTorch's module tests make, on PyTorch's own sample inputs,
reference functions and error inputs (torch.testing._internal.common_modules.module_db): scripts/dropin_check.py."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "dropin_check.py"


@pytest.mark.slow
def test_every_module_db_check_that_passes_on_torch_nn_passes_on_rnnlab_with_both_backends():
    """~2.5 minutes on the 2-core machine: both backends, float64 and float32, LSTM/GRU/RNN and the three cells."""
    pytest.importorskip("expecttest", reason="torch's test utilities import expecttest (pip install -e '.[dev]')")
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0 and "failed: 0" in done.stdout, done.stdout[-5000:] + done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:1] in (["LSTM"], ["GRU"], ["RNN"])]
    assert sorted((r[0], r[1]) for r in rows) == sorted((m, b) for m in ("LSTM", "GRU", "RNN") for b in ("fused", "loop"))
