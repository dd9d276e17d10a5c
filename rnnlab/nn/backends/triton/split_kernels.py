r"""Column-split persistent kernels (every cell: LSTM, CIFG, 1997 LSTM, GRU, RNN): a step's units over programs.

The kernels of :mod:`rnnlab.nn.backends.triton.persistent_kernels` give each program all H units of its batch rows, so at
every step one SM re-reads the whole of :math:`W_{hh}` (``G*H x H``: 256 KB in float32 for an LSTM at hidden 128)
from L2, which bounds a step from below by that SM's share of L2 bandwidth. Here program ``(pb, ps)`` owns batch
rows ``[pb*BLOCK_B, (pb+1)*BLOCK_B)`` and hidden units ``[ps*U, (ps+1)*U)`` of every gate, and loads its slice of
:math:`W_{hh}` (``G`` tiles of ``HP x U``, HP = H rounded up to a power of two) on chip ONCE, before the time loop
(compiled for sm_90 the slice sits in shared memory: 73 KB a program for an LSTM at hidden 128, float32). The price
is one barrier per step among the ``NS = ceil(H / U)`` programs of a row block:

* forward: gates of the own units from the whole :math:`h_{t-1}` (written by all ``NS`` programs), own slice of
  :math:`c_t, h_t` stored; barrier; next step.
* backward, phase 1: gate gradients ``DG[t]`` of the own units (elementwise, own ``dh``/``dc``); barrier;
  phase 2: own units of :math:`\partial J/\partial h_{t-1} = \ldots + DG_t W_{hh}`, which reads every unit of
  ``DG[t]``. The next phase 1 only needs the own units of ``dh``, so one barrier per step each way.

Norms: each program writes the sum of squares over its own units to ``NRP[ps, t, b]``; the caller takes the square
root of the sum over ``ps`` (one small op after the kernel).

``SYNC`` (compiled on a GPU): one launch walks steps ``I0..I1``, the barrier is an arrival counter per row block
(``tl.atomic_add`` release / acquire at GPU scope, between two CTA barriers). All programs must be resident at once,
so the caller launches at most one program per SM. Reads of values other programs wrote bypass L1 (``.cg``).
``SYNC=False`` (Triton's interpreter, which runs programs one after another and would wait forever at the first
barrier): the caller launches one step at a time (the backward: ``PHASES=1`` then ``PHASES=2``; on a GPU 3, both),
so the launch boundary is the barrier.
"""
import triton
import triton.language as tl

from rnnlab.nn.backends.triton.step_kernels import LSTM, RELU, TANH, sum_squares, tanh
from rnnlab.nn.backends.triton.persistent_kernels import (gru_cell, gru_dgates, keep_rows, lstm_cell, lstm_dgates, rnn_dgates,
                                                 store_h)


@triton.jit
def _sync(CNT, target, SYNC: tl.constexpr):
    """Wait until ``target`` programs have arrived at counter ``CNT`` (counts only grow; zeroed per launch)."""
    if SYNC:
        tl.debug_barrier()  # this program's stores of the step are issued before it arrives
        tl.atomic_add(CNT, 1, sem="release", scope="gpu")
        seen = tl.atomic_add(CNT, 0, sem="acquire", scope="gpu")
        while seen < target:
            seen = tl.atomic_add(CNT, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()


@triton.jit
def _state(H0, S, ss_t, idx, i, offs, m, USE_H0: tl.constexpr):
    """Tile of the state before walk step ``i`` (``S[idx]``, or ``H0`` at the first step when ``USE_H0``), from L2."""
    if USE_H0:
        return (tl.load(H0 + offs, mask=m & (i == 0), other=0.0, cache_modifier=".cg")
                + tl.load(S + idx * ss_t + offs, mask=m & (i != 0), other=0.0, cache_modifier=".cg"))
    else:
        return tl.load(S + idx * ss_t + offs, mask=m, other=0.0, cache_modifier=".cg")


@triton.jit
def _tiles(B, H, BLOCK_B: tl.constexpr, HP: tl.constexpr, U: tl.constexpr):
    """This program's rows and own units: ``rows, rok, ks`` (all HP units), ``cols`` (own), own-tile mask and offsets,
    whole-state mask and offsets, and the mask of a ``(HP, U)`` weight tile."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rok = rows < B
    ks = tl.arange(0, HP)
    cols = tl.program_id(1) * U + tl.arange(0, U)
    m = rok[:, None] & (cols < H)[None, :]
    hm = rok[:, None] & (ks < H)[None, :]
    wm = (ks < H)[:, None] & (cols < H)[None, :]
    return rows, rok, ks, cols, m, rows[:, None] * H + cols[None, :], hm, rows[:, None] * H + ks[None, :], wm


@triton.jit
def _gate_tiles(w, step, wm, G: tl.constexpr):
    """The ``(HP, U)`` weight tiles of the own units of each of ``G`` (3 or 4) gates, ``step`` apart; with 3 gates
    the fourth repeats the third (never used)."""
    w0 = tl.load(w, mask=wm, other=0.0)
    w1 = tl.load(w + step, mask=wm, other=0.0)
    w2 = tl.load(w + 2 * step, mask=wm, other=0.0)
    if G == 4:
        w3 = tl.load(w + 3 * step, mask=wm, other=0.0)
    else:
        w3 = w2
    return w0, w1, w2, w3


@triton.jit
def lstm_fwd(A, sa_t, W, sw_k, sw_n, H0, S, ss_t, Cs, TC, OUT, MF, CNT, T, B, H, P_OFF, N_OFF, CP, CN, I0, I1,
             KIND: tl.constexpr, MASKED: tl.constexpr, REVERSE: tl.constexpr, USE_H0: tl.constexpr,
             SYNC: tl.constexpr, PREC: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr, U: tl.constexpr):
    G: tl.constexpr = 4 if KIND == LSTM else 3
    pb = tl.program_id(0)
    ns = tl.num_programs(1)
    rows, rok, ks, cols, m, offs, hm, hoffs, wm = _tiles(B, H, BLOCK_B, HP, U)
    w = W + ks[:, None] * sw_k + cols[None, :] * sw_n  # W = W_hh^T (H, G*H): own columns of each gate
    w0, w1, w2, w3 = _gate_tiles(w, H * sw_n, wm, G)
    for i in range(I0, I1):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        pi = tl.minimum(tl.maximum(t + P_OFF, 0), T)  # clamped: at the first step with USE_H0 it is not read
        hk = _state(H0, S, ss_t, pi, i, hoffs, hm, USE_H0)  # all units of h_{t-1}
        a = A + t * sa_t + rows[:, None] * (G * H) + cols[None, :]  # gates [sigmoid gates..., g]
        a0 = tl.dot(hk, w0, tl.load(a, mask=m, other=0.0), input_precision=PREC)
        a1 = tl.dot(hk, w1, tl.load(a + H, mask=m, other=0.0), input_precision=PREC)
        a2 = tl.dot(hk, w2, tl.load(a + 2 * H, mask=m, other=0.0), input_precision=PREC)
        c_prev = tl.load(Cs + (t + CP) * B * H + offs, mask=m, other=0.0)
        if G == 4:
            a3 = tl.dot(hk, w3, tl.load(a + 3 * H, mask=m, other=0.0), input_precision=PREC)
            o, c = lstm_cell(a, m, H, a0, a1, a2, a3, c_prev, KIND)
        else:
            o, c = lstm_cell(a, m, H, a0, a1, a2, a2, c_prev, KIND)
        tc = tanh(c)
        tl.store(TC + t * B * H + offs, tc, mask=m)
        h = o * tc
        if MASKED:
            keep = keep_rows(MF, t, B, rows, rok)
            tl.store(Cs + (t + CN) * B * H + offs, tl.where(keep, c_prev, c), mask=m)
            h_prev = _state(H0, S, ss_t, pi, i, offs, m, USE_H0)
            tl.store(S + (t + N_OFF) * ss_t + offs, tl.where(keep, h_prev, h), mask=m)
            tl.store(OUT + t * B * H + offs, tl.where(keep, 0.0, h), mask=m)
        else:
            tl.store(Cs + (t + CN) * B * H + offs, c, mask=m)
            tl.store(S + (t + N_OFF) * ss_t + offs, h, mask=m)
        _sync(CNT + pb, (i - I0 + 1) * ns, SYNC)  # h_t complete (all units) before step t+1 reads it


@triton.jit
def lstm_bwd(DG, Ac, Adc, Ao, F, sf_t, sf_b, GO, DH, DC, MF, NRP, W, CNT, T, B, H, I0, I1, K: tl.constexpr,
             HAS_F: tl.constexpr, MASKED: tl.constexpr, RECORD: tl.constexpr, REVERSE: tl.constexpr,
             SYNC: tl.constexpr, PHASES: tl.constexpr, PREC: tl.constexpr, BLOCK_B: tl.constexpr,
             HP: tl.constexpr, U: tl.constexpr):
    GH = (K + 1) * H
    pb = tl.program_id(0)
    ps = tl.program_id(1)
    ns = tl.num_programs(1)
    rows, rok, ks, cols, m, offs, gm, _, wm = _tiles(B, H, BLOCK_B, HP, U)
    w = W + ks[:, None] * H + cols[None, :]  # W = W_hh (G*H, H), in DG's gate order: own columns of each gate
    w0, w1, w2, w3 = _gate_tiles(w, H * H, wm, K + 1)
    for i in range(I0, I1):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        if PHASES % 2 == 1:  # phase 1: gate gradients of step t, own units
            dhc = lstm_dgates(DG, Ac, Adc, Ao, F, sf_t, sf_b, GO, DH, DC, MF, t, B, H, rows, rok, cols, m, K, HAS_F,
                              MASKED)
            if RECORD:
                tl.store(NRP + (ps * T + t) * B + rows, sum_squares(dhc, 1), mask=rok)
        if PHASES == 3:
            _sync(CNT + pb, (i - I0 + 1) * ns, SYNC)  # DG[t], every unit, before phase 2 reads it
        if PHASES >= 2:  # phase 2: own units of dJ/dh_{t-1} = (passed-through part) + dG_t W_hh
            if MASKED:
                acc = tl.load(DH + offs, mask=m, other=0.0)
            else:
                acc = tl.zeros([BLOCK_B, U], dtype=DH.dtype.element_ty)
            g = DG + t * B * GH + rows[:, None] * GH + ks[None, :]
            acc = tl.dot(tl.load(g, mask=gm, other=0.0, cache_modifier=".cg"), w0, acc, input_precision=PREC)
            acc = tl.dot(tl.load(g + H, mask=gm, other=0.0, cache_modifier=".cg"), w1, acc, input_precision=PREC)
            acc = tl.dot(tl.load(g + 2 * H, mask=gm, other=0.0, cache_modifier=".cg"), w2, acc,
                         input_precision=PREC)
            if K == 3:
                acc = tl.dot(tl.load(g + 3 * H, mask=gm, other=0.0, cache_modifier=".cg"), w3, acc,
                             input_precision=PREC)
            tl.store(DH + offs, acc, mask=m)
            tl.debug_barrier()  # dh stored before the next phase 1 reads it (possibly from other threads)


@triton.jit
def gru_fwd(A, sa_t, W, sw_k, sw_n, XN, sx_t, sx_b, NB, H0, S, ss_t, OUT, MF, CNT, T, B, H, P_OFF, N_OFF, I0, I1,
            MASKED: tl.constexpr, REVERSE: tl.constexpr, USE_H0: tl.constexpr, SYNC: tl.constexpr,
            PREC: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr, U: tl.constexpr):
    pb = tl.program_id(0)
    ns = tl.num_programs(1)
    rows, rok, ks, cols, m, offs, hm, hoffs, wm = _tiles(B, H, BLOCK_B, HP, U)
    w = W + ks[:, None] * sw_k + cols[None, :] * sw_n  # W = W_hh^T (H, 3H): own columns of r, z, n
    wr, wz, wn, w_unused = _gate_tiles(w, H * sw_n, wm, 3)
    for i in range(I0, I1):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        pi = tl.minimum(tl.maximum(t + P_OFF, 0), T)
        hk = _state(H0, S, ss_t, pi, i, hoffs, hm, USE_H0)
        a = A + t * sa_t + rows[:, None] * (3 * H) + cols[None, :]  # [r, z, W_hn h + b_hn]
        ar = tl.dot(hk, wr, tl.load(a, mask=m, other=0.0), input_precision=PREC)
        az = tl.dot(hk, wz, tl.load(a + H, mask=m, other=0.0), input_precision=PREC)
        an = tl.dot(hk, wn, tl.load(a + 2 * H, mask=m, other=0.0), input_precision=PREC)
        xn = tl.load(XN + t * sx_t + rows[:, None] * sx_b + cols[None, :], mask=m, other=0.0)
        h_prev = _state(H0, S, ss_t, pi, i, offs, m, USE_H0)
        h = gru_cell(a, m, H, ar, az, an, xn, h_prev, NB + t * B * H + offs)
        if MASKED:
            keep = keep_rows(MF, t, B, rows, rok)
        else:
            keep = rok[:, None]  # not read
        store_h(S, ss_t, OUT, t, N_OFF, B, H, offs, m, h, h_prev, keep, MASKED)
        _sync(CNT + pb, (i - I0 + 1) * ns, SYNC)


@triton.jit
def gru_bwd(DG, DN, Az, An, Ar, R, Z, sr_t, sr_b, GO, DH, MF, NRP, W, CNT, T, B, H, I0, I1, MASKED: tl.constexpr,
            RECORD: tl.constexpr, REVERSE: tl.constexpr, SYNC: tl.constexpr, PHASES: tl.constexpr,
            PREC: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr, U: tl.constexpr):
    GH = 3 * H
    pb = tl.program_id(0)
    ps = tl.program_id(1)
    ns = tl.num_programs(1)
    rows, rok, ks, cols, m, offs, gm, _, wm = _tiles(B, H, BLOCK_B, HP, U)
    w = W + ks[:, None] * H + cols[None, :]  # W = W_hh (3H, H): own columns of each gate
    wr, wz, wn, w_unused = _gate_tiles(w, H * H, wm, 3)
    for i in range(I0, I1):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        if PHASES % 2 == 1:  # phase 1: gate gradients of step t, own units
            dhc = gru_dgates(DG, DN, Az, An, Ar, R, Z, sr_t, sr_b, GO, DH, MF, t, B, H, rows, rok, cols, m, MASKED)
            if RECORD:
                tl.store(NRP + (ps * T + t) * B + rows, sum_squares(dhc, 1), mask=rok)
        if PHASES == 3:
            _sync(CNT + pb, (i - I0 + 1) * ns, SYNC)
        if PHASES >= 2:  # phase 2: dJ/dh_{t-1} = (through z and padding) + dG_t W_hh, own units
            g = DG + t * B * GH + rows[:, None] * GH + ks[None, :]
            acc = tl.load(DH + offs, mask=m, other=0.0)
            acc = tl.dot(tl.load(g, mask=gm, other=0.0, cache_modifier=".cg"), wr, acc, input_precision=PREC)
            acc = tl.dot(tl.load(g + H, mask=gm, other=0.0, cache_modifier=".cg"), wz, acc, input_precision=PREC)
            acc = tl.dot(tl.load(g + 2 * H, mask=gm, other=0.0, cache_modifier=".cg"), wn, acc,
                         input_precision=PREC)
            tl.store(DH + offs, acc, mask=m)
            tl.debug_barrier()


@triton.jit
def rnn_fwd(XP, W, sw_k, sw_n, H0, S, ss_t, OUT, MF, CNT, T, B, H, P_OFF, N_OFF, I0, I1, ACT: tl.constexpr,
            MASKED: tl.constexpr, REVERSE: tl.constexpr, USE_H0: tl.constexpr, SYNC: tl.constexpr,
            PREC: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr, U: tl.constexpr):
    pb = tl.program_id(0)
    ns = tl.num_programs(1)
    rows, rok, ks, cols, m, offs, hm, hoffs, wm = _tiles(B, H, BLOCK_B, HP, U)
    w = tl.load(W + ks[:, None] * sw_k + cols[None, :] * sw_n, mask=wm, other=0.0)  # own columns of W_hh^T
    for i in range(I0, I1):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        pi = tl.minimum(tl.maximum(t + P_OFF, 0), T)
        hk = _state(H0, S, ss_t, pi, i, hoffs, hm, USE_H0)
        h = tl.dot(hk, w, tl.load(XP + t * B * H + offs, mask=m, other=0.0), input_precision=PREC)
        if ACT == TANH:
            h = tanh(h)
        elif ACT == RELU:
            h = tl.maximum(h, 0.0)
        if MASKED:
            h_prev = _state(H0, S, ss_t, pi, i, offs, m, USE_H0)
            keep = keep_rows(MF, t, B, rows, rok)
        else:
            h_prev, keep = h, rok[:, None]  # not read
        store_h(S, ss_t, OUT, t, N_OFF, B, H, offs, m, h, h_prev, keep, MASKED)
        _sync(CNT + pb, (i - I0 + 1) * ns, SYNC)


@triton.jit
def rnn_bwd(DG, Ad, GO, DH, MF, NRP, W, CNT, T, B, H, I0, I1, HAS_AD: tl.constexpr, MASKED: tl.constexpr,
            RECORD: tl.constexpr, REVERSE: tl.constexpr, SYNC: tl.constexpr, PHASES: tl.constexpr,
            PREC: tl.constexpr, BLOCK_B: tl.constexpr, HP: tl.constexpr, U: tl.constexpr):
    pb = tl.program_id(0)
    ps = tl.program_id(1)
    ns = tl.num_programs(1)
    rows, rok, ks, cols, m, offs, gm, goffs, wm = _tiles(B, H, BLOCK_B, HP, U)
    w = tl.load(W + ks[:, None] * H + cols[None, :], mask=wm, other=0.0)  # own columns of W_hh (H, H)
    for i in range(I0, I1):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        if PHASES % 2 == 1:  # phase 1: dJ/da_t, own units
            dhc = rnn_dgates(DG, Ad, GO, DH, MF, t, B, H, rows, rok, cols, m, HAS_AD, MASKED)
            if RECORD:
                tl.store(NRP + (ps * T + t) * B + rows, sum_squares(dhc, 1), mask=rok)
        if PHASES == 3:
            _sync(CNT + pb, (i - I0 + 1) * ns, SYNC)
        if PHASES >= 2:  # phase 2: dJ/dh_{t-1} = (passed-through part) + dG_t W_hh, own units
            if MASKED:
                acc = tl.load(DH + offs, mask=m, other=0.0)
            else:
                acc = tl.zeros([BLOCK_B, U], dtype=DH.dtype.element_ty)
            g = tl.load(DG + t * B * H + goffs, mask=gm, other=0.0, cache_modifier=".cg")
            tl.store(DH + offs, tl.dot(g, w, acc, input_precision=PREC), mask=m)
            tl.debug_barrier()
