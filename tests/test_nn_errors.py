"""Each documented argument/input error is raised, and its message names the argument, the expectation and what
was got, e.g. "`input.size(-1)` must equal input_size: expected 5, got 3"."""
import re
import subprocess
import sys

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab.nn as rn

T, B, I, H = 5, 3, 4, 2


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"hidden_size": 0}, ValueError, r"`hidden_size` must be a positive int: got 0"),
        ({"num_layers": 0}, ValueError, r"`num_layers` must be a positive int: got 0"),
        ({"num_layers": 2.0}, ValueError, r"`num_layers` must be a positive int: got 2.0"),
        ({"input_size": -1}, ValueError, r"`input_size` must be a positive int: got -1"),
        ({"dropout": 1.5}, ValueError, r"`dropout` must be a number in \[0, 1\].*got 1.5"),
        ({"dropout": -0.1}, ValueError, r"`dropout` must be a number in \[0, 1\].*got -0.1"),
        ({"dropout": "0.5"}, ValueError, r"`dropout` must be a number in \[0, 1\].*got '0.5'"),
        ({"dropout": True}, ValueError, r"`dropout` must be a number in \[0, 1\].*got True"),
        ({"init": "xavier"}, ValueError, r"`init` must be one of \['torch', 'keras'\]: got 'xavier'"),
        ({"backend": "cudnn"}, ValueError, r"`backend` must be one of \['auto', 'loop'.*\]: got 'cudnn'"),
        ({"bidirectional": 1}, TypeError, r"`bidirectional` must be a bool: got int 1"),
    ],
)
def test_constructor_errors(kwargs, exc, match):
    args = {"input_size": I, "hidden_size": H, **kwargs}
    with pytest.raises(exc, match=match):
        rn.LSTM(**args)


def test_bad_nonlinearity():
    with pytest.raises(ValueError, match=r"`nonlinearity` must be one of \['tanh', 'relu', 'identity'\]: got 'sigmoid'"):
        rn.RNN(I, H, nonlinearity="sigmoid")


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        rn.GRU(I, H, dropout=0.5)


def test_backend_changed_after_construction_is_checked():
    m = rn.GRU(I, H)
    m.backend = "nope"
    with pytest.raises(ValueError, match=r"`backend` must be one of \['auto', 'loop'.*got 'nope'"):
        m(torch.randn(T, B, I))


@pytest.mark.parametrize("shape", [(I,), (1, T, B, I)])
def test_input_rank(shape):
    with pytest.raises(ValueError, match=rf"`input` must be 3-D \(batched\) or 2-D \(unbatched\).*got {len(shape)}-D"):
        rn.LSTM(I, H)(torch.randn(shape))


def test_input_feature_size():
    with pytest.raises(ValueError, match=rf"`input.size\(-1\)` must equal input_size: expected {I}, got 3"):
        rn.LSTM(I, H)(torch.randn(T, B, 3))


def test_input_dtype_must_match_parameters():
    with pytest.raises(TypeError, match=r"`input.dtype` must equal the parameters' dtype: expected torch.float32, got torch.float64"):
        rn.GRU(I, H)(torch.randn(T, B, I, dtype=torch.float64))


def test_hx_shape():
    with pytest.raises(ValueError, match=rf"`hx` must have shape .*: expected \(2, {B}, {H}\), got \(1, {B}, {H}\)"):
        rn.GRU(I, H, bidirectional=True)(torch.randn(T, B, I), torch.zeros(1, B, H))
    with pytest.raises(ValueError, match=rf"`hx\[1\]` must have shape .*: expected \(1, {B}, {H}\), got \(1, {B}, 3\)"):
        rn.LSTM(I, H)(torch.randn(T, B, I), (torch.zeros(1, B, H), torch.zeros(1, B, 3)))
    with pytest.raises(ValueError, match=rf"`hx` must have shape .*without batch.*expected \(1, {H}\), got \(1, 1, {H}\)"):
        rn.RNN(I, H)(torch.randn(T, I), torch.zeros(1, 1, H))


def test_hx_type():
    with pytest.raises(TypeError, match=r"`hx` must be a tuple \(h_0, c_0\) for LSTM: got Tensor"):
        rn.LSTM(I, H)(torch.randn(T, B, I), torch.zeros(1, B, H))
    with pytest.raises(TypeError, match=r"`hx` must be a tuple \(h_0, c_0\) for CIFGLSTM: got Tensor"):
        rn.CIFGLSTM(I, H)(torch.randn(T, B, I), torch.zeros(1, B, H))
    with pytest.raises(TypeError, match=r"`hx` must be a Tensor for GRU: got tuple"):
        rn.GRU(I, H)(torch.randn(T, B, I), (torch.zeros(1, B, H),))


def test_hx_dtype():
    with pytest.raises(ValueError, match=r"`hx` must match the input's dtype and device: expected torch.float32 on cpu, got torch.float64"):
        rn.RNN(I, H)(torch.randn(T, B, I), torch.zeros(1, B, H, dtype=torch.float64))


@pytest.mark.parametrize("lengths,lo,hi", [([0, 2, 3], 0, 3), ([1, 6, 3], 1, 6), (torch.tensor([5, -1, 2]), -1, 5)])
def test_lengths_out_of_range(lengths, lo, hi):
    with pytest.raises(ValueError, match=rf"`lengths` must lie in \[1, T={T}\].*got min {lo}, max {hi}"):
        rn.LSTM(I, H)(torch.randn(T, B, I), lengths=lengths)


def test_lengths_dtype():
    with pytest.raises(TypeError, match=r"`lengths.dtype` must be an integer type: expected torch.int64, got torch.float32"):
        rn.LSTM(I, H)(torch.randn(T, B, I), lengths=torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match=r"`lengths` must be a list of ints or an int64 tensor: got \[1.0, 2, 3\]"):
        rn.LSTM(I, H)(torch.randn(T, B, I), lengths=[1.0, 2, 3])


def test_lengths_device():
    with pytest.raises(ValueError, match=r"`lengths.device` must be the CPU or the input's device: expected cpu or cpu, got meta"):
        rn.LSTM(I, H)(torch.randn(T, B, I), lengths=torch.ones(B, dtype=torch.int64, device="meta"))


def test_lengths_size():
    with pytest.raises(ValueError, match=rf"`lengths` must have shape \(batch,\): expected \({B},\), got \(2,\)"):
        rn.LSTM(I, H)(torch.randn(T, B, I), lengths=[1, 2])


def test_lengths_with_packed_input():
    packed = pack_padded_sequence(torch.randn(T, B, I), torch.tensor([5, 2, 3]), enforce_sorted=False)
    with pytest.raises(ValueError, match=r"`lengths` must be None when input is a PackedSequence"):
        rn.LSTM(I, H)(packed, lengths=[5, 2, 3])


def test_int32_lengths_are_accepted():
    out, _ = rn.GRU(I, H)(torch.randn(T, B, I), lengths=torch.tensor([5, 2, 3], dtype=torch.int32))
    assert out[2:, 1].abs().max() == 0


@pytest.mark.parametrize(
    "module,match",
    [
        (rn.CIFGLSTM(I, H), r"CIFGLSTM\(4, 2\) has no torch.nn peer"),
        (rn.LSTM(I, H, forget_gate=False), r"LSTM\(4, 2, forget_gate=False\) has no torch.nn peer"),
        (rn.RNN(I, H, nonlinearity="identity"), r"RNN\(nonlinearity='identity'\) has no torch.nn peer"),
    ],
)
def test_to_torch_without_peer(module, match):
    with pytest.raises(TypeError, match=match):
        module.to_torch()


def test_from_torch_wrong_class():
    with pytest.raises(TypeError, match=r"`module` must be a torch.nn.modules.rnn.LSTM: got GRU"):
        rn.LSTM.from_torch(torch.nn.GRU(I, H))
    with pytest.raises(TypeError, match=r"CIFGLSTM has no torch.nn peer"):
        rn.CIFGLSTM.from_torch(torch.nn.LSTM(I, H))


@pytest.mark.cuda
def test_cuda_lengths_out_of_range_fail_at_sync():
    """On CUDA the range check runs on the device (no host sync in forward) and fails at the next sync. A device
    assert poisons the CUDA context, so it runs in its own process."""
    code = (
        "import torch, rnnlab.nn as rn\n"
        "m = rn.LSTM(4, 2, device='cuda')\n"
        "m(torch.randn(5, 3, 4, device='cuda'), lengths=torch.tensor([0, 2, 3], device='cuda'))\n"
        "torch.cuda.synchronize()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "assert" in proc.stderr.lower()  # "device-side assert triggered"


# --- the same exception types as torch.nn for the same mistakes (issue 29); rnnlab's messages stay -----------------
def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return e
    raise AssertionError("no exception raised")


TORCH_TYPE_CASES = {  # id -> (class name, constructor args, forward args or None, rnnlab's message)
    "hidden_size_float": ("LSTM", (I, 3.0), None, r"`hidden_size` must be a positive int: got 3.0"),
    "hidden_size_str": ("GRU", (I, "10"), None, r"`hidden_size` must be a positive int: got '10'"),
    "input_size_float": ("RNN", (3.0, H), None, r"`input_size` must be a positive int: got 3.0"),
    "num_layers_float": ("LSTM", (I, H, 2.0), None, r"`num_layers` must be a positive int: got 2.0"),
    "hidden_size_zero": ("GRU", (I, 0), None, r"`hidden_size` must be a positive int: got 0"),
    "num_layers_zero": ("RNN", (I, H, 0), None, r"`num_layers` must be a positive int: got 0"),
    "input_feature_size": ("LSTM", (I, H), (torch.randn(T, B, 3),),
                           rf"`input.size\(-1\)` must equal input_size: expected {I}, got 3"),
    "input_dtype": ("GRU", (I, H), (torch.randn(T, B, I, dtype=torch.float64),),
                    r"`input.dtype` must equal the parameters' dtype: expected torch.float32, got torch.float64"),
    "input_int": ("RNN", (I, H), (torch.ones(T, B, I, dtype=torch.int64),),
                  r"`input.dtype` must equal the parameters' dtype: expected torch.float32, got torch.int64"),
    "input_rank": ("LSTM", (I, H), (torch.randn(1, T, B, I),), r"`input` must be 3-D \(batched\) or 2-D"),
    "hx_layers": ("GRU", (I, H, 1, True, False, 0.0, True), (torch.randn(T, B, I), torch.zeros(1, B, H)),
                  rf"`hx` must have shape .*: expected \(2, {B}, {H}\), got \(1, {B}, {H}\)"),
    "hx_batch": ("RNN", (I, H), (torch.randn(T, B, I), torch.zeros(1, B + 1, H)),
                 rf"`hx` must have shape .*: expected \(1, {B}, {H}\), got \(1, {B + 1}, {H}\)"),
    "hx_hidden": ("LSTM", (I, H), (torch.randn(T, B, I), (torch.zeros(1, B, H), torch.zeros(1, B, 3))),
                  rf"`hx\[1\]` must have shape .*: expected \(1, {B}, {H}\), got \(1, {B}, 3\)"),
    "hx_3d_for_unbatched": ("RNN", (I, H), (torch.randn(T, I), torch.zeros(1, 1, H)),
                            rf"`hx` must have shape .*without batch.*expected \(1, {H}\), got \(1, 1, {H}\)"),
    "hx_2d_for_batched": ("GRU", (I, H), (torch.randn(T, B, I), torch.zeros(1, H)),
                          rf"`hx` must have shape .*: expected \(1, {B}, {H}\), got \(1, {H}\)"),
    "hx_dtype": ("RNN", (I, H), (torch.randn(T, B, I), torch.zeros(1, B, H, dtype=torch.float64)),
                 r"`hx` must match the input's dtype and device: expected torch.float32 on cpu, got torch.float64"),
    "proj_size_negative": ("LSTM", (I, H, 1, True, False, 0.0, False, -1), None,
                           r"`proj_size` must be a non-negative int smaller than hidden_size: expected 0 <= proj_size < 2, got -1"),
    "proj_size_hidden": ("LSTM", (I, H, 1, True, False, 0.0, False, H), None,
                         r"`proj_size` must be a non-negative int smaller than hidden_size: expected 0 <= proj_size < 2, got 2"),
    "proj_size_float": ("LSTM", (I, 3, 1, True, False, 0.0, False, 1.0), None,
                        r"`proj_size` must be a non-negative int smaller than hidden_size: expected 0 <= proj_size < 3, got 1.0"),
    "sequence_length_zero": ("LSTM", (I, H), (torch.randn(0, B, I),),
                             r"`input` must have at least one time step: got sequence length 0"),
    "sequence_length_zero_unbatched": ("GRU", (I, H), (torch.randn(0, I),),
                                       r"`input` must have at least one time step: got sequence length 0"),
}


@pytest.mark.parametrize("cls", ["GRU", "RNN"])
@pytest.mark.parametrize("proj_size", [0, 1])
def test_proj_size_on_gru_or_rnn_is_torch_nn_s_value_error(cls, proj_size):
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM, not RNN or GRU"):
        getattr(torch.nn, cls)(I, H, proj_size=proj_size)
    with pytest.raises(ValueError, match=rf"`proj_size` is only supported for LSTM: {cls} got proj_size={proj_size}"):
        getattr(rn, cls)(I, H, proj_size=proj_size)


@pytest.mark.parametrize("case", list(TORCH_TYPE_CASES))
def test_an_error_is_of_the_type_torch_nn_raises_for_the_same_inputs(case):
    """Code written for torch.nn (``except RuntimeError``) catches rnnlab's error; the message is rnnlab's."""
    name, args, forward, match = TORCH_TYPE_CASES[case]
    torch_cls, ours_cls = getattr(torch.nn, name), getattr(rn, name)
    if forward is None:
        want, got = _raised(lambda: torch_cls(*args)), _raised(lambda: ours_cls(*args))
    else:
        want = _raised(lambda: torch_cls(*args)(*forward))
        got = _raised(lambda: ours_cls(*args)(*forward))
    assert isinstance(got, type(want)), f"torch.nn raises {type(want).__name__}, rnnlab {type(got).__name__}: {got}"
    assert re.search(match, str(got)), str(got)


@pytest.mark.parametrize("error,also", [(rn.ShapeError, ValueError), (rn.DTypeError, TypeError),
                                        (rn.SizeTypeError, ValueError)])
def test_errors_are_still_the_types_rnnlab_raised_before(error, also):
    """Callers written against rnnlab's earlier types (ValueError for shapes and sizes, TypeError for dtypes) keep
    catching them."""
    assert issubclass(error, also)
