"""Cells without a torch.nn peer (CIFG, the 1997 LSTM without forget gate, the linear RNN) and the recorded
per-timestep gradient norms, against an independent reference written here from the equations.

The reference runs one sequence at a time, cut to its own length (no masks), one gate at a time from explicit
row blocks of the packed weights, so it shares no code and no trick with rnnlab.nn.backends.loop.
"""
import itertools

import pytest
import torch

import rnnlab.nn as rn

T, B, I, H = 6, 4, 3, 4
LENGTHS = [4, 6, 1, 3]
CONFIGS = {
    "cifg": (rn.CIFGLSTM, {}),
    "lstm_noforget": (rn.LSTM, {"forget_gate": False}),
    "lstm": (rn.LSTM, {}),
    "gru": (rn.GRU, {}),
    "rnn_identity": (rn.RNN, {"nonlinearity": "identity"}),
    "rnn_relu": (rn.RNN, {"nonlinearity": "relu"}),
}


def step(m, k, d, x, h, c):
    """One step of layer k, direction d of module m, gate by gate from the equations in its docstring."""
    sfx = f"_l{k}" + ("_reverse" if d else "")
    Wi, Wh = getattr(m, "weight_ih" + sfx), getattr(m, "weight_hh" + sfx)
    bi = getattr(m, "bias_ih" + sfx) if m.bias else torch.zeros(Wi.shape[0], dtype=x.dtype)
    bh = getattr(m, "bias_hh" + sfx) if m.bias else torch.zeros(Wi.shape[0], dtype=x.dtype)

    def pre(j, with_h=True):  # W_i[j] x + b_i[j] (+ W_h[j] h + b_h[j]) for gate block j
        rows = slice(j * H, (j + 1) * H)
        a = Wi[rows] @ x + bi[rows]
        return a + (Wh[rows] @ h + bh[rows]) if with_h else a

    sig = torch.sigmoid
    if isinstance(m, rn.CIFGLSTM):  # blocks (f, g, o)
        f, g, o = sig(pre(0)), torch.tanh(pre(1)), sig(pre(2))
        c = f * c + (1 - f) * g
        return o * torch.tanh(c), c
    if isinstance(m, rn.LSTM) and not m.forget_gate:  # blocks (i, g, o)
        i, g, o = sig(pre(0)), torch.tanh(pre(1)), sig(pre(2))
        c = c + i * g
        return o * torch.tanh(c), c
    if isinstance(m, rn.LSTM):  # blocks (i, f, g, o)
        i, f, g, o = sig(pre(0)), sig(pre(1)), torch.tanh(pre(2)), sig(pre(3))
        c = f * c + i * g
        return o * torch.tanh(c), c
    if isinstance(m, rn.GRU):  # blocks (r, z, n)
        r, z = sig(pre(0)), sig(pre(1))
        n = torch.tanh(pre(2, with_h=False) + r * (Wh[2 * H:] @ h + bh[2 * H:]))
        return (1 - z) * n + z * h, None
    act = {"tanh": torch.tanh, "relu": torch.relu, "identity": lambda v: v}[m.nonlinearity]
    return act(pre(0)), None


def reference(m, x, h0, c0, lengths):
    """Returns output (T, B, D*H) zero-padded, h_n, c_n (L*D, B, H), and hs[(k, d, b, t)] = h_t tensors."""
    D = 2 if m.bidirectional else 1
    lengths = lengths or [T] * B
    outs, hn, cn, hs = [], [], [], {}
    for b in range(B):
        seq = [x[t, b] for t in range(lengths[b])]  # this sequence only, cut to its length
        hn_b, cn_b = [], []
        for k in range(m.num_layers):
            per_dir = []
            for d in range(D):
                idx = k * D + d
                h, c = h0[idx, b], (c0[idx, b] if c0 is not None else None)
                ys = [None] * len(seq)
                for t in (reversed(range(len(seq))) if d else range(len(seq))):
                    h, c = step(m, k, d, seq[t], h, c)
                    ys[t] = hs[(k, d, b, t)] = h
                per_dir.append(ys)
                hn_b.append(h)
                cn_b.append(c)
            seq = [torch.cat([ys[t] for ys in per_dir]) for t in range(len(seq))]
        pad = [torch.zeros(D * H, dtype=x.dtype)] * (T - len(seq))
        outs.append(torch.stack(seq + pad))  # (T, D*H)
        hn.append(torch.stack(hn_b))
        cn.append(torch.stack(cn_b) if c0 is not None else None)
    out = torch.stack(outs, 1)  # (T, B, D*H)
    hn = torch.stack(hn, 1)  # (L*D, B, H)
    cn = torch.stack(cn, 1) if c0 is not None else None
    return out, hn, cn, hs


def setup(name, num_layers, bidirectional, seed=0):
    cls, kw = CONFIGS[name]
    torch.manual_seed(seed)
    m = cls(I, H, num_layers, bidirectional=bidirectional, dtype=torch.float64, **kw)
    with torch.no_grad():  # scale up so the linear RNN and the relu RNN are not trivially tiny
        for p in m.parameters():
            p.mul_(2.0)
    LD = num_layers * (2 if bidirectional else 1)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(LD, B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(LD, B, H, dtype=torch.float64, requires_grad=True) if m.cell in ("lstm", "cifg") else None
    return m, x, h0, c0


def loss_weights(out, hn, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=g, dtype=out.dtype), torch.randn(hn.shape, generator=g, dtype=out.dtype)


# Cells without a torch peer over every (layers, direction, lengths); those with one (already checked against
# torch in test_nn_parity) once, to show the reference itself agrees with torch's equations.
NO_PEER = ["cifg", "lstm_noforget", "rnn_identity"]
GRID = list(itertools.product(NO_PEER, [1, 2], [False, True], [None, LENGTHS])) + [
    (name, 2, True, LENGTHS) for name in CONFIGS if name not in NO_PEER
]


@pytest.mark.parametrize("name,num_layers,bidirectional,lengths", GRID)
def test_against_reference(name, num_layers, bidirectional, lengths):
    """Outputs, final states and the gradients of input, initial state and every parameter (float64 <= 1e-10)."""
    m, x, h0, c0 = setup(name, num_layers, bidirectional)
    hx = (h0, c0) if c0 is not None else h0
    out, hn = m(x, hx, lengths=lengths)
    hn, cn = hn if c0 is not None else (hn, None)
    r_out, r_hn, r_cn, _ = reference(m, x, h0, c0, lengths)

    assert (out - r_out).abs().max() <= 1e-10
    assert (hn - r_hn).abs().max() <= 1e-10
    if c0 is not None:
        assert (cn - r_cn).abs().max() <= 1e-10
    wo, wh = loss_weights(out, hn)
    leaves = [x, h0, *([c0] if c0 is not None else []), *m.parameters()]
    g_ours = torch.autograd.grad((out * wo).sum() + (hn * wh).sum(), leaves)
    g_ref = torch.autograd.grad((r_out * wo).sum() + (r_hn * wh).sum(), leaves)
    for a, b in zip(g_ours, g_ref):
        assert (a - b).abs().max() <= 1e-10


@pytest.mark.parametrize("name", ["lstm", "cifg", "gru", "rnn_identity"])
@pytest.mark.parametrize("lengths", [None, LENGTHS])
def test_grad_norms_are_total_derivative_wrt_h_t(name, lengths):
    """record_grad_norms(): after backward, grad_norms['l{k}{_reverse}'][b, t] = ||dJ/dh_t|| (through the output
    and the recurrence), computed here by autograd.grad w.r.t. each h_t of the reference; zero at padded steps."""
    m, x, h0, c0 = setup(name, 2, True)
    hx = (h0, c0) if c0 is not None else h0
    m.record_grad_norms()
    out, hn = m(x, hx, lengths=lengths)
    hn = hn[0] if c0 is not None else hn
    wo, wh = loss_weights(out, hn)
    ((out * wo).sum() + (hn * wh).sum()).backward()

    r_out, r_hn, _, hs = reference(m, x, h0, c0, lengths)
    keys = list(hs)
    grads = torch.autograd.grad((r_out * wo).sum() + (r_hn * wh).sum(), [hs[k] for k in keys])
    expected = {key: torch.zeros(B, T) for key in ("l0", "l0_reverse", "l1", "l1_reverse")}
    for (k, d, b, t), g in zip(keys, grads):
        expected[f"l{k}" + ("_reverse" if d else "")][b, t] = g.norm()

    assert set(m.grad_norms) == set(expected)
    for key, buf in m.grad_norms.items():
        assert buf.shape == (B, T) and buf.dtype == torch.float32 and not buf.requires_grad
        assert torch.allclose(buf, expected[key], rtol=1e-5, atol=1e-7), key
        assert buf.abs().sum() > 0
    if lengths is not None:
        assert torch.equal(m.last_lengths, torch.tensor(lengths))
        for key, buf in m.grad_norms.items():
            for b, n in enumerate(lengths):
                assert buf[b, n:].abs().sum() == 0 and (buf[b, :n] > 0).all(), (key, b)
    else:
        assert m.last_lengths is None


def test_grad_norms_off_by_default_and_after_disable():
    m, x, h0, c0 = setup("gru", 1, False)
    m(x)[0].sum().backward()
    assert m.grad_norms == {}
    m.record_grad_norms()
    m(x)[0].sum().backward()
    assert set(m.grad_norms) == {"l0"}
    m.record_grad_norms(False)
    m(x)[0].sum().backward()
    assert m.grad_norms == {}


def test_forget_gate_false_has_three_gate_blocks():
    """The 1997 LSTM packs (i, g, o): 3H rows and no forget slice, so no parameter is dead."""
    m = rn.LSTM(I, H, forget_gate=False)
    assert m.weight_ih_l0.shape == (3 * H, I) and m.weight_hh_l0.shape == (3 * H, H)
    m(torch.randn(T, B, I))[0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())
