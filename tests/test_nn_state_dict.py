"""Checkpoints convert without a mapping table: state_dict() loads into torch.nn and back, from_torch/to_torch
keep configuration and weights, and the converted module computes the same function."""
import pytest
import torch

import rnnlab.nn as rn

I, H = 5, 4
PAIRS = [
    (rn.LSTM, torch.nn.LSTM, {}),
    (rn.GRU, torch.nn.GRU, {}),
    (rn.RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
]
CONFIG = dict(num_layers=2, bidirectional=True, batch_first=True, bias=True)


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("ours_cls,torch_cls,extra", PAIRS)
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trip(ours_cls, torch_cls, extra, bias):
    config = {**CONFIG, "bias": bias}
    ours, ref = ours_cls(I, H, **config, **extra), torch_cls(I, H, **config, **extra)
    ref.load_state_dict(ours.state_dict())  # strict: same names and shapes, in the same order
    assert same_state(ours, ref)
    fresh = ours_cls(I, H, **config, **extra)
    fresh.load_state_dict(ref.state_dict())
    assert same_state(fresh, ours)


@pytest.mark.parametrize("ours_cls,torch_cls,extra", PAIRS)
def test_from_torch_to_torch(ours_cls, torch_cls, extra):
    ref = torch_cls(I, H, dropout=0.25, **CONFIG, **extra).double().eval()
    ours = ours_cls.from_torch(ref)
    assert isinstance(ours, ours_cls) and not ours.training
    for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional"):
        assert getattr(ours, attr) == getattr(ref, attr), attr
    assert ours.weight_hh_l1_reverse.dtype == torch.float64
    assert same_state(ours, ref)
    x = torch.randn(3, 6, I, dtype=torch.float64)
    assert (ours(x)[0] - ref(x)[0]).abs().max() <= 1e-10

    back = ours.to_torch()
    assert type(back) is torch_cls and same_state(back, ref)
    assert getattr(back, "nonlinearity", None) == getattr(ref, "nonlinearity", None)
    assert (back(x)[0] - ref(x)[0]).abs().max() == 0


def test_from_torch_passes_rnnlab_options():
    ours = rn.LSTM.from_torch(torch.nn.LSTM(I, H), backend="loop")
    assert ours.backend == "loop"


def test_parameter_names_and_shapes_match_torch():
    ours, ref = rn.LSTM(I, H, 3, bidirectional=True), torch.nn.LSTM(I, H, 3, bidirectional=True)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]


def test_extra_repr_like_torch():
    kw = dict(num_layers=2, bias=False, batch_first=True, dropout=0.5, bidirectional=True)
    assert repr(rn.LSTM(I, H, **kw)) == repr(torch.nn.LSTM(I, H, **kw))
    assert repr(rn.GRU(I, H)) == repr(torch.nn.GRU(I, H))
    assert repr(rn.RNN(I, H, nonlinearity="identity", init="keras")) == "RNN(5, 4, nonlinearity='identity', init='keras')"
    assert repr(rn.CIFGLSTM(I, H, forget_bias=2.0)) == "CIFGLSTM(5, 4, forget_bias=2.0)"


# --- torch.nn's module attributes that third-party code reads (AWD-LSTM's WeightDrop, weight_norm) (issue 29) -----
ATTR_PAIRS = PAIRS + [(rn.RNN, torch.nn.RNN, {}), (rn.LSTM, torch.nn.LSTM, {"proj_size": 2})]


@pytest.mark.parametrize("ours_cls,torch_cls,extra", ATTR_PAIRS)
@pytest.mark.parametrize("bias", [True, False])
def test_flat_weights_all_weights_and_mode_are_torch_nn_s(ours_cls, torch_cls, extra, bias):
    ours, ref = ours_cls(I, H, 2, bias=bias, bidirectional=True, **extra), torch_cls(I, H, 2, bias=bias,
                                                                                      bidirectional=True, **extra)
    assert ours.mode == ref.mode
    assert ours._flat_weights_names == ref._flat_weights_names
    assert ours._all_weights == ref._all_weights
    assert [id(w) for w in ours._flat_weights] == [id(getattr(ours, n)) for n in ref._flat_weights_names]
    assert [w.shape for w in ours._flat_weights] == [w.shape for w in ref._flat_weights]


def test_modes_of_the_variants_without_a_torch_peer():
    assert rn.CIFGLSTM(I, H).mode == "CIFG"
    assert rn.LSTM(I, H, forget_gate=False).mode == "LSTM_NOFORGET"
    assert rn.RNN(I, H, nonlinearity="identity").mode == "RNN_IDENTITY"


@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated")
@pytest.mark.parametrize("name,extra,num_params", [("weight_ih_l0", {}, 4), ("weight_hr_l0", {"proj_size": 2}, 5)])
def test_weight_norm_turns_one_flat_weight_into_a_tensor_and_back(name, extra, num_params):
    """The facts of torch's test_rnn_weight_norm, and the reparametrised module still runs torch.nn's function."""
    ours = rn.LSTM(I, H, **extra, dtype=torch.float64, backend="loop")
    ref = torch.nn.LSTM(I, H, **extra, dtype=torch.float64)
    ref.load_state_dict(ours.state_dict())
    torch.nn.utils.weight_norm(ours, name=name)
    torch.nn.utils.weight_norm(ref, name=name)
    assert sum(isinstance(p, torch.nn.Parameter) for p in ours._flat_weights) == num_params - 1
    x = torch.randn(3, 2, I, dtype=torch.float64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-12, rtol=0)
    torch.nn.utils.remove_weight_norm(ours, name=name)
    assert sum(isinstance(p, torch.nn.Parameter) for p in ours._flat_weights) == num_params
    assert name in dict(ours.named_parameters()) and name + "_v" not in dict(ours.named_parameters())


def test_a_weight_replaced_by_a_plain_tensor_is_used_by_forward():
    """WeightDrop (AWD-LSTM) deletes weight_hh_l0 and sets a dropped copy as a plain tensor before each forward."""
    m = rn.LSTM(I, H, dtype=torch.float64)
    x = torch.randn(3, 2, I, dtype=torch.float64)
    raw = m.weight_hh_l0
    del m._parameters["weight_hh_l0"]
    m.weight_hh_l0 = torch.zeros_like(raw)
    assert m._flat_weights[1] is m.weight_hh_l0
    ref = rn.LSTM(I, H, dtype=torch.float64)
    ref.load_state_dict({**m.state_dict(), "weight_hh_l0": torch.zeros_like(raw)})
    torch.testing.assert_close(m(x)[0], ref(x)[0], atol=0, rtol=0)
