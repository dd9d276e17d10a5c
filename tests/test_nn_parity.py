"""rnnlab.nn.LSTM/GRU/RNN give torch.nn's numbers: outputs, final states and every gradient, with copied weights.

The reference for variable lengths is torch with pack_padded_sequence(enforce_sorted=False), the way PyTorch
tests cuDNN against its CPU path. Bounds: float64 max abs error <= 1e-10, float32 <= 1e-5.
"""
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab.nn as rn

T, B, I, H = 7, 6, 5, 4
LENGTHS = [2, 7, 1, 5, 1, 5]  # [7, 5, 5, 2, 1, 1] shuffled, so packing must sort and unsort
KINDS = {  # name -> (rnnlab class, torch class, extra kwargs)
    "lstm": (rn.LSTM, torch.nn.LSTM, {}),
    "gru": (rn.GRU, torch.nn.GRU, {}),
    "rnn_tanh": (rn.RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (rn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
}
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def make_pair(kind, num_layers, bidirectional, batch_first, dtype, device="cpu", seed=0):
    """A torch.nn module and an rnnlab module holding the same weights (copied through state_dict, strictly)."""
    ours_cls, torch_cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    ref = torch_cls(I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype, device=device, **extra)
    ours = ours_cls(I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype, device=device, **extra)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def make_inputs(kind, num_layers, bidirectional, batch_first, dtype, with_hx, device="cpu", seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, generator=g, dtype=dtype).to(device)
    hx = None
    if with_hx:
        LD = num_layers * (2 if bidirectional else 1)
        hx = torch.randn(LD, B, H, generator=g, dtype=dtype).to(device)
        if kind == "lstm":
            hx = (hx, torch.randn(LD, B, H, generator=g, dtype=dtype).to(device))
    return x, hx


def leaves(x, hx):
    """Fresh leaf copies that require grad, so both modules get their own."""
    x = x.detach().clone().requires_grad_()
    if hx is None:
        return x, None, [x]
    if isinstance(hx, tuple):
        hx = tuple(s.detach().clone().requires_grad_() for s in hx)
        return x, hx, [x, *hx]
    hx = hx.detach().clone().requires_grad_()
    return x, hx, [x, hx]


def loss_of(out, hn, g):
    """A loss that weights every output and final-state entry differently, so no gradient is trivially symmetric."""
    states = hn if isinstance(hn, tuple) else (hn,)
    total = (out * torch.randn(out.shape, generator=g, dtype=out.dtype).to(out.device)).sum()
    for s in states:
        total = total + (s * torch.randn(s.shape, generator=g, dtype=s.dtype).to(s.device)).sum()
    return total


def run_torch(ref, x, hx, lengths, batch_first):
    if lengths is None:
        return ref(x, hx)
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    out, hn = ref(packed, hx)
    out, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)
    return out, hn


def assert_close(a, b, tol, what):
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:g}"


def check_parity(kind, num_layers, bidirectional, batch_first, with_hx, with_lengths, dtype, device="cpu"):
    ours, ref = make_pair(kind, num_layers, bidirectional, batch_first, dtype, device)
    x, hx = make_inputs(kind, num_layers, bidirectional, batch_first, dtype, with_hx, device)
    lengths = LENGTHS if with_lengths else None
    tol = TOL[dtype]

    assert_same_run(ours, ref, x, hx, lengths, batch_first, tol)


def assert_same_run(ours, ref, x, hx, lengths, batch_first, tol):
    """Outputs, final states and every gradient of ``ours`` equal ``ref``'s (torch.nn, packed sequences) on the same
    inputs and loss, with the same parameter names; returns ours' output."""
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    xr, hxr, in_ref = leaves(x, hx)
    out_r, hn_r = run_torch(ref, xr, hxr, lengths, batch_first)
    loss_of(out_r, hn_r, torch.Generator().manual_seed(2)).backward()

    xo, hxo, in_ours = leaves(x, hx)
    out_o, hn_o = ours(xo, hxo, lengths=lengths)
    loss_of(out_o, hn_o, torch.Generator().manual_seed(2)).backward()

    assert out_o.shape == out_r.shape
    assert_close(out_o, out_r, tol, "output")
    for a, b in zip(hn_o if isinstance(hn_o, tuple) else (hn_o,), hn_r if isinstance(hn_r, tuple) else (hn_r,)):
        assert a.shape == b.shape
        assert_close(a, b, tol, "final state")
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert_close(p.grad, q.grad, tol, f"grad of {name}")
    for a, b in zip(in_ours, in_ref):
        assert_close(a.grad, b.grad, tol, "grad of input/hx")
    return out_o


# Every (layers, direction, lengths) combination; batch_first and the initial state vary in two pairings that
# together cover each value with and without the other (full product doubles the time, proves nothing more:
# batch_first is a transpose outside the recurrence, hx only replaces the zero state).
GRID = [
    (kind, layers, bidir, bf, hx, lengths)
    for kind, layers, bidir, lengths in itertools.product(KINDS, [1, 2, 3], [False, True], [False, True])
    for bf, hx in [(False, False), (True, True)]
] + [(kind, 2, True, bf, hx, True) for kind in KINDS for bf, hx in [(False, True), (True, False)]]


@pytest.mark.parametrize("kind,num_layers,bidirectional,batch_first,with_hx,with_lengths", GRID)
def test_parity_float64(kind, num_layers, bidirectional, batch_first, with_hx, with_lengths):
    check_parity(kind, num_layers, bidirectional, batch_first, with_hx, with_lengths, torch.float64)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("with_lengths", [False, True])
def test_parity_float32(kind, with_lengths):
    check_parity(kind, 2, True, True, True, with_lengths, torch.float32)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", list(KINDS))
def test_parity_cuda(kind):
    """Same bound on a GPU against torch's cuDNN path (float64: cuDNN float32 RNNs may use TF32 math)."""
    check_parity(kind, 2, True, False, True, True, torch.float64, device="cuda")


@pytest.mark.parametrize("kind", list(KINDS))
def test_packed_sequence_in_and_out(kind):
    """A PackedSequence in gives torch's PackedSequence out: same data, batch sizes and (un)sorted indices."""
    ours, ref = make_pair(kind, 2, True, False, torch.float64)
    x, hx = make_inputs(kind, 2, True, False, torch.float64, with_hx=True)
    packed = pack_padded_sequence(x.requires_grad_(), torch.tensor(LENGTHS), enforce_sorted=False)
    out_o, hn_o = ours(packed, hx)
    out_r, hn_r = ref(packed, hx)
    assert type(out_o) is type(out_r)
    assert_close(out_o.data, out_r.data, 1e-10, "packed data")
    assert torch.equal(out_o.batch_sizes, out_r.batch_sizes)
    assert torch.equal(out_o.sorted_indices, out_r.sorted_indices)
    assert torch.equal(out_o.unsorted_indices, out_r.unsorted_indices)
    for a, b in zip(hn_o if isinstance(hn_o, tuple) else (hn_o,), hn_r if isinstance(hn_r, tuple) else (hn_r,)):
        assert_close(a, b, 1e-10, "final state")
    g_o, = torch.autograd.grad(out_o.data.square().sum(), x, retain_graph=True)  # the packing is shared
    g_r, = torch.autograd.grad(out_r.data.square().sum(), x)
    assert_close(g_o, g_r, 1e-10, "grad through packed data")


def test_packed_sorted_input_keeps_none_indices():
    """enforce_sorted=True packing has no indices; the output must not invent any."""
    ours, ref = make_pair("gru", 1, False, False, torch.float64)
    x, _ = make_inputs("gru", 1, False, False, torch.float64, with_hx=False)
    packed = pack_padded_sequence(x, torch.tensor(sorted(LENGTHS, reverse=True)))
    out_o, _ = ours(packed)
    out_r, _ = ref(packed)
    assert out_o.sorted_indices is None and out_o.unsorted_indices is None
    assert_close(out_o.data, out_r.data, 1e-10, "packed data")


@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_input(kind):
    """2-D input (L, H_in) and 2-D states (D*num_layers, H) as torch: shapes and values."""
    ours, ref = make_pair(kind, 2, True, False, torch.float64)
    x = torch.randn(T, I, dtype=torch.float64)
    hx = torch.randn(4, H, dtype=torch.float64)
    hx = (hx, torch.randn(4, H, dtype=torch.float64)) if kind == "lstm" else hx
    out_o, hn_o = ours(x, hx)
    out_r, hn_r = ref(x, hx)
    assert out_o.shape == out_r.shape == (T, 2 * H)
    assert_close(out_o, out_r, 1e-10, "output")
    for a, b in zip(hn_o if isinstance(hn_o, tuple) else (hn_o,), hn_r if isinstance(hn_r, tuple) else (hn_r,)):
        assert a.shape == b.shape == (4, H)
        assert_close(a, b, 1e-10, "final state")


def test_lengths_shorter_than_input_pad_with_zeros():
    """When every sequence is shorter than T, the trailing steps are zeros (torch would drop them) and the
    states are unchanged by them."""
    ours, ref = make_pair("lstm", 2, True, False, torch.float64)
    x, _ = make_inputs("lstm", 2, True, False, torch.float64, with_hx=False)
    lengths = [3, 1, 4, 2, 4, 3]
    out_o, (h_o, c_o) = ours(x, lengths=torch.tensor(lengths))
    out_r, (h_r, c_r) = ref(pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False))
    out_r, _ = pad_packed_sequence(out_r, total_length=T)
    assert_close(out_o, out_r, 1e-10, "output")
    assert_close(h_o, h_r, 1e-10, "h_n")
    assert_close(c_o, c_r, 1e-10, "c_n")
    assert out_o[4:].abs().max() == 0


def test_bfloat16_runs_close_to_float32():
    """bfloat16 works end to end (forward and backward); ~3 significant digits, so a loose bound."""
    ours32, _ = make_pair("lstm", 2, True, False, torch.float32)
    ours16 = rn.LSTM(I, H, 2, bidirectional=True, dtype=torch.bfloat16)
    ours16.load_state_dict(ours32.state_dict())
    x, _ = make_inputs("lstm", 2, True, False, torch.float32, with_hx=False)
    out32, _ = ours32(x, lengths=LENGTHS)
    out16, _ = ours16(x.bfloat16(), lengths=LENGTHS)
    out16.float().sum().backward()
    assert out16.dtype == torch.bfloat16 and ours16.weight_hh_l0.grad.dtype == torch.bfloat16
    assert_close(out16.float(), out32, 5e-2, "bfloat16 output")


# --- LSTM with projections (torch.nn.LSTM(..., proj_size=P)): h_t = W_hr (o_t ⊙ tanh(c_t)) (issue 29) ------------
def make_proj_pair(num_layers, bidirectional, batch_first, backend="loop", proj_size=2):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first, proj_size=proj_size,
                        dtype=torch.float64)
    ours = rn.LSTM(I, H, num_layers, bidirectional=bidirectional, batch_first=batch_first, proj_size=proj_size,
                   dtype=torch.float64, backend=backend)
    ours.load_state_dict(ref.state_dict())
    return ours, ref


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,with_hx,with_lengths",
                         [(1, False, False, False, False), (2, True, True, True, True), (2, False, False, True, True),
                          (3, True, False, False, False)])
def test_projected_lstm_equals_torch_nn(num_layers, bidirectional, batch_first, with_hx, with_lengths):
    P = 2
    ours, ref = make_proj_pair(num_layers, bidirectional, batch_first)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((B, T, I) if batch_first else (T, B, I), generator=g, dtype=torch.float64)
    LD = num_layers * (2 if bidirectional else 1)
    hx = (torch.randn(LD, B, P, generator=g, dtype=torch.float64),
          torch.randn(LD, B, H, generator=g, dtype=torch.float64)) if with_hx else None
    out = assert_same_run(ours, ref, x, hx, LENGTHS if with_lengths else None, batch_first, 1e-10)
    assert out.shape[-1] == P * (2 if bidirectional else 1)


def test_projected_lstm_on_the_fused_backend_warns_once_and_runs_the_loop():
    ours, ref = make_proj_pair(2, True, False, backend="fused")
    x = torch.randn(T, B, I, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"proj_size.*runs on the 'loop' backend"):
        out, _ = ours(x)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours(x)  # once per module
    assert_close(out, ref(x)[0], 1e-10, "output")


@pytest.mark.parametrize("backend", ["loop", "fused"])
def test_proj_size_zero_is_the_plain_lstm(backend):
    torch.manual_seed(0)
    a = rn.LSTM(I, H, 2, proj_size=0, backend=backend)
    torch.manual_seed(0)
    b = rn.LSTM(I, H, 2, backend=backend)
    x = torch.randn(T, B, I)
    assert torch.equal(a(x)[0], b(x)[0]) and a.proj_size == 0


def test_from_torch_and_to_torch_keep_the_projection():
    ref = torch.nn.LSTM(I, H, 2, proj_size=3, dtype=torch.float64)
    ours = rn.LSTM.from_torch(ref, backend="loop")
    assert ours.proj_size == 3 and ours.to_torch().proj_size == 3
    x = torch.randn(T, B, I, dtype=torch.float64)
    assert_close(ours(x)[0], ref(x)[0], 1e-10, "output")
