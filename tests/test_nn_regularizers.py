"""Zoneout, DropConnect on W_hh, variational (locked) dropout, layer normalisation and IndRNN (issue 35): their
equations against hand-written steps, exact gradients (gradcheck, float64, masks fixed), evaluation-time behaviour,
the masks' laws, the recorded per-timestep gradient norms, and the fused backend's equality with the loop."""
import warnings

import pytest
import torch
from torch.autograd import gradcheck

import rnnlab.nn as rn
from rnnlab.nn import base as nn_base
from rnnlab.nn.backends import loop

pytestmark = pytest.mark.usefixtures("one_thread")

T, B, I, H = 4, 3, 2, 3
D64 = torch.float64


def _tensors(G, seed=0, dtype=D64):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return r(T, B, I), r(B, H), r(B, H), r(G * H, I), r(G * H, H), r(G * H), r(G * H)


def _ln(v, gain, shift):
    mu, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
    return gain * (v - mu) / torch.sqrt(var + 1e-5) + shift


def _hand_lstm(x, h, c, w_ih, w_hh, b_ih, b_hh, d_h=None, d_c=None, ln=None):
    """The LSTM written gate by gate, with zoneout masks d (T, B, H) or floats, and haste's LayerNorm."""
    outs = []
    for t in range(x.size(0)):
        wx, uh = x[t] @ w_ih.T, h @ w_hh.T
        if ln is not None:
            wx, uh = _ln(wx, ln[0], ln[1]), _ln(uh, ln[2], ln[3])
        a = wx + b_ih + uh + b_hh
        i, f, g, o = a[:, :H].sigmoid(), a[:, H:2 * H].sigmoid(), a[:, 2 * H:3 * H].tanh(), a[:, 3 * H:].sigmoid()
        c_new = f * c + i * g
        h_new = o * (_ln(c_new, ln[4], ln[5]) if ln is not None else c_new).tanh()
        dh = 0.0 if d_h is None else (d_h[t] if torch.is_tensor(d_h) else d_h)
        dc = 0.0 if d_c is None else (d_c[t] if torch.is_tensor(d_c) else d_c)
        h, c = dh * h + (1 - dh) * h_new, dc * c + (1 - dc) * c_new
        outs.append(h)
    return torch.stack(outs), h, c


def _hand_gru(x, h, w_ih, w_hh, b_ih, b_hh, d_h=None, ln=None):
    outs = []
    for t in range(x.size(0)):
        wx, uh = x[t] @ w_ih.T, h @ w_hh.T
        if ln is not None:
            wx, uh = _ln(wx, ln[0], ln[1]), _ln(uh, ln[2], ln[3])
        gi, gh = wx + b_ih, uh + b_hh
        r = (gi[:, :H] + gh[:, :H]).sigmoid()
        z = (gi[:, H:2 * H] + gh[:, H:2 * H]).sigmoid()
        n = (gi[:, 2 * H:] + r * gh[:, 2 * H:]).tanh()
        h_new = (1 - z) * n + z * h
        dh = 0.0 if d_h is None else (d_h[t] if torch.is_tensor(d_h) else d_h)
        h = dh * h + (1 - dh) * h_new
        outs.append(h)
    return torch.stack(outs), h


def _masks(z, seed=1):
    return torch.bernoulli(torch.full((T, B, H), z, dtype=D64), generator=torch.Generator().manual_seed(seed))


def _ln_params(G, seed=2, cell=True):
    g = torch.Generator().manual_seed(seed)
    r = lambda n: torch.randn(n, generator=g, dtype=D64)  # noqa: E731
    return (1 + r(G * H), r(G * H), 1 + r(G * H), r(G * H)) + ((1 + r(H), r(H)) if cell else (None, None))


# --- zoneout -----------------------------------------------------------------------------------------------------
def test_lstm_zoneout_with_fixed_masks_is_the_hand_written_step_with_separate_cell_and_hidden_masks():
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _tensors(4)
    d_h, d_c = _masks(0.3, 1), _masks(0.6, 2)
    out, h, c = loop.run_layer("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, False, zoneout=(d_h, d_c))
    ref = _hand_lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, d_h, d_c)
    for a, b in zip((out, h, c), ref):
        torch.testing.assert_close(a, b)


def test_zoneout_at_evaluation_is_the_expectation_z_h_prev_plus_one_minus_z_h_new():
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _tensors(4)
    m = rn.LSTM(I, H, zoneout=0.25, zoneout_cell=0.5, backend="loop", dtype=D64).eval()
    with torch.no_grad():
        for n, p in zip(("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"), (w_ih, w_hh, b_ih, b_hh)):
            getattr(m, n).copy_(p)
        out, (h, c) = m(x, (h0[None], c0[None]))
        again, _ = m(x, (h0[None], c0[None]))
    ref = _hand_lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, 0.25, 0.5)
    torch.testing.assert_close(out, ref[0])
    torch.testing.assert_close(c[0], ref[2])
    assert torch.equal(out, again)  # no randomness at evaluation


def test_gru_zoneout_with_fixed_masks_is_the_hand_written_step():
    x, h0, _, w_ih, w_hh, b_ih, b_hh = _tensors(3)
    d_h = _masks(0.4)
    out, h, c = loop.run_layer("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, None, False, zoneout=(d_h, None))
    torch.testing.assert_close(out, _hand_gru(x, h0, w_ih, w_hh, b_ih, b_hh, d_h)[0])
    assert c is None


def test_zoneout_masks_in_training_keep_each_unit_with_probability_z_fresh_at_every_step(monkeypatch):
    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return loop.run_layer(*args, **kwargs)

    monkeypatch.setitem(nn_base.BACKENDS, "loop", spy)
    m = rn.LSTM(2, 50, zoneout=0.2, zoneout_cell=0.7, backend="loop").train()
    torch.manual_seed(0)
    m(torch.randn(40, 25, 2))
    d_h, d_c = seen["zoneout"]
    assert d_h.shape == d_c.shape == (40, 25, 50)
    assert set(d_h.unique().tolist()) == {0.0, 1.0}
    assert abs(d_h.mean().item() - 0.2) < 0.01 and abs(d_c.mean().item() - 0.7) < 0.01
    assert not torch.equal(d_h[0], d_h[1])  # a new mask at every step
    m.eval()
    m(torch.randn(3, 2, 2))
    assert seen["zoneout"] == (0.2, 0.7)


def test_a_zoned_out_step_passes_dJ_dh_back_unchanged_and_the_norms_record_it():
    m = rn.GRU(I, H, backend="loop", dtype=D64)
    x = torch.randn(T, B, I, dtype=D64)
    d_h = torch.zeros(T, B, H, dtype=D64)
    d_h[-1] = 1.0  # the last step keeps every unit: h_T = h_{T-1}
    buf = torch.zeros(B, T)
    out, _, _ = loop.run_layer("gru", x, torch.zeros(B, H, dtype=D64), None, *m._layer_weights(0, 0), None, False,
                               zoneout=(d_h, None), grad_norms=buf)
    out[-1].sum().backward()
    torch.testing.assert_close(buf[:, -1], torch.full((B,), H ** 0.5))
    torch.testing.assert_close(buf[:, -2], torch.full((B,), H ** 0.5))  # the identity path


# --- layer norm ----------------------------------------------------------------------------------------------------
def test_layer_norm_lstm_normalises_both_preactivations_and_the_cell_read_by_the_output_as_haste():
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _tensors(4)
    ln = _ln_params(4)
    out, h, c = loop.run_layer("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, False, layer_norm=ln)
    ref = _hand_lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, ln=ln)
    for a, b in zip((out, h, c), ref):
        torch.testing.assert_close(a, b)


def test_layer_norm_gru_is_the_hand_written_step():
    x, h0, _, w_ih, w_hh, b_ih, b_hh = _tensors(3)
    ln = _ln_params(3, cell=False)
    out, _, _ = loop.run_layer("gru", x, h0, None, w_ih, w_hh, b_ih, b_hh, None, False, layer_norm=ln)
    torch.testing.assert_close(out, _hand_gru(x, h0, w_ih, w_hh, b_ih, b_hh, ln=ln)[0])


def test_layer_norm_parameters_start_as_the_identity_normalisation_and_are_named_per_layer():
    m = rn.LSTM(I, H, 2, bidirectional=True, layer_norm=True)
    names = [n for n, _ in m.named_parameters() if n.startswith("ln_")]
    assert "ln_weight_c_l1_reverse" in names and len(names) == 6 * 4
    assert bool(m.ln_weight_ih_l0.eq(1).all()) and bool(m.ln_bias_hh_l1.eq(0).all())
    assert not any(n.startswith("ln_weight_c") for n, _ in rn.GRU(I, H, layer_norm=True).named_parameters())
    with pytest.raises(TypeError, match="layer_norm=True"):
        m.to_torch()


# --- IndRNN --------------------------------------------------------------------------------------------------------
def test_indrnn_is_phi_of_wx_plus_u_times_h_with_u_clamped_to_two_to_the_one_over_T():
    m = rn.IndRNN(I, H, backend="loop", dtype=D64)
    assert m.weight_hh_l0.shape == (H,) and "indrnn" in rn.CELLS
    with torch.no_grad():
        m.weight_hh_l0.copy_(torch.tensor([0.5, -3.0, 3.0]))
    x = torch.randn(T, B, I, dtype=D64)
    out, _ = m(x)
    bound = 2 ** (1 / T)
    u = torch.tensor([0.5, -bound, bound], dtype=D64)
    h, ref = torch.zeros(B, H, dtype=D64), []
    for t in range(T):
        h = torch.relu(x[t] @ m.weight_ih_l0.T + m.bias_ih_l0 + u * h + m.bias_hh_l0)
        ref.append(h)
    torch.testing.assert_close(out, torch.stack(ref))
    assert rn.IndRNN(I, H, recurrent_max=0.7).constrained(torch.tensor([2.0]), 100).item() == pytest.approx(0.7)
    with pytest.raises(ValueError, match="`recurrent_max` must be None or a number > 0"):
        rn.IndRNN(I, H, recurrent_max=0)


# --- gradients -----------------------------------------------------------------------------------------------------
GRADCHECK = {
    "lstm_zoneout": ("lstm", 4, lambda: {"zoneout": (_masks(0.3, 1), _masks(0.5, 2))}),
    "lstm_zoneout_eval": ("lstm", 4, lambda: {"zoneout": (0.3, 0.5)}),
    "gru_zoneout": ("gru", 3, lambda: {"zoneout": (_masks(0.3), None)}),
    "rnn_zoneout": ("rnn", 1, lambda: {"zoneout": (_masks(0.3), None)}),
    "lstm_layer_norm": ("lstm", 4, lambda: {"layer_norm": _ln_params(4)}),
    "gru_layer_norm": ("gru", 3, lambda: {"layer_norm": _ln_params(3, cell=False)}),
}


@pytest.mark.parametrize("name", list(GRADCHECK))
def test_gradcheck_float64_with_lengths_both_directions_and_fixed_masks(name):
    cell, G, options = GRADCHECK[name]
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = [t.requires_grad_() for t in _tensors(G)]
    lstm = cell == "lstm"
    kw = options()
    ln = [p.requires_grad_() for p in kw.pop("layer_norm", ()) if p is not None]
    lengths = torch.tensor([4, 2, 1])

    def f(x, h0, c0, w_ih, w_hh, b_ih, b_hh, *ln):
        extra = dict(kw, layer_norm=(*ln, None, None)[:6]) if ln else kw
        res = []
        for reverse in (False, True):
            out, h, c = loop.run_layer(cell, x, h0, c0 if lstm else None, w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                                       **extra)
            res += [out, h] + ([c] if lstm else [])
        return tuple(res)

    assert gradcheck(f, (x, h0, c0, w_ih, w_hh, b_ih, b_hh, *ln))


def test_gradcheck_indrnn_through_the_module_with_its_clamp_and_weight_dropout_fixed_by_the_seed():
    m = rn.IndRNN(I, H, bidirectional=True, weight_dropout=0.3, backend="loop", dtype=D64)
    with torch.no_grad():
        m.weight_hh_l0.copy_(torch.tensor([0.5, -0.9, 0.2]))  # inside the bound: the clamp is the identity there
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn(T, B, I, dtype=D64, requires_grad=True)

    def f(x, *ps):
        torch.manual_seed(3)  # the same DropConnect mask at every evaluation
        return torch.func.functional_call(m, dict(zip(names, ps)), (x,), {"lengths": torch.tensor([4, 2, 3])})[0]

    assert gradcheck(f, (x, *params))


# --- DropConnect and variational dropout ------------------------------------------------------------------------
def _spy(monkeypatch, backend="loop"):
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return nn_base.BACKENDS_BEFORE[backend](*args, **kwargs)

    monkeypatch.setattr(nn_base, "BACKENDS_BEFORE", dict(nn_base.BACKENDS), raising=False)
    monkeypatch.setitem(nn_base.BACKENDS, backend, spy)
    return calls


def test_weight_dropout_drops_entries_of_w_hh_once_per_forward_pass_rescaled_by_one_over_one_minus_p(monkeypatch):
    calls = _spy(monkeypatch)
    m = rn.LSTM(I, 20, bidirectional=True, weight_dropout=0.4, backend="loop")
    m(torch.randn(T, B, I))
    masks = []
    for (args, _), w in zip(calls, (m.weight_hh_l0, m.weight_hh_l0_reverse)):
        ratio = args[5] / w  # the W_hh the step reads, one matrix for the whole sequence
        assert torch.allclose(ratio[ratio != 0], torch.tensor(1 / 0.6))
        masks.append(ratio != 0)
    assert abs(masks[0].float().mean().item() - 0.6) < 0.08 and not torch.equal(*masks)  # one mask per direction
    calls.clear()
    m.eval()(torch.randn(T, B, I))
    assert calls[0][0][5] is m.weight_hh_l0


def test_variational_dropout_is_one_mask_per_sequence_the_same_at_every_step_on_inputs_and_output(monkeypatch):
    calls = _spy(monkeypatch)
    m = rn.GRU(5, 6, 2, variational_dropout=0.5, backend="loop")
    x = torch.rand(T, B, 5) + 0.5
    out, _ = m(x)
    x0, x1 = calls[0][0][1], calls[1][0][1]
    for seen, clean in ((x0, x), (x1, None), (out, None)):
        if clean is None:
            continue
        ratio = seen / clean
        assert torch.equal(ratio, ratio[:1].expand_as(ratio))  # the same mask at every step
        assert set(ratio.unique().tolist()) == {0.0, 2.0}
    # layer 1's input and the output: each step's zeros fall on the same (sequence, feature) entries
    for y in (x1, out):
        zero = y == 0
        assert torch.equal(zero, zero[:1].expand_as(zero)) and zero.any()
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])


# --- backends ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fused_gives_the_loop_numbers_with_weight_and_variational_dropout_under_the_same_seed(cell):
    res = {}
    for backend in ("loop", "fused"):
        torch.manual_seed(0)
        m = rn.build_cell(cell, I, H, num_layers=2, bidirectional=True, weight_dropout=0.3, variational_dropout=0.3,
                          backend=backend, dtype=D64).record_grad_norms()
        x = torch.randn(T, B, I, dtype=D64, requires_grad=True)
        torch.manual_seed(1)
        out, _ = m(x, lengths=[4, 2, 3])
        out.pow(2).sum().backward()
        res[backend] = (out, x.grad, *(p.grad for p in m.parameters()), *m.grad_norms.values())
    for a, b in zip(*res.values()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kwargs", [{"zoneout": 0.1}, {"layer_norm": True}])
def test_zoneout_and_layer_norm_fall_back_to_the_loop_with_one_warning(kwargs):
    torch.manual_seed(0)
    m = rn.LSTM(I, H, backend="fused", **kwargs).eval()
    with pytest.warns(UserWarning, match="runs on the 'loop' backend") as record:
        m(torch.randn(T, B, I))
        m(torch.randn(T, B, I))
    assert len(record) == 1
    m.backend = "loop"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for the loop: no warning
        rn.LSTM(I, H, backend="loop", **kwargs)(torch.randn(T, B, I))


def test_the_defaults_change_nothing_and_print_nothing():
    torch.manual_seed(0)
    plain = rn.LSTM(I, H, 2)
    torch.manual_seed(0)
    off = rn.LSTM(I, H, 2, zoneout=0.0, weight_dropout=0.0, variational_dropout=0.0, layer_norm=False)
    x = torch.randn(T, B, I)
    assert torch.equal(plain(x)[0], off(x)[0]) and repr(plain) == repr(off)
    with pytest.raises(ValueError, match=r"`zoneout` must be a probability in \[0, 1\): got 1"):
        rn.GRU(I, H, zoneout=1)


# --- with Greff's LSTM variants (main's rnnlab.nn.LSTM(variant=..., peephole=...)) ---------------------------------

def test_zoneout_of_a_greff_variant_mixes_the_variants_own_step_with_the_previous_state():
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _tensors(3)  # 'nog': i, f, g
    p = torch.randn(2 * H, generator=torch.Generator().manual_seed(3), dtype=D64)  # peepholes p_i, p_f
    d_h, d_c = _masks(0.3, 1), _masks(0.6, 2)
    opts = dict(variant="nog", weight_peephole=p)
    out, h, c = loop.run_layer("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, False, zoneout=(d_h, d_c), **opts)
    hr, cr = h0, c0
    for t in range(T):  # the variant's step without zoneout, then h_t = d ⊙ h_{t-1} + (1 - d) ⊙ h~_t
        _, h1, c1 = loop.run_layer("lstm", x[t:t + 1], hr, cr, w_ih, w_hh, b_ih, b_hh, None, False, **opts)
        hr, cr = d_h[t] * hr + (1 - d_h[t]) * h1, d_c[t] * cr + (1 - d_c[t]) * c1
        torch.testing.assert_close(out[t], hr)
    torch.testing.assert_close(h, hr)
    torch.testing.assert_close(c, cr)


@pytest.mark.parametrize("kwargs", [dict(variant="nig"), dict(variant="cifg"), dict(variant="fgr"),
                                    dict(variant="vanilla", peephole=True)])
def test_layer_norm_with_a_variant_other_than_vanilla_np_nfg_or_with_peepholes_is_refused_naming_both(kwargs):
    from rnnlab.models.config import ModelConfig
    with pytest.raises(ValueError, match=r"layer_norm.*variant"):
        rn.LSTM(I, H, layer_norm=True, **kwargs)
    with pytest.raises(ValueError, match=r"model\.layer_norm.*model\.variant"):
        ModelConfig(cell="lstm", layer_norm=True, **kwargs)
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _tensors(4)
    with pytest.raises(ValueError, match=r"layer_norm.*variant"):
        loop.run_layer("lstm", x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, False, layer_norm=_ln_params(4),
                       variant="np", weight_peephole=torch.zeros(3 * H, dtype=D64))


def test_layer_norm_runs_with_the_variants_that_are_the_plain_step():
    for kwargs in (dict(variant="np"), dict(variant="nfg"), dict(forget_gate=False)):
        out, _ = rn.LSTM(I, H, layer_norm=True, backend="loop", **kwargs)(torch.randn(T, B, I))
        assert out.shape == (T, B, H)
