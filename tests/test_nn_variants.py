"""Greff et al. (2017)'s LSTM variants (``rnnlab.nn.LSTM(variant=..., peephole=...)``): each against autograd
(gradcheck, float64), against an independent step written here from the docstring's equations, with the recorded
gradient norms, and equal to the known model it reduces to (NFG = lstm_noforget, CIFG = cifg, NP = lstm = torch).

The reference runs one sequence at a time, cut to its own length (no masks), one gate at a time from explicit row
blocks of the packed weights, as tests/test_nn_reference.py does for the other cells.
"""
import warnings

import pytest
import torch
from torch.func import functional_call

import rnnlab.nn as rn

T, B, I, H = 5, 3, 2, 3
LENGTHS = [5, 2, 4]
VARIANTS = ["vanilla", "np", "nig", "nfg", "nog", "niaf", "noaf", "cifg", "fgr"]
CASES = [(v, p) for v in VARIANTS for p in (False, True) if not (v == "np" and p)]
PACKING = {"nig": "fgo", "nfg": "igo", "nog": "ifg", "cifg": "fgo"}  # the rest: "ifgo" (torch's order)


def make(variant, peephole, bidirectional=True, seed=0, **kw):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the step aside to 'loop' of the non-default variants
        m = rn.LSTM(I, H, bidirectional=bidirectional, dtype=torch.float64, variant=variant, peephole=peephole, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)  # saturate a little, so a wrong gate shows
    return m


def step(m, d, x, h, c, a):
    """One step of direction d of m, gate by gate: returns h_t, c_t and [i_t; f_t; o_t] (FGR's next input)."""
    sfx = "_l0" + ("_reverse" if d else "")
    Wi, Wh, bi, bh = (getattr(m, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    gates = PACKING.get(m.variant, "ifgo")
    blk = {k: slice(j * H, (j + 1) * H) for j, k in enumerate(gates)}
    pre = {k: Wi[r] @ x + bi[r] + Wh[r] @ h + bh[r] for k, r in blk.items()}
    if m.variant == "fgr":
        R = m.weight_gg_l0_reverse if d else m.weight_gg_l0
        for j, k in enumerate("ifo"):
            pre[k] = pre[k] + R[j * H:(j + 1) * H] @ a  # R_{·k} [i_{t-1}; f_{t-1}; o_{t-1}]
    p = {}
    if m.peephole:
        w = getattr(m, "weight_peephole" + sfx)
        p = {k: w[j * H:(j + 1) * H] for j, k in enumerate(k for k in "ifo" if k in gates)}
    sig, one = torch.sigmoid, torch.ones(H, dtype=x.dtype)
    f = sig(pre["f"] + p["f"] * c if "f" in p else pre["f"]) if "f" in gates else one
    if m.variant == "cifg":
        i = 1 - f
    else:
        i = sig(pre["i"] + p["i"] * c if "i" in p else pre["i"]) if "i" in gates else one
    g = pre["g"] if m.variant == "niaf" else torch.tanh(pre["g"])
    c = f * c + i * g
    o = sig(pre["o"] + p["o"] * c if "o" in p else pre["o"]) if "o" in gates else one
    h = o * (c if m.variant == "noaf" else torch.tanh(c))
    return h, c, torch.cat([i, f, o])


def reference(m, x, h0, c0):
    """Output (T, B, 2H), h_n, c_n (2, B, H) and hs[(d, b, t)] = h_t, one sequence and one direction at a time."""
    outs, hn, cn, hs = [], [], [], {}
    for b in range(B):
        n = LENGTHS[b]
        ys = {}
        for d in (0, 1):
            h, c, a = h0[d, b], c0[d, b], torch.zeros(3 * H, dtype=x.dtype)
            for t in (reversed(range(n)) if d else range(n)):
                h, c, a = step(m, d, x[t, b], h, c, a)
                ys[(d, t)] = hs[(d, b, t)] = h
            hn.append(h)
            cn.append(c)
        rows = [torch.cat([ys[(0, t)], ys[(1, t)]]) for t in range(n)]
        outs.append(torch.stack(rows + [torch.zeros(2 * H, dtype=x.dtype)] * (T - n)))
    out = torch.stack(outs, 1)
    return out, torch.stack(hn).view(B, 2, H).transpose(0, 1), torch.stack(cn).view(B, 2, H).transpose(0, 1), hs


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
            for s in ((T, B, I), (2, B, H), (2, B, H))]


@pytest.mark.parametrize("variant,peephole", CASES)
def test_variant_matches_its_equations_gradients_and_recorded_grad_norms(variant, peephole):
    """Outputs, final states, every gradient and ||dJ/dh_t|| equal the gate-by-gate reference (float64)."""
    m = make(variant, peephole, backend="loop").record_grad_norms()
    x, h0, c0 = inputs()
    out, (hn, cn) = m(x, (h0, c0), lengths=LENGTHS)
    r_out, r_hn, r_cn, hs = reference(m, x, h0, c0)
    for ours, ref in ((out, r_out), (hn, r_hn), (cn, r_cn)):
        torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)

    g = torch.Generator().manual_seed(3)
    wo, wh = (torch.randn(t.shape, generator=g, dtype=torch.float64) for t in (out, hn))
    leaves = [x, h0, c0, *m.parameters()]
    loss, r_loss = ((o * wo).sum() + (h * wh).sum() for o, h in ((out, hn), (r_out, r_hn)))
    for a, b in zip(torch.autograd.grad(loss, leaves, retain_graph=True),
                    torch.autograd.grad(r_loss, leaves, retain_graph=True)):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)
    loss.backward()
    keys = list(hs)
    expected = {"l0": torch.zeros(B, T), "l0_reverse": torch.zeros(B, T)}
    for (d, b, t), gh in zip(keys, torch.autograd.grad(r_loss, [hs[k] for k in keys])):
        expected["l0_reverse" if d else "l0"][b, t] = gh.norm()
    for key, buf in m.grad_norms.items():
        torch.testing.assert_close(buf, expected[key], rtol=1e-5, atol=1e-7)
        assert (buf[1, 2:] == 0).all() and (buf[1, :2] > 0).all()  # sequence 1 has 2 steps


@pytest.mark.parametrize("variant,peephole", CASES)
def test_variant_gradients_are_the_derivatives_of_its_forward(variant, peephole):
    """torch.autograd.gradcheck through a bidirectional layer with lengths: input, both states, every weight."""
    torch.manual_seed(0)
    m = rn.LSTM(I, 2, 1, bidirectional=True, dtype=torch.float64, variant=variant, peephole=peephole, backend="loop")
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn(3, 2, I, dtype=torch.float64, requires_grad=True)
    h0, c0 = (torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True) for _ in range(2))

    def f(x, h0, c0, *ps):
        out, (hn, cn) = functional_call(m, dict(zip(names, ps)), (x, (h0, c0)), {"lengths": [3, 1]})
        return out, hn, cn

    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-6, rtol=1e-4)


def _outputs(m, x, h0, c0):
    out, (hn, cn) = m(x, (h0, c0), lengths=LENGTHS)
    return out, hn, cn


@pytest.mark.parametrize("backend", ["loop", "fused"])
def test_nfg_is_lstm_noforget_and_np_is_lstm(backend):
    """Same seed, same draws, same numbers: variant='nfg' is forget_gate=False, variant='np' the default LSTM."""
    x, h0, c0 = inputs()
    for variant, kw in (("nfg", {"forget_gate": False}), ("np", {})):
        a = make(variant, False, backend=backend)
        b = make("vanilla", False, backend=backend, **kw)
        assert a.state_dict().keys() == b.state_dict().keys()
        for u, v in zip(_outputs(a, x, h0, c0), _outputs(b, x, h0, c0)):
            assert torch.equal(u, v)
    assert make("nfg", False).forget_gate is False and rn.LSTM(I, H, forget_gate=False).variant == "nfg"


@pytest.mark.parametrize("backend", ["loop", "fused"])
def test_cifg_variant_is_cifg_lstm_with_its_weights(backend):
    a = make("cifg", False, backend=backend)
    torch.manual_seed(0)
    b = rn.CIFGLSTM(I, H, bidirectional=True, dtype=torch.float64, backend=backend)
    b.load_state_dict(a.state_dict())  # the same packing (f, g, o)
    x, h0, c0 = inputs()
    for u, v in zip(_outputs(a, x, h0, c0), _outputs(b, x, h0, c0)):
        torch.testing.assert_close(u, v, atol=1e-14, rtol=0)


def test_np_equals_torch_lstm():
    a = make("np", False)
    t = a.to_torch()
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.testing.assert_close(a(x)[0], t(x)[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "np"])
def test_zero_peepholes_and_zero_gate_recurrence_change_nothing(variant):
    """p = 0 gives the variant without peepholes; FGR with R = 0 gives the vanilla LSTM."""
    x, h0, c0 = inputs()
    with_p = make(variant, True, backend="loop")
    without = make(variant, False, backend="loop")
    with torch.no_grad():
        for name, p in with_p.named_parameters():
            p.copy_(without.state_dict()[name]) if name in without.state_dict() else p.zero_()
    for u, v in zip(_outputs(with_p, x, h0, c0), _outputs(without, x, h0, c0)):
        torch.testing.assert_close(u, v, atol=1e-14, rtol=0)
    if variant == "fgr":
        vanilla = make("vanilla", False, backend="loop")
        vanilla.load_state_dict({k: v for k, v in without.state_dict().items() if "weight_gg" not in k})
        with torch.no_grad():
            without.weight_gg_l0.zero_()
            without.weight_gg_l0_reverse.zero_()
        for u, v in zip(_outputs(without, x, h0, c0), _outputs(vanilla, x, h0, c0)):
            torch.testing.assert_close(u, v, atol=1e-14, rtol=0)


def test_a_variant_without_fused_loops_warns_once_and_runs_loop():
    m = make("nog", True, backend="fused")
    x, h0, c0 = inputs()
    with pytest.warns(UserWarning, match=r"variant='nog', peephole=True.*runs on the 'loop' backend") as record:
        fused = _outputs(m, x, h0, c0)
        _outputs(m, x, h0, c0)
    assert len(record) == 1
    m.backend = "loop"
    for u, v in zip(fused, _outputs(m, x, h0, c0)):
        assert torch.equal(u, v)


@pytest.mark.parametrize("variant", ["vanilla", "np", "nfg", "cifg"])
def test_variants_with_fused_loops_run_fused_without_a_warning(variant):
    m = make(variant, False, backend="fused")
    x, h0, c0 = inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _outputs(m, x, h0, c0)
    m.backend = "loop"
    for u, v in zip(out, _outputs(m, x, h0, c0)):
        torch.testing.assert_close(u, v, atol=1e-12, rtol=0)


@pytest.mark.parametrize("variant,gates,peepholes", [
    ("vanilla", 4, 3), ("nig", 3, 2), ("nfg", 3, 2), ("nog", 3, 2), ("niaf", 4, 3), ("noaf", 4, 3),
    ("cifg", 3, 2), ("fgr", 4, 3),
])
def test_each_variant_packs_only_the_gates_it_has(variant, gates, peepholes):
    """No dead parameter: every weight gets a gradient; the forget bias lands on f where there is one."""
    m = rn.LSTM(I, H, variant=variant, peephole=True, forget_bias=5.0, backend="loop", init="keras")
    assert m.weight_ih_l0.shape == (gates * H, I) and m.weight_peephole_l0.shape == (peepholes * H,)
    assert (m.forget_slice() is None) == (variant == "nfg")
    if variant != "nfg":
        assert (m.bias_ih_l0[m.forget_slice()] == 5.0).all()
    with torch.no_grad():  # keras init starts peepholes and R at zero, where gradients to c-paths still flow
        for p in m.parameters():
            p.add_(0.1)
    m(torch.randn(T, B, I))[0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize("kwargs,match", [
    ({"variant": "lstm"}, r"`variant` must be one of \['vanilla', 'np', 'nig'"),
    ({"variant": "np", "peephole": True}, r"`peephole` must be False with variant 'np'"),
    ({"variant": "nig", "forget_gate": False}, r"`forget_gate=False` is variant 'nfg': expected variant 'nfg'"),
])
def test_bad_variant_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rn.LSTM(I, H, **kwargs)


def test_only_the_plain_lstm_converts_to_torch():
    with pytest.raises(TypeError, match="has no torch.nn peer"):
        rn.LSTM(I, H, peephole=True).to_torch()
    assert rn.LSTM(I, H, variant="fgr").mode == "LSTM_FGR" and rn.LSTM(I, H, peephole=True).mode.endswith("PEEPHOLE")
