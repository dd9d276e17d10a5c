"""torch.autograd.gradcheck (float64, finite differences) through every cell, with lengths, both directions and two
layers: the loop backend's gradients are the true derivatives of its forward, including through the length masks."""
import pytest
import torch
from torch.func import functional_call

import rnnlab.nn as rn

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
