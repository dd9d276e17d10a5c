"""The fused backend equals the loop reference (float64, max abs error <= 1e-10).

Per layer and direction (`run_layer`): outputs, final states, every gradient and the recorded
per-timestep gradient norms, for every cell variant x direction x lengths x bias, from a random
initial state. Through the modules (`backend='fused'` vs `'loop'`): layers x bidirectional x
batch_first x lengths x initial state.
"""

import pytest
import torch

from rnnlab.nn.backends import cpp, fused, loop
from rnnlab.nn.registry import build_cell

TOL = 1e-10
T, B, I, H = 7, 6, 5, 4
LENGTHS = [7, 5, 5, 2, 1, 1]  # as PyTorch's own packed-sequence tests: ties, full and length-1 rows

# (cell, forget_gate, nonlinearity, gates)
VARIANTS = [
    ("lstm", True, "tanh", 4),
    ("lstm", False, "tanh", 3),
    ("cifg", True, "tanh", 3),
    ("gru", True, "tanh", 3),
    ("rnn", True, "tanh", 1),
    ("rnn", True, "relu", 1),
    ("rnn", True, "identity", 1),
]
# direction, lengths and bias combinations, for the grids that cannot afford the whole product in the fast suite
DIRECTIONS = [(False, False, True), (True, True, True), (True, False, False), (False, True, False)]
DIRECTION_IDS = ["fwd-full-bias", "rev-lengths-bias", "rev-full-nobias", "fwd-lengths-nobias"]


def variant_id(v):
    return f"{v[0]}-fg{int(v[1])}-{v[2]}"


@pytest.fixture(params=["python", "cpp"])
def loops(request, monkeypatch):
    """Both implementations of the per-step loops: the Python one and the C++ extension."""
    impl = fused.PythonLoops
    if request.param == "cpp":
        monkeypatch.setenv("RNNLAB_FUSED_EXT", "wait")  # build now (once per source version, cached)
        impl = cpp.loops()
        if impl is None:
            pytest.skip("the C++ extension could not be built here (no compiler?)")
    monkeypatch.setattr(fused, "loops", lambda: impl)
    return impl


def _run(backend, variant, tensors, lengths, reverse, gout):
    cell, forget_gate, nl, _ = variant
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = tensors
    norms = torch.zeros(B, T, device=x.device)
    out, h_n, c_n = backend.run_layer(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                                      nonlinearity=nl, forget_gate=forget_gate, grad_norms=norms)
    results = [out, h_n] + ([c_n] if c_n is not None else [])
    loss = sum((r * g).sum() for r, g in zip(results, gout))
    leaves = [t for t in tensors if t is not None]
    grads = torch.autograd.grad(loss, leaves)
    return [r.detach().cpu() for r in results], [d.cpu() for d in grads], norms.cpu()


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_run_layer_matches_loop(variant, reverse, with_lengths, bias, loops):
    _check_layer(variant, reverse, with_lengths, bias, "cpu")


@pytest.mark.cuda
@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_run_layer_matches_loop_cuda(variant, loops):
    """On a GPU both loop implementations run ATen ops on CUDA tensors (the C++ raw-float loops are CPU only)."""
    _check_layer(variant, True, True, True, "cuda")


def _check_layer(variant, reverse, with_lengths, bias, device):
    cell, _, _, G = variant
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(device).requires_grad_()  # noqa: E731
    lstm_like = cell in ("lstm", "cifg")
    tensors = (r(T, B, I), r(B, H), r(B, H) if lstm_like else None, r(G * H, I) * 0.5, r(G * H, H) * 0.5,
               r(G * H) if bias else None, r(G * H) if bias else None)
    tensors = tuple(t.detach().requires_grad_() if t is not None else None for t in tensors)
    lengths = torch.tensor(LENGTHS, device=device) if with_lengths else None
    gout = [torch.randn(T, B, H, generator=g, dtype=torch.float64)] + [
        torch.randn(B, H, generator=g, dtype=torch.float64) for _ in range(2 if lstm_like else 1)]
    gout = [t.to(device) for t in gout]

    ref, ref_grads, ref_norms = _run(loop, variant, tensors, lengths, reverse, gout)
    got, got_grads, got_norms = _run(fused, variant, tensors, lengths, reverse, gout)

    for a, b in zip(ref + list(ref_grads), got + list(got_grads)):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= TOL
    assert (ref_norms - got_norms).abs().max().item() <= 1e-5  # float32 buffers
    assert ref_norms.abs().sum() > 0
    if with_lengths:  # padded steps: zero output, zero norm
        pad = torch.arange(T).unsqueeze(0) >= lengths.cpu().unsqueeze(1)  # (B, T)
        assert got[0].transpose(0, 1)[pad].abs().max() == 0
        assert got_norms[pad].abs().max() == 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("size", ["small", "large"])
def test_float32_close_to_float64_loop(cell, size, loops):
    """float32 runs the same arithmetic: close to the float64 reference at float32 precision. `large` is past the
    size where the C++ loops send each step's matmul to oneDNN instead of at::mm."""
    g = torch.Generator().manual_seed(1)
    G = 4 if cell == "lstm" else 3
    T, B, I, H = (7, 6, 5, 4) if size == "small" else (3, 32, 8, 128)
    x, h0, c0 = (torch.randn(*s, generator=g, dtype=torch.float64) for s in [(T, B, I), (B, H), (B, H)])
    w = [torch.randn(G * H, n, generator=g, dtype=torch.float64) / n ** 0.5 for n in (I, H)]
    b = [torch.randn(G * H, generator=g, dtype=torch.float64) for _ in range(2)]
    c0 = c0 if cell == "lstm" else None
    args64 = (x, h0, c0, *w, *b)
    args32 = tuple(a.float().requires_grad_() if a is not None else None for a in args64)
    args64 = tuple(a.requires_grad_() if a is not None else None for a in args64)
    lengths = torch.tensor(LENGTHS[:B] if size == "small" else [3, 2, 1, 3] * 8)
    o64, *_ = loop.run_layer(cell, *args64, lengths, True)
    o32, *_ = fused.run_layer(cell, *args32, lengths, True)
    assert o32.dtype == torch.float32
    torch.testing.assert_close(o32.double(), o64.detach(), atol=1e-5, rtol=1e-5)
    gw64 = torch.autograd.grad(o64.sum(), args64[3:5])
    gw32 = torch.autograd.grad(o32.sum(), args32[3:5])
    for a, b in zip(gw32, gw64):  # W_ih and W_hh: the C++ loops' `wgrad` (oneDNN on the transposed view)
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_wgrad_is_dg_transposed_times_x(dtype):
    """The C++ weight-gradient product dG^T X: oneDNN's matmul on the transposed view for float32 (at::mm for
    float64), the same product as torch's, also for an X that is a non-contiguous view."""
    ops = cpp.loops()
    if ops is None:
        pytest.skip("the C++ extension could not be built here (no compiler?)")
    g = torch.Generator().manual_seed(2)
    dg = torch.randn(3000, 96, generator=g, dtype=dtype)
    xs = [torch.randn(3000, 40, generator=g, dtype=dtype), torch.randn(40, 3000, generator=g, dtype=dtype).t()]
    for x in xs:
        got = ops.wgrad(dg, x)
        ref = dg.double().t() @ x.double()
        assert got.shape == (96, 40) and got.dtype == dtype
        torch.testing.assert_close(got.double(), ref, atol=1e-3 if dtype == torch.float32 else 1e-10, rtol=1e-5)


def test_inplace_change_of_output_is_caught():
    """`out` is saved for the backward; modifying it in place before backward must raise, not corrupt."""
    x = torch.randn(T, B, I, requires_grad=True)
    w_ih, w_hh = torch.randn(H, I, requires_grad=True), torch.randn(H, H, requires_grad=True)
    out, _, _ = fused.run_layer("rnn", x, torch.zeros(B, H), None, w_ih, w_hh, None, None, None, False)
    out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):  # version counter
        out.sum().backward()


@pytest.mark.parametrize("name", ["lstm", "lstm_noforget", "cifg", "gru", "rnn"])
@pytest.mark.parametrize("layers,bidirectional,batch_first,with_lengths,with_hx",
                         # each factor on and off at least once, and all on together
                         [(1, False, False, False, False), (2, True, True, True, True),
                          (2, False, False, True, True), (1, True, True, False, True), (2, True, False, True, False)])
def test_module_fused_matches_loop(name, layers, bidirectional, batch_first, with_lengths, with_hx):
    """Through the modules: backend='fused' equals backend='loop' (outputs, states, every gradient, grad norms)."""
    torch.manual_seed(0)
    ref = build_cell(name, I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                     dtype=torch.float64, backend="loop")
    mod = build_cell(name, I, H, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                     dtype=torch.float64, backend="fused")
    mod.load_state_dict(ref.state_dict())
    D = 2 if bidirectional else 1
    x = torch.randn(B, T, I, dtype=torch.float64) if batch_first else torch.randn(T, B, I, dtype=torch.float64)
    lengths = torch.tensor(LENGTHS) if with_lengths else None
    lstm_like = name in ("lstm", "lstm_noforget", "cifg")
    hx = None
    if with_hx:
        hx = tuple(torch.randn(layers * D, B, H, dtype=torch.float64) for _ in range(2 if lstm_like else 1))
        hx = hx if lstm_like else hx[0]

    def run(m):
        m.record_grad_norms(True)
        xi = x.clone().requires_grad_()
        hi = None if hx is None else (tuple(h.clone().requires_grad_() for h in hx) if lstm_like
                                      else hx.clone().requires_grad_())
        out, state = m(xi, hi, lengths=lengths)
        states = list(state) if lstm_like else [state]
        g = torch.Generator().manual_seed(1)
        loss = sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in [out, *states])
        leaves = [xi, *m.parameters()] + ([] if hi is None else (list(hi) if lstm_like else [hi]))
        grads = torch.autograd.grad(loss, leaves)
        return [out, *states, *grads], m.grad_norms

    got, got_norms = run(mod)
    want, want_norms = run(ref)
    for a, b in zip(want, got):
        assert (a - b).abs().max().item() <= TOL
    assert got_norms.keys() == want_norms.keys()
    for k in want_norms:
        torch.testing.assert_close(got_norms[k], want_norms[k], atol=1e-5, rtol=1e-5)


PRETEND = ["linear_pointwise:missing", "linear_pointwise:throws", "reorder_linear_weight:missing",
           "reorder_linear_weight:throws", "mkldnn_matmul:missing", "mkldnn_matmul:throws"]


def _large_float32_run(cell):
    """Forward and backward at a size whose float32 steps go to oneDNN (the per-step matmul, the weight gradients)."""
    g = torch.Generator().manual_seed(3)
    G = 4 if cell == "lstm" else 3
    T, B, I, H = 3, 64, 8, 128
    args = [torch.randn(T, B, I, generator=g), torch.randn(B, H, generator=g),
            torch.randn(B, H, generator=g) if cell == "lstm" else None,
            torch.randn(G * H, I, generator=g) / I ** 0.5, torch.randn(G * H, H, generator=g) / H ** 0.5,
            torch.randn(G * H, generator=g), torch.randn(G * H, generator=g)]
    args = [a.requires_grad_() if a is not None else None for a in args]
    out, h_n, _ = fused.run_layer(cell, *args, torch.tensor([3, 2, 1, 3] * 16), True)
    leaves = [a for a in args if a is not None]
    return [out.detach(), *torch.autograd.grad((out * out.detach().cos()).sum() + h_n.sum(), leaves)]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("pretend", PRETEND)
def test_each_torch_internal_missing_or_throwing_falls_back_to_the_public_op(pretend, cell, monkeypatch):
    """RNNLAB_FUSED_PRETEND makes one internal (the dispatcher's mkldnn linear or weight reorder, the dlsym'd
    mkldnn_matmul, or bptt.py's mkldnn linear) look missing or throw: the public op answers (the fallback counters
    move) and the numbers are those of the internal path to float32 round-off."""
    monkeypatch.setenv("RNNLAB_FUSED_EXT", "wait")
    ops = cpp.loops()
    if ops is None:
        pytest.skip("the C++ extension could not be built here (no compiler?)")
    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN: every product is the public op already")
    from rnnlab.nn.backends import bptt

    monkeypatch.setattr(fused, "loops", lambda: ops)
    monkeypatch.delenv("RNNLAB_FUSED_PRETEND", raising=False)
    before = (ops.fallbacks(), bptt.FALLBACKS)
    want = _large_float32_run(cell)
    assert (ops.fallbacks(), bptt.FALLBACKS) == before, "the internals are there in this torch: none falls back"
    monkeypatch.setenv("RNNLAB_FUSED_PRETEND", pretend)
    got = _large_float32_run(cell)
    assert ops.fallbacks() > before[0]
    assert bptt.FALLBACKS > before[1] if pretend.startswith("linear_pointwise") else True
    for a, b in zip(want, got):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_wgrad_checks_its_arguments():
    ops = cpp.loops()
    if ops is None:
        pytest.skip("the C++ extension could not be built here (no compiler?)")
    with pytest.raises(RuntimeError, match=r"wgrad: dg \(N, G\) and x \(N, K\) with the same N expected"):
        ops.wgrad(torch.randn(5, 3), torch.randn(4, 2))


def test_an_internal_op_is_used_only_with_the_schema_the_loops_were_written_against():
    """A changed schema reads as a missing op (then the public op answers): argument count and every type must match."""
    ops = cpp.loops()
    if ops is None:
        pytest.skip("the C++ extension could not be built here (no compiler?)")
    if not torch.backends.mkldnn.is_available():
        pytest.skip("torch built without oneDNN")
    types = ["Tensor", "Tensor", "Tensor?", "str", "Scalar?[]", "str?"]
    assert ops.has_op("mkldnn::_linear_pointwise", types)
    assert not ops.has_op("mkldnn::_linear_pointwise", types[:-1])  # one argument fewer
    assert not ops.has_op("mkldnn::_linear_pointwise", types[:2] + ["Tensor"] + types[3:])  # bias no longer optional
    assert ops.has_op("mkldnn::_reorder_linear_weight", ["Tensor", "int?"])
    assert not ops.has_op("mkldnn::_no_such_op", ["Tensor"])
