"""The persistent Triton loops (one kernel launch per loop) equal the loop reference in float64 (<= 1e-10).

Outputs, final states, every gradient and the recorded grad norms, for every cell variant x direction x lengths x
bias, with a batch that is not a multiple of the rows per program (19 = 16 + 3) and a hidden size that is not a
power of two (24). Weight chunks of 16 make H=24 two column chunks and two reduction chunks, the second one
partly masked, so the chunk loops and their masks run too. The per-step loops are replaced by a stub that fails,
so a silent fallback cannot pass. Interpreted on CPU (TRITON_INTERPRET=1, from conftest), compiled with CUDA.
"""
import pytest
import torch

pytest.importorskip("triton")
from rnnlab.nn.backends import loop, triton as triton_backend  # noqa: E402
from rnnlab.nn.backends.triton import persistent as triton_persistent  # noqa: E402
from rnnlab.nn.registry import RNNLAB_CELLS, build_cell  # noqa: E402
from helpers import covering_product  # noqa: E402
from test_fused import DIRECTION_IDS, DIRECTIONS, VARIANTS, variant_id  # noqa: E402

pytestmark = pytest.mark.triton
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-10


class _NoPerStep:
    """Stands in for TritonLoops: any fallback from the persistent kernels fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"fell back to the per-step loop {name}")


@pytest.fixture
def persistent_only(monkeypatch):
    monkeypatch.setattr(triton_persistent, "TritonLoops", _NoPerStep())
    monkeypatch.setattr(triton_persistent, "ENABLED", True)
    monkeypatch.setattr(triton_persistent, "CONFIG", dict(triton_persistent.CONFIG, block_b=16, block_n=16,
                                                           block_k=16))
    triton_persistent.FAILED.clear()


def _inputs(cell, G, T, B, I, H, bias, with_lengths, seed=0, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device)  # noqa: E731
    lstm_like = cell in ("lstm", "cifg")
    tensors = (r(T, B, I), r(B, H), r(B, H) if lstm_like else None, r(G * H, I) * 0.3, r(G * H, H) * 0.3,
               r(G * H) if bias else None, r(G * H) if bias else None)
    tensors = tuple(t.requires_grad_() if t is not None else None for t in tensors)
    lengths = torch.randint(1, T + 1, (B,), generator=g).to(device) if with_lengths else None
    if lengths is not None:
        lengths[0] = T  # one full row, and (by chance) a mix of short ones
    gout = [r(T, B, H)] + [r(B, H) for _ in range(2 if lstm_like else 1)]
    return tensors, lengths, gout


def _run(backend, variant, tensors, lengths, reverse, gout):
    cell, forget_gate, nl, _ = variant
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = tensors
    norms = torch.zeros(x.size(1), x.size(0), dtype=x.dtype, device=x.device)
    out, h_n, c_n = backend.run_layer(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                                      nonlinearity=nl, forget_gate=forget_gate, grad_norms=norms)
    results = [out, h_n] + ([c_n] if c_n is not None else [])
    loss = sum((r * g).sum() for r, g in zip(results, gout))
    grads = torch.autograd.grad(loss, [t for t in tensors if t is not None])
    return [r.detach() for r in results] + list(grads), norms


def _check(variant, T, B, I, H, reverse, with_lengths, bias):
    tensors, lengths, gout = _inputs(variant[0], variant[3], T, B, I, H, bias, with_lengths)
    want, want_norms = _run(loop, variant, tensors, lengths, reverse, gout)
    got, got_norms = _run(triton_backend, variant, tensors, lengths, reverse, gout)
    for a, b in zip(want, got):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= TOL
    assert want_norms.abs().sum() > 0
    assert (want_norms - got_norms).abs().max().item() <= 1e-5  # the loop reference records in float32
    if with_lengths:  # padded steps: zero output, zero norm
        pad = torch.arange(T, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, T)
        assert got[0].transpose(0, 1)[pad].abs().max() == 0
        assert got_norms[pad].abs().max() == 0


@pytest.mark.parametrize("variant,reverse,with_lengths,bias",
                         covering_product(VARIANTS, DIRECTIONS, variant_id, DIRECTION_IDS))
def test_persistent_matches_loop(variant, reverse, with_lengths, bias, persistent_only):
    _check(variant, 5, 19, 3, 24, reverse, with_lengths, bias)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_persistent_multiply_and_sum_path_matches_loop(cell, persistent_only, monkeypatch):
    """fp64_dot=False: the products as a broadcast multiply-and-sum instead of tl.dot (a fallback knob for GPUs
    whose Triton cannot compile a float64 tl.dot) give the same numbers."""
    monkeypatch.setitem(triton_persistent.CONFIG, "fp64_dot", False)
    variant = next(v for v in VARIANTS if v[0] == cell)
    _check(variant, 4, 19, 3, 24, True, True, True)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_persistent_three_programs_and_chunks(cell, persistent_only):
    """Three programs (B=40 > 2 x 16) and three weight chunks per product (H=40), over more steps."""
    variant = next(v for v in VARIANTS if v[0] == cell)
    _check(variant, 12, 40, 7, 40, False, True, True)


class _Failing:
    """Stands in for a kernel that must not run."""

    def __init__(self, name):
        self.name = name

    def __getitem__(self, grid):
        raise AssertionError(f"kernel {self.name} ran")


@pytest.fixture
def split_only(persistent_only, monkeypatch):
    """The column-split kernels; the one-program-per-row-block kernels fail if they run."""
    triton_persistent._kernels()
    for name in ("lstm_fwd", "lstm_bwd", "gru_fwd", "gru_bwd", "rnn_fwd", "rnn_bwd"):
        monkeypatch.setitem(triton_persistent._K, name, _Failing(name))


@pytest.mark.parametrize("variant,units,reverse,with_lengths,bias", covering_product(
    VARIANTS, [(units, *d) for units in (16, 32) for d in DIRECTIONS[:3]], variant_id,
    [f"{u}-{d}" for u in ("2-programs-a-step", "1-program-in-kernel-barrier") for d in DIRECTION_IDS[:3]]))
@pytest.mark.timeout(120, method="thread")  # a broken barrier spins forever: fail (and end the run) instead
def test_split_matches_loop(variant, units, reverse, with_lengths, bias, split_only, monkeypatch):
    """split_units: each program owns 16 (or 32) of the 24 hidden units and its slice of W_hh. With 16, two programs
    share a row block: interpreted, the launches go step by step (backward: phase by phase), so the index and mask
    arithmetic of the split is checked; with 32, one program walks all steps through its in-kernel barrier. Compiled
    on a GPU, both run one launch with the barrier between programs."""
    monkeypatch.setitem(triton_persistent.CONFIG, "split_units", units)
    _check(variant, 5, 19, 3, 24, reverse, with_lengths, bias)


def test_split_units_must_be_a_power_of_two_of_at_least_16(monkeypatch):
    assert triton_persistent.parse_config("split_units=32")["split_units"] == 32
    monkeypatch.setitem(triton_persistent.CONFIG, "split_units", 24)
    with pytest.raises(ValueError, match="split_units must be 0 .off. or a power of two >= 16: got 24"):
        triton_persistent._split(64, 8, torch.float32, torch.device("cpu"))


def test_split_kernels_stay_off_under_torch_distributed(monkeypatch):
    """Under DDP, NCCL kernels overlapping the backward hold SMs: the split kernels' barrier could wait forever."""
    monkeypatch.setitem(triton_persistent.CONFIG, "split_units", 16)
    assert triton_persistent._split(64, 8, torch.float32, torch.device("cpu")) is not None
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    assert triton_persistent._split(64, 8, torch.float32, torch.device("cpu")) is None


def test_hidden_outside_16_to_256_and_other_dtypes_use_the_per_step_loops():
    """hidden < 16 (tl.dot's minimum tile), > 256, or a dtype other than float32/64: the per-step kernels run."""
    assert not triton_persistent.applies(8, torch.float64)
    assert not triton_persistent.applies(32, torch.float16)
    assert triton_persistent.applies(16, torch.float32) and triton_persistent.applies(24, torch.float64)
    # above MAX_HIDDEN (256) the per-step loops' cuBLAS matmul is faster (H100: ~30x at hidden 512)
    assert triton_persistent.applies(256, torch.float32) and not triton_persistent.applies(257, torch.float32)


def test_module_bidirectional_two_layers_matches_loop(persistent_only):
    """Through the module (backend='triton'): 2 layers x 2 directions, batch_first, lengths, initial state."""
    from rnnlab.nn import LSTM
    torch.manual_seed(0)
    ref = LSTM(5, 16, 2, bidirectional=True, batch_first=True, dtype=torch.float64, backend="loop", device=DEVICE)
    mod = LSTM(5, 16, 2, bidirectional=True, batch_first=True, dtype=torch.float64, backend="triton", device=DEVICE)
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(17, 4, 5, dtype=torch.float64, device=DEVICE)
    lengths = torch.tensor([4, 1, 3, 2] * 4 + [4])
    hx = tuple(torch.randn(4, 17, 16, dtype=torch.float64, device=DEVICE) for _ in range(2))

    def run(m):
        m.record_grad_norms(True)
        xi = x.clone().requires_grad_()
        out, (h, c) = m(xi, hx, lengths=lengths)
        loss = (out * out.detach().cos()).sum() + h.sum() * 0.5 - c.sum()
        return [out, h, c, *torch.autograd.grad(loss, [xi, *m.parameters()])], m.grad_norms

    want, want_norms = run(ref)
    got, got_norms = run(mod)
    for a, b in zip(want, got):
        assert (a - b).abs().max().item() <= TOL
    for k in want_norms:
        torch.testing.assert_close(got_norms[k], want_norms[k], atol=1e-5, rtol=1e-5)


CELLS = list(RNNLAB_CELLS)


@pytest.mark.cuda
@pytest.mark.parametrize("cell,dtype,H", [(c, torch.float64, 32) for c in CELLS] + [(c, torch.float32, 256) for c in CELLS]
                         + [("lstm", torch.float32, 100), ("lstm", torch.float64, 256), ("gru", torch.float64, 256)],
                         ids=lambda v: str(v).replace("torch.float", "f"))
def test_persistent_compiled_on_cuda_matches_fused(cell, dtype, H):
    """Compiled on a GPU with the default CONFIG: equal to the fused backend (cuBLAS products) to float64 round-off,
    and to float32 rounding in float32 (ieee products, not TF32). H=256 has the most registers per program; 100 is
    not a multiple of the 64-wide chunks; float64 checks that tl.dot compiles for it (CONFIG["fp64_dot"])."""
    _compiled_matches_fused(cell, dtype, H)


@pytest.mark.cuda
@pytest.mark.parametrize("cell,dtype,H,units", [(c, d, H, u) for c in CELLS
                                                for d, H, u in [(torch.float64, 64, 16), (torch.float32, 256, 16),
                                                                (torch.float32, 100, 32)]],
                         ids=lambda v: str(v).replace("torch.float", "f"))
@pytest.mark.timeout(120, method="thread")
def test_split_compiled_on_cuda_matches_fused(cell, dtype, H, units, split_only, monkeypatch):
    """The column-split kernels compiled, with their in-kernel barrier between the programs of a row block (4 to 16
    of them): equal to the fused backend as the persistent kernels are. 100 is not a multiple of 32 units."""
    monkeypatch.setitem(triton_persistent.CONFIG, "split_units", units)
    _compiled_matches_fused(cell, dtype, H)


def _compiled_matches_fused(cell, dtype, H):
    triton_persistent.FAILED.clear()
    torch.manual_seed(0)
    kw = dict(bidirectional=True, device="cuda", dtype=dtype)
    mod = build_cell(cell, 64, H, backend="triton", **kw).record_grad_norms()
    ref = build_cell(cell, 64, H, backend="fused", **kw).record_grad_norms()
    ref.load_state_dict(mod.state_dict())
    x = torch.randn(50, 37, 64, device="cuda", dtype=dtype)
    lengths = torch.randint(1, 51, (37,), device="cuda")
    tol = 1e-10 if dtype == torch.float64 else 2e-4

    def run(m):
        xi = x.clone().requires_grad_()
        out, _ = m(xi, lengths=lengths)
        (out * out.detach().sin()).sum().backward(inputs=[xi, *m.parameters()])
        return [out.detach(), xi.grad, *(p.grad for p in m.parameters())], m.grad_norms

    got, got_norms = run(mod)
    want, want_norms = run(ref)
    assert triton_persistent.FAILED == {}, triton_persistent.FAILED
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, atol=tol, rtol=tol)
    for k in want_norms:
        torch.testing.assert_close(got_norms[k], want_norms[k], atol=1e-4, rtol=1e-4)
