"""Initialisation: 'torch' draws exactly torch.nn's numbers, 'keras' reproduces Keras' defaults, and forget_bias
lands on the forget-gate slice only."""
import math

import pytest
import torch

import rnnlab.nn as rn

I, H = 6, 5


@pytest.mark.parametrize(
    "ours,ref",
    [
        (lambda: rn.LSTM(I, H, 3, bidirectional=True, forget_bias=0.0), lambda: torch.nn.LSTM(I, H, 3, bidirectional=True)),
        (lambda: rn.LSTM(I, H), lambda: torch.nn.LSTM(I, H)),  # the defaults are torch.nn's: forget_bias=0 (issue 29)
        (lambda: rn.CIFGLSTM(I, H), lambda: rn.CIFGLSTM(I, H, forget_bias=0.0)),
        (lambda: rn.GRU(I, H, 2, bias=False), lambda: torch.nn.GRU(I, H, 2, bias=False)),
        (lambda: rn.RNN(I, H, 2, "relu"), lambda: torch.nn.RNN(I, H, 2, "relu")),
    ],
)
def test_torch_init_same_seed_same_weights(ours, ref):
    torch.manual_seed(123)
    a = ours()
    torch.manual_seed(123)
    b = ref()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    torch.manual_seed(123)
    ours()
    after_ours = torch.rand(4)
    torch.manual_seed(123)
    ref()
    after_ref = torch.rand(4)
    assert torch.equal(after_ours, after_ref)  # same number of draws, so code after construction is reproducible


def test_forget_bias_added_to_forget_slice_only():
    torch.manual_seed(0)
    base = rn.LSTM(I, H, 2, bidirectional=True, forget_bias=0.0)
    torch.manual_seed(0)
    shifted = rn.LSTM(I, H, 2, bidirectional=True, forget_bias=1.5)
    for (name, p), q in zip(shifted.named_parameters(), base.parameters()):
        diff = p - q
        if name.startswith("bias_ih"):
            assert torch.allclose(diff[H:2 * H], torch.full((H,), 1.5)), name  # (i, f, g, o): f is rows H:2H
            assert diff[:H].abs().max() == 0 and diff[2 * H:].abs().max() == 0, name
        else:
            assert diff.abs().max() == 0, name


def test_cifg_forget_slice_is_first():
    torch.manual_seed(0)
    base = rn.CIFGLSTM(I, H, forget_bias=0.0)
    torch.manual_seed(0)
    shifted = rn.CIFGLSTM(I, H, forget_bias=1.0)
    diff = shifted.bias_ih_l0 - base.bias_ih_l0
    assert torch.allclose(diff[:H], torch.ones(H)) and diff[H:].abs().max() == 0  # (f, g, o)
    assert torch.equal(shifted.bias_hh_l0, base.bias_hh_l0)


def test_no_forget_gate_or_no_bias_ignores_forget_bias():
    torch.manual_seed(0)
    a = rn.LSTM(I, H, forget_gate=False, forget_bias=0.0)
    torch.manual_seed(0)
    b = rn.LSTM(I, H, forget_gate=False, forget_bias=3.0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    m = rn.LSTM(I, H, bias=False, forget_bias=3.0)
    assert [n for n, _ in m.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]


@pytest.mark.parametrize("cls,G,forget", [(rn.LSTM, 4, slice(H, 2 * H)), (rn.CIFGLSTM, 3, slice(0, H)), (rn.GRU, 3, None), (rn.RNN, 1, None)])
def test_keras_init(cls, G, forget):
    torch.manual_seed(0)
    m = cls(I, H, 2, bidirectional=True, init="keras", **({"forget_bias": 1.0} if forget is not None else {}))
    for name, p in m.named_parameters():
        if name.startswith("weight_ih"):
            fan_in = p.shape[1]
            limit = math.sqrt(6 / (fan_in + G * H))  # Glorot on Keras' (fan_in, G*H) kernel
            assert p.abs().max() <= limit and p.abs().max() > 0.8 * limit, name
            assert abs(p.std().item() - limit / math.sqrt(3)) < 0.25 * limit, name  # uniform, not a narrower law
        elif name.startswith("weight_hh"):
            # Keras draws the (H, G*H) recurrent kernel orthogonal: our (G*H, H) transpose has orthonormal columns
            assert torch.allclose(p.T @ p, torch.eye(H), atol=1e-5), name
        elif name.startswith("bias_ih") and forget is not None:
            assert torch.equal(p[forget], torch.ones(H)), name  # Keras' unit_forget_bias
            rest = torch.cat([p[: forget.start], p[forget.stop:]])
            assert rest.abs().max() == 0, name
        else:
            assert p.abs().max() == 0, name  # zero biases


def test_keras_rnn_recurrent_is_square_orthogonal():
    m = rn.RNN(I, H, init="keras")
    W = m.weight_hh_l0
    assert torch.allclose(W @ W.T, torch.eye(H), atol=1e-5) and torch.allclose(W.T @ W, torch.eye(H), atol=1e-5)


def test_reset_parameters_redraws():
    m = rn.GRU(I, H)
    before = m.weight_hh_l0.detach().clone()
    m.reset_parameters()
    assert not torch.equal(before, m.weight_hh_l0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_keras_init_other_dtypes(dtype):
    m = rn.LSTM(I, H, init="keras", dtype=dtype)
    W = m.weight_hh_l0.double()
    assert m.weight_hh_l0.dtype == dtype
    assert torch.allclose(W.T @ W, torch.eye(H, dtype=torch.float64), atol=5e-2 if dtype == torch.bfloat16 else 1e-6)


@pytest.mark.parametrize("ours_cls,torch_cls", [(rn.LSTM, torch.nn.LSTM), (rn.GRU, torch.nn.GRU)])
def test_keras_init_applies_to_torch_modules_with_the_same_draws(ours_cls, torch_cls):
    """rnnlab.nn.init.keras_init_ on a torch.nn baseline gives the weights rnnlab draws with init='keras'."""
    from rnnlab.nn.init import keras_init_

    ref = torch_cls(I, H, 2, bidirectional=True)
    torch.manual_seed(7)
    ours = ours_cls(I, H, 2, bidirectional=True, init="keras", **({"forget_bias": 1.0} if ours_cls is rn.LSTM else {}))
    torch.manual_seed(7)
    keras_init_(ref, forget_bias=1.0)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name
