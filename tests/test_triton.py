"""The Triton backend equals the loop reference (float64, <= 1e-10), kernels run by the Triton interpreter on CPU.

TRITON_INTERPRET=1 is set here, at import, before any kernel is made (rnnlab makes them on first use), so
CI checks every kernel without a GPU; on a CUDA machine the `cuda` test runs them compiled.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")
from rnnlab.nn import loop, triton_cells  # noqa: E402
from test_fused import LENGTHS, VARIANTS, _run, B, H, I, T, TOL  # noqa: E402

pytestmark = pytest.mark.triton


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v[0]}-fg{int(v[1])}-{v[2]}")
@pytest.mark.parametrize("reverse,with_lengths,bias", [(False, False, True), (True, True, True), (True, False, False),
                                                       (False, True, False)])
def test_triton_run_layer_matches_loop(variant, reverse, with_lengths, bias):
    cell, _, _, G = variant
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    lstm_like = cell in ("lstm", "cifg")
    tensors = (r(T, B, I), r(B, H), r(B, H) if lstm_like else None, r(G * H, I) * 0.5, r(G * H, H) * 0.5,
               r(G * H) if bias else None, r(G * H) if bias else None)
    tensors = tuple(t.requires_grad_() if t is not None else None for t in tensors)
    lengths = torch.tensor(LENGTHS) if with_lengths else None
    gout = [r(T, B, H)] + [r(B, H) for _ in range(2 if lstm_like else 1)]

    ref, ref_grads, ref_norms = _run(loop, variant, tensors, lengths, reverse, gout)
    got, got_grads, got_norms = _run(triton_cells, variant, tensors, lengths, reverse, gout)
    for a, b in zip(ref + list(ref_grads), got + list(got_grads)):
        assert (a - b).abs().max().item() <= TOL
    assert (ref_norms - got_norms).abs().max().item() <= 1e-5


@pytest.mark.cuda
def test_triton_on_cuda_matches_fused():
    from rnnlab.nn import LSTM
    m = LSTM(16, 32, bidirectional=True, backend="triton", device="cuda", dtype=torch.float64)
    ref = LSTM(16, 32, bidirectional=True, backend="fused", device="cuda", dtype=torch.float64)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(9, 4, 16, device="cuda", dtype=torch.float64)
    lengths = torch.tensor([9, 3, 5, 1])
    torch.testing.assert_close(m(x, lengths=lengths)[0], ref(x, lengths=lengths)[0], atol=1e-10, rtol=0)
