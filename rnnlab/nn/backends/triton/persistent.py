r"""Persistent Triton loops: each of the six loops of :mod:`rnnlab.nn.backends.fused` is ONE kernel launch.

Same contract, buffers and numbers as :class:`rnnlab.nn.backends.triton.step.TritonLoops` (buffers in
:mod:`rnnlab.nn.backends.bptt`); what differs is who walks time. ``TritonLoops`` launches, per step, a cuBLAS
``addmm`` for :math:`W_{hh} h_{t-1}` and a Triton kernel for the gates (~2 launches x T each way), which
on a GPU is bound by launch latency. Here one kernel (:mod:`rnnlab.nn.backends.triton.persistent_kernels`)
walks all T steps: program ``p`` owns batch rows ``[p*BLOCK_B, (p+1)*BLOCK_B)`` and, at each step,
computes the recurrent product for those rows with ``tl.dot`` in ``(BLOCK_K, BLOCK_N)`` weight chunks
(weights re-read each step; they stay in L2) followed by the step's gate arithmetic:

* forward: :math:`A_t \mathrel{+}= h_{t-1} W_{hh}^\top`, gates, cell, state, masked output;
* backward, phase 1: :math:`\partial J/\partial h_t` (incoming + output gradient), length mask,
  :math:`\lVert \partial J/\partial h_t \rVert` per row, gate gradients ``DG[t]``, cell carry;
  phase 2: :math:`\partial J/\partial h_{t-1} = \ldots + DG_t W_{hh}`.

Rows never interact in the recurrence (each row's :math:`h_t` depends only on its own
:math:`h_{t-1}`), so programs never synchronise with each other. Inside a program, values written by
one thread and read by another later (the state ``h_t`` between steps; ``DG[t]`` and ``dh`` between
the two backward phases and steps) are separated by ``tl.debug_barrier()``, a CTA barrier.

float32 products keep float32 accuracy, like the cuBLAS ``addmm`` of the other backends: on GPUs with TF32
tensor cores (compute capability >= 8.0) as ``input_precision="tf32x3"`` (three TF32 products of the
split operands: as close to the fused backend as ``"ieee"``, which runs on the CUDA cores, and faster;
docs/kernels.md has the measurements), else ``"ieee"``; plain
``"tf32"`` (~1e-3, like cuDNN's default for float32 RNNs) when ``torch.set_float32_matmul_precision``
allows TF32. ``CONFIG["fp32_precision"]`` overrides; float64 runs exact.

It applies to float32 / float64 with ``16 <= hidden_size <= MAX_HIDDEN`` (``tl.dot`` needs tiles of at least 16;
see ``MAX_HIDDEN`` for the upper bound); anything else, or a kernel that fails to compile on this device (recorded in
``FAILED``, with a warning), runs :class:`~rnnlab.nn.backends.triton.step.TritonLoops`.

Knobs (module level, read at each call): ``ENABLED`` (env ``RNNLAB_TRITON_PERSISTENT=0`` turns the
persistent path off), ``CONFIG`` (env ``RNNLAB_TRITON_CONFIG="block_b=32,num_warps=8"``): rows per
program ``block_b`` (>= 16), weight chunk ``block_n`` x ``block_k`` (powers of two >= 16), ``num_warps``,
``num_stages`` (1: no software pipelining; see the kernels' docstring), ``fp32_precision`` (None: as
above, or "ieee", "tf32", "tf32x3"), ``fp64_dot`` (False: float64 products as a multiply-and-sum instead
of ``tl.dot``). The defaults are the fastest settings timed on a GPU (docs/kernels.md); ``num_stages`` stays 1
because pipelined loads could cross the barriers that order the state hand-offs.

``split_units`` (default 0, off): the column-split kernels of :mod:`rnnlab.nn.backends.triton.split_kernels`, where each
program owns ``split_units`` hidden units (a power of two >= 16) of its row block, keeps their slice of
:math:`W_{hh}` on chip for the whole sequence, and meets the row block's other programs at a barrier once a
step; used where every program fits on its own SM. Interpreter-tested and compiled for sm_90 without a GPU
(:mod:`rnnlab.nn.backends.triton.aot`; its register spills are in docs/kernels.md); off until it is timed on a GPU
(``ONLY=split scripts/gpu_check.sh``).
"""
import os
import warnings

import torch

from rnnlab.nn.backends import LSTM
from rnnlab.nn.backends.triton.step import TritonLoops, interpreting

__all__ = ["PersistentLoops", "CONFIG", "ENABLED", "FAILED", "applies", "parse_config"]


DEFAULT_CONFIG = {"block_b": 16, "block_n": 128, "block_k": 64, "num_warps": 8, "num_stages": 1,
                  "fp32_precision": None, "fp64_dot": True, "split_units": 0}


def parse_config(text: str, base=None) -> dict:
    """``base`` (default: the defaults) updated from ``"key=value,key=value"``, e.g. ``"block_b=32,num_warps=8"``."""
    cfg = dict(DEFAULT_CONFIG if base is None else base)
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in DEFAULT_CONFIG:
            raise ValueError(f"triton config: unknown key {key!r}: expected one of {sorted(DEFAULT_CONFIG)}")
        if key == "fp32_precision":
            cfg[key] = value or None
        elif key == "fp64_dot":
            cfg[key] = value.lower() in ("1", "true")
        else:
            cfg[key] = int(value)
    return cfg


CONFIG = parse_config(os.environ.get("RNNLAB_TRITON_CONFIG", ""))
ENABLED = os.environ.get("RNNLAB_TRITON_PERSISTENT", "1") not in ("", "0")
FAILED = {}  # (loop, dtype) -> why its kernel could not be compiled / launched here; those use TritonLoops

_K = {}


def _kernels():
    if not _K:
        from rnnlab.nn.backends.triton import persistent_kernels as k
        from rnnlab.nn.backends.triton import split_kernels as ks
        _K.update(lstm_fwd=k.lstm_fwd, lstm_bwd=k.lstm_bwd, gru_fwd=k.gru_fwd, gru_bwd=k.gru_bwd,
                  rnn_fwd=k.rnn_fwd, rnn_bwd=k.rnn_bwd)
        _K.update({f"{name}_split": getattr(ks, name) for name in ("lstm_fwd", "lstm_bwd", "gru_fwd", "gru_bwd",
                                                                   "rnn_fwd", "rnn_bwd")})
    return _K


#: Largest hidden size run persistently. One program re-reads all of W_hh from L2 at every step, so the kernel's
#: step time grows with H^2 on a handful of SMs, while TritonLoops' cuBLAS matmul spreads over the whole GPU; 256 is
#: about where the two met when timed (docs/kernels.md).
MAX_HIDDEN = 256


def applies(H: int, dtype: torch.dtype) -> bool:
    """Whether the persistent kernels run a layer of hidden size ``H`` in ``dtype`` (else TritonLoops)."""
    return ENABLED and 16 <= H <= MAX_HIDDEN and dtype in (torch.float32, torch.float64)


def _pow2(n):
    return 1 << max(n - 1, 0).bit_length()


def _meta(H, Kdim, dtype, reverse, masked, device):
    """Compile-time parameters of a launch: blocks, precision, warps."""
    dot = dtype != torch.float64 or CONFIG["fp64_dot"]
    cap_n, cap_k = (CONFIG["block_n"], CONFIG["block_k"]) if dot else (16, 16)  # multiply-and-sum: small tiles
    prec = "ieee"
    if dtype == torch.float32:
        prec = CONFIG["fp32_precision"] or _fp32_precision(device)
    return dict(REVERSE=reverse, MASKED=masked, DOT=dot, PREC=prec, BLOCK_B=max(16, CONFIG["block_b"]),
                BLOCK_N=max(16, min(cap_n, _pow2(H))), BLOCK_K=max(16, min(cap_k, _pow2(Kdim))),
                num_warps=CONFIG["num_warps"], num_stages=CONFIG["num_stages"])


def _fp32_precision(device):
    """float32 accuracy on TF32 tensor cores (tf32x3) where there are some, TF32 where torch allows it."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 0):
        return "ieee"
    return "tf32x3" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def _usable(H, *tensors):
    """float32/64, H >= 16, the buffers the kernels index as dense are contiguous, 32-bit offsets suffice."""
    ts = [t for t in tensors if t is not None]
    return (applies(H, ts[0].dtype) and all(t.is_contiguous() for t in ts)
            and all(t.numel() < 2 ** 31 for t in ts))


def _launch(name, grid, args, meta, dtype):
    """Run kernel ``name``; False if it cannot be built for this device (then the caller falls back)."""
    key = (name, dtype)
    if key in FAILED:
        return False
    try:
        _kernels()[name][grid](*args, **meta)
    except Exception as e:  # compilation / resources: raised before the kernel runs, so no buffer was touched
        if interpreting():  # the interpreter runs the kernel while raising: buffers may be half-written
            raise
        FAILED[key] = f"{type(e).__name__}: {e}"
        warnings.warn(f"rnnlab: persistent Triton kernel {name} ({dtype}) failed here, using the per-step "
                      f"kernels: {FAILED[key][:500]}", RuntimeWarning)
        return False
    return True


def _states(h0, out, Hs, reverse):
    """(S, P_OFF, N_OFF, USE_H0): the state before step t is S[t + P_OFF] (h0 at the first step when USE_H0),
    after it S[t + N_OFF]. Same views as :func:`rnnlab.nn.backends.bptt.states`."""
    if Hs is not None:
        return (Hs, 1, 0, False) if reverse else (Hs, 0, 1, False)
    return out, (1 if reverse else -1), 0, True


def _grid(B, meta):
    return ((B + meta["BLOCK_B"] - 1) // meta["BLOCK_B"],)


def _split(H, B, dtype, device):
    """``(BLOCK_B, U, NS, HP)`` for the column-split kernels (:mod:`rnnlab.nn.backends.triton.split_kernels`), or None where
    they do not run: ``split_units`` 0 (the default: not yet timed on a GPU), float64 without ``tl.dot``, more
    programs than the GPU has SMs, or torch.distributed running. Their per-step barrier needs every program resident
    at once; under DDP, NCCL kernels that overlap the backward hold SMs while they wait on other ranks, which could
    be waiting on this one."""
    U = CONFIG["split_units"]
    if not U:
        return None
    if U < 16 or U & (U - 1):
        raise ValueError(f"triton config: split_units must be 0 (off) or a power of two >= 16: got {U}")
    if (dtype == torch.float64 and not CONFIG["fp64_dot"]) or (
            torch.distributed.is_available() and torch.distributed.is_initialized()):
        return None
    bb, ns = max(16, CONFIG["block_b"]), -(-H // U)
    if device.type == "cuda" and -(-B // bb) * ns > torch.cuda.get_device_properties(device).multi_processor_count:
        return None
    return bb, U, ns, _pow2(H)


def _launch_split(name, T, B, split, head, tail, meta, dtype, device, parts=({},)):
    """Run split kernel ``name`` with arguments ``head + (CNT,) + tail + (I0, I1)``: one launch walking all T steps
    (barriers in the kernel), or, under the interpreter with several programs per row block, per step one launch for
    each of ``parts`` (meta overrides: the pieces between two barriers). False if it cannot be built here."""
    bb, U, ns, HP = split
    grid = (-(-B // bb), ns)
    meta = {k: v for k, v in meta.items() if k not in ("DOT", "BLOCK_N", "BLOCK_K")}
    meta.update(BLOCK_B=bb, U=U, HP=HP)
    cnt = torch.zeros(grid[0], dtype=torch.int32, device=device)
    if interpreting() and ns > 1:  # programs run one after another there: the launch boundary is the barrier
        return all(_launch(name, grid, head + (cnt,) + tail + (i, i + 1), dict(meta, SYNC=False, **part), dtype)
                   for i in range(T) for part in parts)
    return _launch(name, grid, head + (cnt,) + tail + (0, T), dict(meta, SYNC=True), dtype)


def _forward(name, T, B, H, head, tail, meta, x):
    """Forward loop ``name`` (kernel arguments ``head + tail``): column-split where it applies, else one program per
    row block. False if neither could run here (the caller falls back to the per-step loops)."""
    split = _split(H, B, x.dtype, x.device)
    if split is not None and _launch_split(name + "_split", T, B, split, head, tail, meta, x.dtype, x.device):
        return True
    return _launch(name, _grid(B, meta), head + tail, meta, x.dtype)


def _backward(name, T, B, H, head, NR, w_hh, meta, x):
    """Backward loop ``name`` (kernel arguments ``head + (NR, w_hh, T, B, H)``), as :func:`_forward`. Split, each
    program writes its own units' sum of squares of dJ/dh_t (float64, see
    step_kernels.sum_squares), and NR is the square root of their sum."""
    split = _split(H, B, x.dtype, x.device)
    if split is not None:
        NRP = torch.empty(split[2], T, B, dtype=torch.float64, device=x.device) if NR is not None else x
        if _launch_split(name + "_split", T, B, split, head + (NRP, w_hh), (T, B, H), dict(meta, PHASES=3), x.dtype,
                         x.device, parts=({"PHASES": 1}, {"PHASES": 2})):
            if NR is not None:
                NR.copy_(NRP.sum(0).sqrt_())
            return True
    return _launch(name, _grid(B, meta), head + (NR if NR is not None else x, w_hh, T, B, H), meta, x.dtype)


class PersistentLoops:
    """The six loops of :mod:`rnnlab.nn.backends.fused`, each one persistent Triton kernel (see the module docstring)."""

    @staticmethod
    def lstm_fwd(A, whhT, h0, Cs, TC, out, Hs, M, Mf, kind, reverse):
        T, B, GH = A.shape
        H = GH // (4 if kind == LSTM else 3)
        h0 = h0.contiguous()
        if _usable(H, A, h0, Cs, TC, out, Hs, Mf):
            S, po, no, use_h0 = _states(h0, out, Hs, reverse)
            p, n = (1, 0) if reverse else (0, 1)
            meta = _meta(H, H, A.dtype, reverse, Mf is not None, A.device)
            MF = Mf.reshape(T, B) if Mf is not None else out  # dummy pointer when unmasked
            head = (A, A.stride(0), whhT, whhT.stride(0), whhT.stride(1), h0, S, S.stride(0), Cs, TC, out, MF)
            if _forward("lstm_fwd", T, B, H, head, (T, B, H, po, no, p, n), dict(meta, KIND=kind, USE_H0=use_h0), A):
                return
        TritonLoops.lstm_fwd(A, whhT, h0, Cs, TC, out, Hs, M, Mf, kind, reverse)

    @staticmethod
    def lstm_bwd(DG, Ac, Adc, Ao, F, gout, dh, dc, w_hh, Mf, NR, reverse):
        T, B, K, H = Adc.shape
        gout = gout.contiguous()
        f_ok = F is None or F.stride(-1) == 1
        if f_ok and _usable(H, DG, Ac, Adc, Ao, gout, dh, dc, w_hh, Mf, NR):
            meta = _meta(H, (K + 1) * H, DG.dtype, not reverse, Mf is not None, DG.device)
            dummy = gout
            head = (DG, Ac, Adc, Ao, F if F is not None else dummy, F.stride(0) if F is not None else 0,
                    F.stride(1) if F is not None else 0, gout, dh, dc, Mf.reshape(T, B) if Mf is not None else dummy)
            meta = dict(meta, K=K, HAS_F=F is not None, RECORD=NR is not None)
            if _backward("lstm_bwd", T, B, H, head, NR, w_hh, meta, DG):
                return
        TritonLoops.lstm_bwd(DG, Ac, Adc, Ao, F, gout, dh, dc, w_hh, Mf, NR, reverse)

    @staticmethod
    def gru_fwd(A, whhT, XN, N, h0, out, Hs, M, Mf, reverse):
        T, B, H3 = A.shape
        H = H3 // 3
        h0 = h0.contiguous()
        if XN.stride(-1) == 1 and _usable(H, A, N, h0, out, Hs, Mf):
            S, po, no, use_h0 = _states(h0, out, Hs, reverse)
            meta = _meta(H, H, A.dtype, reverse, Mf is not None, A.device)
            MF = Mf.reshape(T, B) if Mf is not None else out
            head = (A, A.stride(0), whhT, whhT.stride(0), whhT.stride(1), XN, XN.stride(0), XN.stride(1), N, h0, S,
                    S.stride(0), out, MF)
            if _forward("gru_fwd", T, B, H, head, (T, B, H, po, no), dict(meta, USE_H0=use_h0), A):
                return
        TritonLoops.gru_fwd(A, whhT, XN, N, h0, out, Hs, M, Mf, reverse)

    @staticmethod
    def gru_bwd(DG, DN, Az, An, Ar, R, Z, gout, dh, w_hh, Mf, NR, reverse):
        T, B, H = DN.shape
        gout = gout.contiguous()
        rz_ok = R.stride() == Z.stride() and R.stride(-1) == 1
        if rz_ok and _usable(H, DG, DN, Az, An, Ar, gout, dh, w_hh, Mf, NR):
            meta = _meta(H, 3 * H, DG.dtype, not reverse, Mf is not None, DG.device)
            head = (DG, DN, Az, An, Ar, R, Z, R.stride(0), R.stride(1), gout, dh,
                    Mf.reshape(T, B) if Mf is not None else gout)
            if _backward("gru_bwd", T, B, H, head, NR, w_hh, dict(meta, RECORD=NR is not None), DG):
                return
        TritonLoops.gru_bwd(DG, DN, Az, An, Ar, R, Z, gout, dh, w_hh, Mf, NR, reverse)

    @staticmethod
    def rnn_fwd(XP, whhT, h0, out, Hs, M, Mf, act, reverse):
        T, B, H = XP.shape
        h0 = h0.contiguous()
        if _usable(H, XP, h0, out, Hs, Mf):
            S, po, no, use_h0 = _states(h0, out, Hs, reverse)
            meta = _meta(H, H, XP.dtype, reverse, Mf is not None, XP.device)
            MF = Mf.reshape(T, B) if Mf is not None else out
            head = (XP, whhT, whhT.stride(0), whhT.stride(1), h0, S, S.stride(0), out, MF)
            if _forward("rnn_fwd", T, B, H, head, (T, B, H, po, no), dict(meta, ACT=act, USE_H0=use_h0), XP):
                return
        TritonLoops.rnn_fwd(XP, whhT, h0, out, Hs, M, Mf, act, reverse)

    @staticmethod
    def rnn_bwd(DG, Ad, gout, dh, w_hh, Mf, NR, reverse):
        T, B, H = DG.shape
        gout = gout.contiguous()
        if _usable(H, DG, Ad, gout, dh, w_hh, Mf, NR):
            meta = _meta(H, H, DG.dtype, not reverse, Mf is not None, DG.device)
            head = (DG, Ad if Ad is not None else gout, gout, dh, Mf.reshape(T, B) if Mf is not None else gout)
            if _backward("rnn_bwd", T, B, H, head, NR, w_hh,
                         dict(meta, HAS_AD=Ad is not None, RECORD=NR is not None), DG):
                return
        TritonLoops.rnn_bwd(DG, Ad, gout, dh, w_hh, Mf, NR, reverse)
