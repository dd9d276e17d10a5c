"""The per-step Triton loops equal the loop reference (float64, <= 1e-10).

Without CUDA the kernels run under the Triton interpreter on CPU tensors (TRITON_INTERPRET=1, set here at import
before any kernel is made, as conftest does), so CI checks every kernel without a GPU; with CUDA the same tests
run them compiled on the GPU. hidden 4 is below the persistent kernels' minimum of 16, so `backend='triton'`
runs the per-step loops here; tests/test_triton_persistent.py covers the persistent ones.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

pytest.importorskip("triton")
from rnnlab.nn.backends import loop, triton as triton_backend  # noqa: E402
from helpers import covering_product  # noqa: E402
from test_fused import (DIRECTION_IDS, DIRECTIONS, LENGTHS, TOL, VARIANTS, B, H, I, T,  # noqa: E402
                        variant_id)

pytestmark = pytest.mark.triton
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # compiled on a GPU, interpreted on CPU


def _run(backend, variant, tensors, lengths, reverse, gout):
    """Outputs, gradients of every leaf and the recorded grad norms of `backend.run_layer` (test_fused's, on DEVICE)."""
    cell, forget_gate, nl, _ = variant
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = tensors
    norms = torch.zeros(x.size(1), x.size(0), device=x.device)
    out, h_n, c_n = backend.run_layer(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                                      nonlinearity=nl, forget_gate=forget_gate, grad_norms=norms)
    results = [out, h_n] + ([c_n] if c_n is not None else [])
    loss = sum((r * g).sum() for r, g in zip(results, gout))
    grads = torch.autograd.grad(loss, [t for t in tensors if t is not None])
    return [r.detach() for r in results], grads, norms


@pytest.mark.parametrize("variant,reverse,with_lengths,bias",
                         covering_product(VARIANTS, DIRECTIONS, variant_id, DIRECTION_IDS))
def test_triton_run_layer_matches_loop(variant, reverse, with_lengths, bias):
    cell, _, _, G = variant
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(DEVICE)  # noqa: E731
    lstm_like = cell in ("lstm", "cifg")
    tensors = (r(T, B, I), r(B, H), r(B, H) if lstm_like else None, r(G * H, I) * 0.5, r(G * H, H) * 0.5,
               r(G * H) if bias else None, r(G * H) if bias else None)
    tensors = tuple(t.requires_grad_() if t is not None else None for t in tensors)
    lengths = torch.tensor(LENGTHS, device=DEVICE) if with_lengths else None
    gout = [r(T, B, H)] + [r(B, H) for _ in range(2 if lstm_like else 1)]

    ref, ref_grads, ref_norms = _run(loop, variant, tensors, lengths, reverse, gout)
    got, got_grads, got_norms = _run(triton_backend, variant, tensors, lengths, reverse, gout)
    for a, b in zip(ref + list(ref_grads), got + list(got_grads)):
        assert (a - b).abs().max().item() <= TOL
    assert (ref_norms - got_norms).abs().max().item() <= 1e-5
    assert ref_norms.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, pytest.param(torch.bfloat16, marks=pytest.mark.cuda)],
                         ids=["f16", "bf16"])
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v[2] == "tanh"], ids=lambda v: f"{v[0]}-fg{int(v[1])}")
def test_triton_half_precision_close_to_float64_loop(variant, dtype):
    """float16 / bfloat16 run the per-step kernels (the persistent ones take float32/float64), with exp, sqrt and
    the norms' sums in float32 inside the kernel: Triton's compiler rejects them in 16 bits (the interpreter does
    not; tests/test_triton_aot.py compiles these kernels for sm_90). Close to the float64 loop at 16-bit rounding.
    bfloat16 on a GPU only: the interpreter multiplies two bfloat16 values wrongly (1e35 for x * x, triton 3.9)."""
    cell, _, _, G = variant
    g = torch.Generator().manual_seed(0)
    r = lambda *s: (torch.randn(*s, generator=g, dtype=torch.float64) * 0.5).to(DEVICE)  # noqa: E731
    lstm_like = cell in ("lstm", "cifg")
    tensors = (r(T, B, I), r(B, H), r(B, H) if lstm_like else None, r(G * H, I), r(G * H, H), r(G * H), r(G * H))
    lengths = torch.tensor(LENGTHS, device=DEVICE)
    gout = [r(T, B, H)] + [r(B, H) for _ in range(2 if lstm_like else 1)]
    leaves = lambda dt: tuple(t.to(dt).requires_grad_() if t is not None else None for t in tensors)  # noqa: E731
    ref, ref_grads, ref_norms = _run(loop, variant, leaves(torch.float64), lengths, True, gout)
    got, got_grads, got_norms = _run(triton_backend, variant, leaves(dtype), lengths, True, [t.to(dtype) for t in gout])
    tol = 2e-2 if dtype == torch.float16 else 1e-1
    for a, b in zip(ref + list(ref_grads), got + list(got_grads)):
        assert b.dtype == dtype
        torch.testing.assert_close(b.double(), a, atol=tol, rtol=tol)
    torch.testing.assert_close(got_norms.double(), ref_norms.double(), atol=tol, rtol=tol)


@pytest.mark.cuda
def test_triton_on_cuda_matches_fused():
    from rnnlab.nn import LSTM
    m = LSTM(16, 32, bidirectional=True, backend="triton", device="cuda", dtype=torch.float64)
    ref = LSTM(16, 32, bidirectional=True, backend="fused", device="cuda", dtype=torch.float64)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(9, 4, 16, device="cuda", dtype=torch.float64)
    lengths = torch.tensor([9, 3, 5, 1])
    torch.testing.assert_close(m(x, lengths=lengths)[0], ref(x, lengths=lengths)[0], atol=1e-10, rtol=0)
