"""The one-step cells rnnlab.nn.LSTMCell, GRUCell, RNNCell (torch.nn's peers) and CIFGCell: torch's arguments,
parameter names, initial draws and numbers with copied weights; stepped over a sequence they are the layer."""
import pytest
import torch

import rnnlab.nn as rn

I, H, B = 5, 4, 3
PEERS = {  # name -> (rnnlab class, torch class, kwargs)
    "lstm": (lambda *a, **k: rn.LSTMCell(*a, **k), torch.nn.LSTMCell, {}),
    "gru": (lambda *a, **k: rn.GRUCell(*a, **k), torch.nn.GRUCell, {}),
    "rnn_tanh": (lambda *a, **k: rn.RNNCell(*a, **k), torch.nn.RNNCell, {}),
    "rnn_relu": (lambda *a, **k: rn.RNNCell(*a, **k), torch.nn.RNNCell, {"nonlinearity": "relu"}),
}


def _states(kind, shape, g):
    s = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    return (s, torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)) if kind == "lstm" else s


def _flat(s):
    return list(s) if isinstance(s, tuple) else [s]


@pytest.mark.parametrize("kind", list(PEERS))
@pytest.mark.parametrize("bias", [True, False])
def test_same_seed_same_parameters_as_torch_nn(kind, bias):
    ours_cls, torch_cls, kw = PEERS[kind]
    torch.manual_seed(3)
    ours = ours_cls(I, H, bias, **kw)
    torch.manual_seed(3)
    ref = torch_cls(I, H, bias, **kw)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    for p, q in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    assert repr(ours).split("(", 1)[1] == repr(ref).split("(", 1)[1]


@pytest.mark.parametrize("kind", list(PEERS))
@pytest.mark.parametrize("batched,with_hx,bias", [(True, True, True), (True, False, False), (False, True, False),
                                                  (False, False, True)])
def test_one_step_equals_torch_nn_with_copied_weights(kind, batched, with_hx, bias):
    ours_cls, torch_cls, kw = PEERS[kind]
    ref = torch_cls(I, H, bias, dtype=torch.float64, **kw)
    ours = ours_cls(I, H, bias, dtype=torch.float64, **kw)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randn((B, I) if batched else (I,), generator=g, dtype=torch.float64, requires_grad=True)
    hx = _states(kind, (B, H) if batched else (H,), g) if with_hx else None
    got, want = _flat(ours(x, hx)), _flat(ref(x, hx))
    leaves = [x, *(_flat(hx) if with_hx else []), *ours.parameters()]
    ref_leaves = [x, *(_flat(hx) if with_hx else []), *ref.parameters()]
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64) for t in got]
    grads = torch.autograd.grad(sum((t * w).sum() for t, w in zip(got, weights)), leaves)
    ref_grads = torch.autograd.grad(sum((t * w).sum() for t, w in zip(want, weights)), ref_leaves)
    for a, b in zip(got + list(grads), want + list(ref_grads)):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cell_cls,layer_cls", [(rn.LSTMCell, rn.LSTM), (rn.CIFGCell, rn.CIFGLSTM), (rn.GRUCell, rn.GRU),
                                                (rn.RNNCell, rn.RNN)])
def test_a_cell_stepped_over_a_sequence_is_the_one_layer_module(cell_cls, layer_cls):
    torch.manual_seed(0)
    layer = layer_cls(I, H, dtype=torch.float64)
    cell = cell_cls(I, H, dtype=torch.float64)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(6, B, I, dtype=torch.float64)
    out, state = layer(x)
    s = None
    for t in range(6):
        s = cell(x[t], s)
        h = s[0] if isinstance(s, tuple) else s
        torch.testing.assert_close(h, out[t], atol=1e-12, rtol=0)
    for a, b in zip(_flat(s), _flat(state)):
        torch.testing.assert_close(a, b[0], atol=1e-12, rtol=0)


def test_cifg_cell_has_three_gates_and_no_torch_peer():
    cell = rn.CIFGCell(I, H)
    assert cell.weight_ih.shape == (3 * H, I) and cell.weight_hh.shape == (3 * H, H)


CELL_ERRORS = {  # the mistakes of torch's module_db error inputs for the cells: (class name, input, hx, message)
    "input_size": ("RNNCell", (3, 11), (3, 20), r"`input.size\(-1\)` must equal input_size: expected 10, got 11"),
    "hidden_size": ("GRUCell", (3, 10), (3, 21), r"`hx` must have shape \(batch, hidden_size\).*expected \(3, 20\), got \(3, 21\)"),
    "batch": ("LSTMCell", (3, 10), (5, 20), r"`hx\[0\]` must have shape \(batch, hidden_size\).*expected \(3, 20\), got \(5, 20\)"),
    "hidden_rank": ("RNNCell", (3, 10), (3, 1, 1, 20), r"`hx` must have shape .*got \(3, 1, 1, 20\)"),
    "input_rank": ("GRUCell", (1, 3, 10), None, r"`input` must be 2-D \(batched\) or 1-D \(unbatched\)"),
}


@pytest.mark.parametrize("case", list(CELL_ERRORS))
def test_cell_errors_are_torch_nn_s_types(case):
    name, xs, hs, match = CELL_ERRORS[case]
    x = torch.randn(xs)
    hx = None if hs is None else torch.randn(hs)
    hx = (hx, hx) if name == "LSTMCell" and hx is not None else hx
    with pytest.raises(Exception) as want:
        getattr(torch.nn, name)(10, 20)(x, hx)
    with pytest.raises(type(want.value), match=match):
        getattr(rn, name)(10, 20)(x, hx)


def test_cell_dtype_mismatch_is_a_dtype_error():
    with pytest.raises(rn.DTypeError, match=r"`input.dtype` must equal the parameters' dtype"):
        rn.LSTMCell(I, H)(torch.randn(B, I, dtype=torch.float64))
