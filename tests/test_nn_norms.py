"""Recorded gradient norms stay exact where float32 squares underflow, on every backend, with denormals flushed.

With ``torch.set_flush_denormal(True)`` (rnnlab's default on CPU) a float32 entry of 1e-20 squares to 1e-40, a
denormal flushed to zero: a sum of float32 squares reads a gradient of such entries as norm 0. The recorded
||dJ/dh_t|| (every backend) and ||dJ/dx_t|| (EmbeddingGradNorm) must read its true norm, here within 1e-6 relative,
for entries down to the smallest normal float32. Triton kernels run under TRITON_INTERPRET=1 without a GPU (numpy in
this thread, so the flush applies to them too).
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from rnnlab.diagnostics.gradients import EmbeddingGradNorm  # noqa: E402
from rnnlab.nn.backends import cpp, fused, loop  # noqa: E402
from rnnlab.nn.norms import grad_norm  # noqa: E402

TINY = [1e-20, 1e-30, 1.2e-38]  # squares: 1e-40, 1e-60, ~1.4e-76, all below float32's smallest normal (~1.18e-38)
T, B, I = 3, 2, 3


@pytest.fixture
def flushed():
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals (no SSE3)")
    yield
    torch.set_flush_denormal(False)


@pytest.mark.parametrize("value", TINY)
def test_float32_sum_of_squares_reads_zero_where_grad_norm_is_exact(value, flushed):
    g = torch.full((3, 32), value)
    assert torch.linalg.vector_norm(g, dim=-1).max() == 0  # the underflow this guards against
    want = value * 32 ** 0.5
    got = grad_norm(g)
    assert got.dtype == torch.float32
    assert ((got.double() - want).abs() / want).max() <= 1e-6


def test_grad_norm_into_out_and_over_a_dim():
    g = torch.tensor([[3.0, 4.0], [6.0, 8.0]], dtype=torch.float64)
    out = torch.empty(2, dtype=torch.float32)
    assert grad_norm(g, dim=1, out=out) is out
    assert out.tolist() == [5.0, 10.0]
    assert grad_norm(g, dim=0).tolist() == pytest.approx([45 ** 0.5, 80 ** 0.5])


def _python_loops(monkeypatch):
    monkeypatch.setattr(fused, "loops", lambda: fused.PythonLoops)
    return fused


def _cpp_loops(monkeypatch):
    monkeypatch.setenv("RNNLAB_FUSED_EXT", "wait")
    ops = cpp.loops()
    if ops is None:
        pytest.skip("the C++ extension could not be built here (no compiler?)")
    monkeypatch.setattr(fused, "loops", lambda: ops)
    return fused


def _triton(monkeypatch, H, persistent, split_units=0):
    pytest.importorskip("triton")
    from rnnlab.nn.backends import triton as triton_backend
    from rnnlab.nn.backends.triton import persistent as tp

    monkeypatch.setattr(tp, "ENABLED", persistent)
    monkeypatch.setattr(tp, "CONFIG", dict(tp.CONFIG, block_b=16, block_n=16, block_k=16, split_units=split_units))
    tp.FAILED.clear()
    return triton_backend


# (backend id, hidden size, how to select it); triton: per-step below 16 units, persistent from 16, split with units
BACKENDS = {
    "loop": (4, lambda mp: loop),
    "fused-python": (4, _python_loops),
    "fused-cpp": (4, _cpp_loops),
    "triton-step": (4, lambda mp: _triton(mp, 4, persistent=False)),
    "triton-persistent": (16, lambda mp: _triton(mp, 16, persistent=True)),
    "triton-split": (32, lambda mp: _triton(mp, 32, persistent=True, split_units=16)),
}


@pytest.mark.parametrize("value", TINY[:2])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("name", list(BACKENDS))
def test_recorded_norm_of_a_tiny_gradient_is_its_true_norm(name, cell, value, flushed, monkeypatch):
    """dJ/dh at the last step is exactly the output gradient there (nothing comes back from later steps): entries
    of `value` in row 0, of 3 * `value` in row 1, so ||dJ/dh_{T-1}|| = value * sqrt(H) and 3 * value * sqrt(H)."""
    H, select = BACKENDS[name]
    if name.startswith("triton") and cell != "lstm":
        pytest.skip("one cell per Triton variant keeps the interpreter's time down; test_triton*.py cover the rest")
    backend = select(monkeypatch)
    G = {"lstm": 4, "gru": 3, "rnn": 1}[cell]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, I, generator=g, requires_grad=True)
    w_ih = (torch.randn(G * H, I, generator=g) * 0.5).requires_grad_()
    w_hh = (torch.randn(G * H, H, generator=g) * 0.5).requires_grad_()
    h0 = torch.zeros(B, H)
    c0 = torch.zeros(B, H) if cell == "lstm" else None
    norms = torch.zeros(B, T)
    out, h_n, c_n = backend.run_layer(cell, x, h0, c0, w_ih, w_hh, None, None, None, False, grad_norms=norms)
    gout = torch.zeros(T, B, H)
    gout[T - 1, 0], gout[T - 1, 1] = value, 3 * value
    torch.autograd.backward(out, gout)
    want = torch.tensor([value, 3 * value], dtype=torch.float64) * H ** 0.5
    got = norms[:, T - 1].double()
    assert ((got - want).abs() / want).max() <= 1e-6, (got, want)
    assert (norms[:, : T - 1] > 0).all()  # the earlier steps' gradients (~value) are not read as 0 either


@pytest.mark.parametrize("value", TINY[:2])
def test_embedding_grad_norm_of_a_tiny_gradient_is_its_true_norm(value, flushed):
    emb = torch.nn.Embedding(5, 8)
    with EmbeddingGradNorm(emb) as rec:
        y = emb(torch.tensor([[1, 2, 3]]))  # (1, 3, 8)
        (y * value).sum().backward()
    want = value * 8 ** 0.5
    assert ((rec.norms.double() - want).abs() / want).max() <= 1e-6
