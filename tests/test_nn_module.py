"""Module plumbing around run_layer: inter-layer dropout as torch, the backend dispatch table, lengths forms."""
import warnings

import pytest
import torch

import rnnlab.nn as rn
from rnnlab.nn import base
from rnnlab.nn.backends import loop

T, B, I, H = 5, 3, 4, 2


def test_dropout_between_layers_not_after_last():
    """dropout=1 zeroes the input of layer 1 in training, so the output is layer 1 run on zeros; never the output."""
    torch.manual_seed(0)
    m = rn.GRU(I, H, 2, dropout=1.0).double().train()
    x = torch.randn(T, B, I, dtype=torch.float64)
    out, hn = m(x)
    top = rn.GRU(H, H, 1).double()
    top.load_state_dict({k.replace("_l1", "_l0"): v for k, v in m.state_dict().items() if "_l1" in k})
    out_top, hn_top = top(torch.zeros(T, B, H, dtype=torch.float64))
    assert torch.equal(out, out_top) and torch.equal(hn[1:], hn_top)
    assert out.abs().sum() > 0


def test_dropout_off_in_eval():
    torch.manual_seed(0)
    m = rn.LSTM(I, H, 2, dropout=0.5, bidirectional=True)
    ref = rn.LSTM(I, H, 2, bidirectional=True)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(T, B, I)
    assert torch.equal(m.eval()(x)[0], ref(x)[0])
    assert not torch.equal(m.train()(x)[0], ref(x)[0])


def test_backend_table_is_the_dispatch_point(monkeypatch):
    """A backend is one entry in BACKENDS: the module calls it once per (layer, direction), reverse for _reverse."""
    calls = []

    def spy(cell, x, *args, **kwargs):
        calls.append((cell, x.shape, args[-1], kwargs["grad_norms"] is not None))
        return loop.run_layer(cell, x, *args, **kwargs)

    monkeypatch.setitem(base.BACKENDS, "spy", spy)
    m = rn.CIFGLSTM(I, H, 2, bidirectional=True, backend="spy").record_grad_norms()
    ref = rn.CIFGLSTM(I, H, 2, bidirectional=True, backend="loop")
    ref.load_state_dict(m.state_dict())
    x = torch.randn(T, B, I)
    assert torch.equal(m(x)[0], ref(x)[0])
    assert calls == [
        ("cifg", (T, B, I), False, True), ("cifg", (T, B, I), True, True),
        ("cifg", (T, B, 2 * H), False, True), ("cifg", (T, B, 2 * H), True, True),
    ]


def test_lengths_list_tensor_and_batch_first_agree():
    torch.manual_seed(0)
    m = rn.LSTM(I, H, bidirectional=True)
    mb = rn.LSTM(I, H, bidirectional=True, batch_first=True)
    mb.load_state_dict(m.state_dict())
    x = torch.randn(T, B, I)
    out_list, (h_list, _) = m(x, lengths=[5, 1, 3])
    out_tensor, (h_tensor, _) = m(x, lengths=torch.tensor([5, 1, 3]))
    out_bf, (h_bf, _) = mb(x.transpose(0, 1), lengths=[5, 1, 3])
    assert torch.equal(out_list, out_tensor) and torch.equal(h_list, h_tensor)
    assert torch.equal(out_bf.transpose(0, 1), out_list) and torch.equal(h_bf, h_list)


def test_record_grad_norms_under_no_grad_and_batch_first():
    m = rn.RNN(I, H, batch_first=True).record_grad_norms()
    with torch.no_grad():
        m(torch.randn(B, T, I))
    assert m.grad_norms["l0"].abs().sum() == 0  # nothing to record, and no error
    m(torch.randn(B, T, I), lengths=[2, 5, 1])[0].sum().backward()
    buf = m.grad_norms["l0"]
    assert buf.shape == (B, T) and buf[0, 2:].abs().sum() == 0 and (buf[0, :2] > 0).all()
    assert torch.equal(m.last_lengths, torch.tensor([2, 5, 1]))


@pytest.mark.cuda
def test_cuda_lengths_on_device_or_cpu_agree():
    torch.manual_seed(0)
    m = rn.LSTM(I, H, 2, bidirectional=True, device="cuda")
    x = torch.randn(T, B, I, device="cuda")
    out_cpu_len, _ = m(x, lengths=torch.tensor([5, 1, 3]))
    out_dev_len, _ = m(x, lengths=torch.tensor([5, 1, 3], device="cuda"))
    assert torch.equal(out_cpu_len, out_dev_len)
    assert m.last_lengths.device.type == "cpu"


@pytest.mark.cuda
@pytest.mark.parametrize("backend,hidden", [("fused", H), ("triton", 4), ("triton", 32)],
                         ids=["fused", "triton-per-step", "triton-persistent"])
def test_cuda_forward_backward_never_sync_with_the_host(backend, hidden):
    """No host synchronisation anywhere in forward/backward (lengths on the device, grad norms recorded), once a
    first call has compiled what it needs (compilation may sync). Hidden 32 runs Triton's persistent kernels."""
    if backend == "triton" and not base.triton_backend.available():
        pytest.skip("triton is not installed")
    m = rn.LSTM(I, hidden, 2, bidirectional=True, device="cuda", backend=backend).record_grad_norms()
    x = torch.randn(T, B, I, device="cuda", requires_grad=True)
    lengths = torch.tensor([5, 1, 3], device="cuda")
    m(x, lengths=lengths)[0].sum().backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, _ = m(x, lengths=lengths)
        out.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert m.grad_norms["l1_reverse"][1, 1:].abs().sum() == 0


@pytest.mark.parametrize("device,dtype,has_triton,expected", [
    ("cpu", torch.float32, True, "fused"), ("cpu", torch.float64, True, "fused"),
    ("cuda", torch.float32, True, "triton"), ("cuda", torch.float64, True, "triton"),
    ("cuda", torch.float16, True, "fused"),  # the persistent kernels take float32/float64 only
    ("cuda", torch.float32, False, "fused"),  # no triton installed
])
def test_auto_backend_is_the_fastest_correct_one(device, dtype, has_triton, expected, monkeypatch):
    monkeypatch.setattr(base.triton_backend, "available", lambda: has_triton)
    assert base.resolve_backend("auto", torch.device(device), dtype) == expected
    assert base.resolve_backend("loop", torch.device(device), dtype) == "loop"  # an explicit choice stands


@pytest.mark.parametrize("cls", [rn.LSTM, rn.CIFGLSTM, rn.GRU, rn.RNN])
@pytest.mark.parametrize("backend", ["loop", "fused"])
def test_under_autocast_the_recurrence_runs_in_float32_and_gives_its_numbers(cls, backend):
    # Lightning's precision='bf16-mixed' used to end in "expected scalar type Float but found BFloat16"
    torch.manual_seed(0)
    m = cls(I, H, 2, bidirectional=True, backend=backend)
    x = torch.randn(T, B, I).to(torch.bfloat16)  # the values a bfloat16 layer before the cell hands over
    h0 = torch.randn(4, B, H).to(torch.bfloat16)
    hx = (h0, h0.flip(0)) if cls in (rn.LSTM, rn.CIFGLSTM) else h0
    to32 = (lambda h: tuple(t.float() for t in h)) if isinstance(hx, tuple) else (lambda h: h.float())
    ref, ref_n = m(x.float(), to32(hx), lengths=[5, 3, 1])
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, h_n = m(x, hx, lengths=[5, 3, 1])
        packed, _ = m(torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3, 1]), hx)
    states = (lambda h: torch.cat([t.flatten() for t in (h if isinstance(h, tuple) else (h,))]))
    assert out.dtype == torch.float32 and torch.equal(out, ref) and torch.equal(states(h_n), states(ref_n))
    assert torch.equal(torch.nn.utils.rnn.pad_packed_sequence(packed)[0], ref)
    out.sum().backward()
    assert x.grad.dtype == torch.bfloat16 and x.grad.abs().sum() > 0


EMPTY_PEERS = [(rn.LSTM, torch.nn.LSTM), (rn.GRU, torch.nn.GRU), (rn.RNN, torch.nn.RNN), (rn.CIFGLSTM, torch.nn.LSTM)]


def _empty_batch_shapes(backend):
    for ours, peer in EMPTY_PEERS:
        for kwargs in ({}, {"num_layers": 2, "bidirectional": True, "batch_first": True}):
            x = torch.zeros((0, 5, 3) if kwargs else (5, 0, 3), requires_grad=True)
            out, state = ours(3, 4, backend=backend, **kwargs)(x)
            want_out, want_state = peer(3, 4, **kwargs)(x)
            states = state if isinstance(state, tuple) else (state,)
            want_states = want_state if isinstance(want_state, tuple) else (want_state,)
            assert out.shape == want_out.shape and [s.shape for s in states] == [s.shape for s in want_states]
            out.sum().backward()
            assert x.grad.shape == x.shape


def test_an_empty_batch_gives_torch_nn_shapes_on_the_loop_backend():
    """``LSTM(3, 4)(torch.zeros(5, 0, 3))`` is ``(5, 0, 4)`` as in torch.nn, and the backward runs."""
    _empty_batch_shapes("loop")


def test_an_empty_batch_gives_torch_nn_shapes_on_the_fused_backend(loops):
    _empty_batch_shapes("fused")


def test_an_empty_batch_with_lengths():
    out, h = rn.GRU(3, 4)(torch.zeros(5, 0, 3), lengths=torch.zeros(0, dtype=torch.int64))
    assert out.shape == (5, 0, 4) and h.shape == (1, 0, 4)


# --- graph capture and function transforms (issue 29): the fused backend steps aside to the loop reference ---------
def _gru_and_input(backend="fused", T=5):
    torch.manual_seed(0)
    return rn.GRU(3, 4, 2, bidirectional=True, backend=backend), torch.randn(T, 2, 3)


@pytest.mark.parametrize("backend", ["loop", "fused"])
def test_vmap_and_grad_of_torch_func_give_the_eager_numbers(backend):
    m, x = _gru_and_input(backend)
    per_sample = torch.func.vmap(lambda xi: m(xi.unsqueeze(1))[0].squeeze(1), in_dims=1, out_dims=1)(x)
    torch.testing.assert_close(per_sample, m(x)[0], atol=1e-6, rtol=1e-6)
    g = torch.func.grad(lambda xx: m(xx)[0].square().sum())(x)
    xr = x.clone().requires_grad_()
    m(xr)[0].square().sum().backward()
    torch.testing.assert_close(g, xr.grad, atol=1e-6, rtol=1e-6)


def test_without_the_functorch_internal_a_transform_meets_the_fused_function_and_says_so(monkeypatch):
    """The public fallback of the one torch internal the step-aside reads: the transform's own error, no wrong
    numbers."""
    monkeypatch.delattr(torch._C._functorch, "is_functorch_wrapped_tensor")
    m, x = _gru_and_input()
    with pytest.raises(RuntimeError, match="setup_context"):
        torch.func.vmap(lambda xi: m(xi.unsqueeze(1))[0], in_dims=1)(x)


def test_torch_compile_traces_the_fused_backend_and_gives_the_eager_numbers():
    m, x = _gru_and_input(T=3)
    torch._dynamo.reset()
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)  # Dynamo's and AOTAutograd's tracing
    torch.testing.assert_close(compiled(x)[0], m(x)[0], atol=1e-6, rtol=1e-6)


def test_torch_export_of_the_fused_backend_runs_to_the_eager_numbers():
    m, x = _gru_and_input()
    exported = torch.export.export(m, (x,))
    torch.testing.assert_close(exported.module()(x)[0], m(x)[0], atol=1e-6, rtol=1e-6)


def test_torch_jit_trace_of_the_fused_backend_runs_to_the_eager_numbers():
    m, x = _gru_and_input(T=3)
    with pytest.warns(torch.jit.TracerWarning), warnings.catch_warnings():  # unrolled for T = 3: the tracer says so
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace is deprecated, not gone
        traced = torch.jit.trace(m, (x,), check_trace=False)
    torch.testing.assert_close(traced(x)[0], m(x)[0], atol=1e-6, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [rn.LSTM, rn.GRU])
def test_torch_compile_with_inductor_gives_the_eager_outputs_and_gradients(cls):
    torch.manual_seed(0)
    m, x = cls(3, 8, 2, bidirectional=True, batch_first=True), torch.randn(2, 6, 3)
    torch._dynamo.reset()
    compiled = torch.compile(m)
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_c, out_e = compiled(xc)[0], m(xe)[0]
    torch.testing.assert_close(out_c, out_e, atol=1e-5, rtol=1e-5)
    out_c.square().sum().backward()
    out_e.square().sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad, atol=1e-5, rtol=1e-5)
