"""torch.autograd.gradcheck (float64, finite differences) through every cell, with lengths, both directions and two
layers: the loop backend's gradients are the true derivatives of its forward, including through the length masks.
gradgradcheck likewise for the second derivatives, on the loop and the fused backends (issue 29)."""
import pytest
import torch
from torch.func import functional_call

import rnnlab.nn as rn
from rnnlab.nn.registry import build_cell

T, B, I, H = 4, 3, 2, 2
LENGTHS = [3, 4, 1]
CELLS = {
    "lstm": (rn.LSTM, {}),
    "lstm_noforget": (rn.LSTM, {"forget_gate": False}),
    "cifg": (rn.CIFGLSTM, {}),
    "gru": (rn.GRU, {}),
    "rnn_tanh": (rn.RNN, {}),
    "rnn_relu": (rn.RNN, {"nonlinearity": "relu"}),
    "rnn_identity": (rn.RNN, {"nonlinearity": "identity"}),
}


@pytest.mark.parametrize("name", list(CELLS))
def test_gradcheck(name, batch_first=False):
    cls, kw = CELLS[name]
    torch.manual_seed(0)
    m = cls(I, H, 2, bidirectional=True, batch_first=batch_first, dtype=torch.float64, **kw)
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, B, H, dtype=torch.float64, requires_grad=True)
    lstm = m.cell in ("lstm", "cifg")
    states = [h0, torch.randn(4, B, H, dtype=torch.float64, requires_grad=True)] if lstm else [h0]

    def f(x, *rest):
        hx, ps = (tuple(rest[:2]), rest[2:]) if lstm else (rest[0], rest[1:])
        out, hn = functional_call(m, dict(zip(names, ps)), (x, hx), {"lengths": torch.tensor(LENGTHS)})
        return (out, *hn) if lstm else (out, hn)

    assert torch.autograd.gradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


# --- second derivatives (gradient penalties, MAML, Hessian-vector products: torch.autograd.grad(create_graph=True))
GG_CELLS = ["lstm", "lstm_noforget", "cifg", "gru", "rnn"]


def _gradgradcheck(name, backend):
    """gradgradcheck in float64 through a bidirectional layer with lengths, x, the initial states and every weight."""
    torch.manual_seed(0)
    m = build_cell(name, 2, 2, bidirectional=True, dtype=torch.float64, backend=backend)
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    lstm = m.cell in ("lstm", "cifg")
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True) for _ in range(2 if lstm else 1)]

    def f(x, *rest):
        hx, ps = (tuple(rest[:2]), rest[2:]) if lstm else (rest[0], rest[1:])
        out, hn = functional_call(m, dict(zip(names, ps)), (x, hx), {"lengths": [3, 1]})
        return (out, *hn) if lstm else (out, hn)

    assert torch.autograd.gradgradcheck(f, (x, *states, *params), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.parametrize("name", GG_CELLS)
def test_gradgradcheck_loop(name):
    _gradgradcheck(name, "loop")


@pytest.mark.parametrize("name", GG_CELLS)
def test_gradgradcheck_fused(name, loops):
    """The fused backend's second derivatives are the true ones, with the Python and with the C++ loops."""
    _gradgradcheck(name, "fused")


def test_double_backward_on_the_default_backend_equals_torch_nn():
    """issue 29: the gradient-penalty pattern. The fused backend used to drop the RNN's second-order term silently:
    weight_hh_l0.grad stayed None and x.grad differed from torch.nn's."""
    torch.manual_seed(0)
    ours = rn.LSTM(4, 4, dtype=torch.float64)
    assert ours.backend == "auto"
    ref = ours.to_torch()
    x0 = torch.randn(6, 2, 4, dtype=torch.float64)
    grads = []
    for m in (ours, ref):
        x = x0.clone().requires_grad_()
        g, = torch.autograd.grad(m(x)[0].mean() + x.pow(2).sum(), x, create_graph=True)
        g.pow(2).sum().backward()
        grads.append([x.grad] + [p.grad for p in m.parameters()])
    for a, b in zip(*grads):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_first_order_backward_stays_in_the_fused_loops(monkeypatch):
    """Without create_graph nothing is recomputed through the loop reference: the first-order path costs what it did."""
    from rnnlab.nn.backends import loop

    calls = []
    real = loop.run_layer
    monkeypatch.setattr(loop, "run_layer", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = rn.GRU(2, 3, backend="fused")
    x = torch.randn(4, 2, 2, requires_grad=True)
    m(x)[0].sum().backward()
    assert calls == [] and x.grad is not None
    g, = torch.autograd.grad(m(x)[0].sum(), x, create_graph=True)
    g.sum().backward()
    assert calls == [1]  # one recomputation per (layer, direction), in the backward
