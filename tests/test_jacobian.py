"""Per-step Jacobian norms (power iteration with JVP/VJP) against torch.autograd.functional.jacobian."""
import pytest
import torch

from rnnlab.diagnostics.jacobian import jacobian_norms, layer_states, recurrent_weight_norms, step_jacobian_norms
from rnnlab.nn.registry import build_cell
from rnnlab.nn.backends.loop import run_layer


def _exact_sigmas(module, x):
    """sigma_max of d s_t / d s_{t-1} by autograd's full Jacobian, per (t, b), layer 0 forward."""
    prev_h, prev_c, _, _ = layer_states(module, 0, 0, x)
    T, B, H = prev_h.shape
    w = module._layer_weights(0, 0)
    out = torch.empty(T, B, dtype=x.dtype)
    for t in range(T):
        for b in range(B):
            def f(s):
                h, c = (s[:H], s[H:]) if prev_c is not None else (s, None)
                _, h1, c1 = run_layer(module.cell, x[t:t + 1, b:b + 1], h[None], None if c is None else c[None],
                                      *w, None, False, nonlinearity=module.nonlinearity,
                                      forget_gate=module.forget_gate)
                return h1[0] if c1 is None else torch.cat([h1[0], c1[0]])
            s = prev_h[t, b] if prev_c is None else torch.cat([prev_h[t, b], prev_c[t, b]])
            J = torch.autograd.functional.jacobian(f, s)
            out[t, b] = torch.linalg.matrix_norm(J, ord=2)
    return out


@pytest.mark.parametrize("cell", ["rnn", "lstm", "lstm_noforget", "cifg", "gru"])
def test_power_iteration_matches_the_largest_singular_value_of_autograds_jacobian(cell):
    torch.manual_seed(0)
    module = build_cell(cell, 3, 4, init="torch").double()
    x = torch.randn(6, 2, 3, dtype=torch.float64)  # (T, B, I)
    prev_h, prev_c, _, _ = layer_states(module, 0, 0, x)
    sigma = step_jacobian_norms(module, 0, 0, x, prev_h, prev_c, iters=200)
    torch.testing.assert_close(sigma, _exact_sigmas(module, x), rtol=1e-6, atol=1e-9)


def test_an_rnn_with_identity_recurrence_and_no_input_has_unit_jacobian_norm_at_the_origin():
    # h_t = tanh(I h_{t-1}) at h = 0: the Jacobian is I, sigma = 1 by hand
    module = build_cell("rnn", 1, 3, bias=False)
    with torch.no_grad():
        module.weight_hh_l0.copy_(torch.eye(3))
        module.weight_ih_l0.zero_()
    sig = jacobian_norms(module, torch.zeros(4, 2, 1), iters=5)["l0"]  # time-major module: (T, B, I)
    torch.testing.assert_close(sig, torch.ones(2, 4))


def test_padded_steps_have_no_jacobian_and_reverse_layers_are_keyed_like_the_gradient_series():
    torch.manual_seed(0)
    module = build_cell("gru", 2, 3, bidirectional=True, num_layers=2, batch_first=True)
    sig = jacobian_norms(module, torch.randn(2, 5, 2), torch.tensor([5, 3]), iters=5)
    assert sorted(sig) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    assert sig["l1_reverse"].shape == (2, 5)
    assert torch.isnan(sig["l0"][1, 3:]).all() and torch.isfinite(sig["l0"][1, :3]).all()


def test_the_spectral_norm_of_a_scaled_orthogonal_recurrent_matrix_is_its_scale():
    from rnnlab.nn.init import recurrent_init_
    module = build_cell("rnn", 2, 8)
    recurrent_init_(module, "orthogonal", 1.5)
    assert recurrent_weight_norms(module)["l0"] == pytest.approx(1.5, rel=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recurrent_init_puts_every_gate_block_at_the_requested_radius(cell):
    from rnnlab.nn.init import recurrent_init_
    torch.manual_seed(0)
    module = build_cell(cell, 2, 64)
    for kind, scale, tol in (("identity", 1.2, 1e-6), ("orthogonal", 0.8, 1e-5), ("uniform", 1.5, 0.15)):
        recurrent_init_(module, kind, scale)
        for block in module.weight_hh_l0.detach().split(64):
            radius = torch.linalg.eigvals(block).abs().max().item()
            assert radius == pytest.approx(scale, rel=tol), (kind, radius)


def test_recurrent_init_leaves_input_weights_and_biases_alone_and_names_a_bad_scale():
    from rnnlab.nn.init import recurrent_init_
    module = build_cell("lstm", 2, 4)
    before = {k: v.clone() for k, v in module.state_dict().items() if "hh" not in k or "bias" in k}
    recurrent_init_(module, "orthogonal", 2.0)
    assert all(torch.equal(module.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(ValueError, match=r"`recurrent_scale` must be >= 0 \(the spectral radius of W_hh\): got -1"):
        recurrent_init_(module, "identity", -1)
    with pytest.raises(ValueError, match=r"`recurrent_init` must be one of"):
        recurrent_init_(module, "eye")


def test_the_jacobian_step_of_a_greff_variant_with_zoneout_is_the_variants_evaluation_time_step():
    import rnnlab.nn as rn
    torch.manual_seed(0)
    z = 0.3
    module = rn.LSTM(3, 4, variant="nog", peephole=True, zoneout=z, backend="loop").double().eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    prev_h, prev_c, _, _ = layer_states(module, 0, 0, x)
    w, opts = module._layer_weights(0, 0), module._loop_only_kwargs(0, 0)
    H = 4
    exact = torch.empty(5, 2, dtype=x.dtype)
    for t in range(5):
        for b in range(2):
            def f(s):
                _, h1, c1 = run_layer("lstm", x[t:t + 1, b:b + 1], s[None, :H], s[None, H:], *w, None, False,
                                      zoneout=(z, z), **opts)
                return torch.cat([h1[0], c1[0]])
            J = torch.autograd.functional.jacobian(f, torch.cat([prev_h[t, b], prev_c[t, b]]))
            exact[t, b] = torch.linalg.matrix_norm(J, ord=2)
    sigma = step_jacobian_norms(module, 0, 0, x, prev_h, prev_c, iters=200)
    torch.testing.assert_close(sigma, exact, rtol=1e-6, atol=1e-9)
