r"""Persistent Triton kernels of :mod:`rnnlab.nn.backends.triton.persistent`: one launch walks all T steps.

Imported on first use (so ``TRITON_INTERPRET=1`` is read then). Program ``p`` owns batch rows
``[p*BLOCK_B, (p+1)*BLOCK_B)`` (masked past ``B``) for the whole sequence; the recurrent product of a
step is computed for those rows in ``(BLOCK_K, BLOCK_N)`` weight chunks with ``tl.dot`` (``DOT``) or a
broadcast multiply-and-sum (``DOT=False``), weights re-read from global memory (L2) every step.
Gate arithmetic as in :mod:`rnnlab.nn.backends.triton.step_kernels`; buffers and factors in the glossary of
:mod:`rnnlab.nn.backends.bptt`.

Every value one thread writes to global memory and another thread of the same program reads later
is separated by ``tl.debug_barrier()`` (a CTA barrier, which also orders global memory within the
CTA): forward, the state ``h_t`` written in step ``t`` and read by every column chunk of step
``t+1``; backward, ``DG[t]`` written in phase 1 and read by the ``DG[t] W_hh`` product in phase 2,
and ``dh`` read in phase 1, rewritten in phase 2, read again in the next step's phase 1. Everything
else is read and written element by element by the same tile (data dependence orders it). Launch
with ``num_stages=1`` (the default) so no load is software-pipelined across a barrier.
"""
import triton
import triton.language as tl

from rnnlab.nn.backends.triton.step_kernels import LSTM, LSTM_NOFORGET, RELU, TANH, sig, sum_squares, tanh


@triton.jit
def _mm(acc, a, b, DOT: tl.constexpr, PREC: tl.constexpr):
    """acc + a @ b for (BLOCK_B, BLOCK_K) x (BLOCK_K, BLOCK_N) tiles."""
    if DOT:
        acc += tl.dot(a, b, input_precision=PREC)
    else:
        acc += tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    return acc


@triton.jit
def _prev(H0, S, ss_t, idx, i, offs, m, USE_H0: tl.constexpr):
    """Tile of the state before step ``i`` of the walk: ``S[idx]``, or ``H0`` at the first step when ``USE_H0``."""
    if USE_H0:  # S is `out` (T, B, H): no slot for h0
        return (tl.load(H0 + offs, mask=m & (i == 0), other=0.0)
                + tl.load(S + idx * ss_t + offs, mask=m & (i != 0), other=0.0))
    else:
        return tl.load(S + idx * ss_t + offs, mask=m, other=0.0)


@triton.jit
def keep_rows(MF, t, B, rows, rok):
    """``(BLOCK_B, 1)``: which rows are past their length at step t (their state is kept, their output is 0)."""
    return (tl.load(MF + t * B + rows, mask=rok, other=1.0) == 0)[:, None]


@triton.jit
def store_h(S, ss_t, OUT, t, N_OFF, B, H, offs, m, h, h_prev, keep, MASKED: tl.constexpr):
    """h_t into the state sequence; with lengths (``keep``: :func:`keep_rows`) also the output, where padded steps
    keep h_{t-1} and output 0. Unmasked, ``h_prev`` and ``keep`` are not read."""
    if MASKED:
        tl.store(S + (t + N_OFF) * ss_t + offs, tl.where(keep, h_prev, h), mask=m)
        tl.store(OUT + t * B * H + offs, tl.where(keep, 0.0, h), mask=m)
    else:
        tl.store(S + (t + N_OFF) * ss_t + offs, h, mask=m)


@triton.jit
def _dh_prev(DG, DH, W, t, B, H, GH, rows, rok, ks, ns, LOAD_DH: tl.constexpr, DOT: tl.constexpr,
             PREC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    """Phase 2 of a backward step, every column chunk: ``DH = (DH if LOAD_DH else 0) + DG[t] W_hh`` for these rows,
    with ``W`` = W_hh (GH, H) and ``DG[t]`` (B, GH)."""
    for n0 in range(0, H, BLOCK_N):
        cols = n0 + ns
        m = rok[:, None] & (cols < H)[None, :]
        offs = rows[:, None] * H + cols[None, :]
        if LOAD_DH:
            acc = tl.load(DH + offs, mask=m, other=0.0)
        else:
            acc = tl.zeros([BLOCK_B, BLOCK_N], dtype=DH.dtype.element_ty)
        for k0 in range(0, GH, BLOCK_K):
            kk = k0 + ks
            g = tl.load(DG + t * B * GH + rows[:, None] * GH + kk[None, :], mask=rok[:, None] & (kk < GH)[None, :],
                        other=0.0)
            w = tl.load(W + kk[:, None] * H + cols[None, :], mask=(kk < GH)[:, None] & (cols < H)[None, :],
                        other=0.0)
            acc = _mm(acc, g, w, DOT, PREC)
        tl.store(DH + offs, acc, mask=m)


@triton.jit
def lstm_cell(a, m, H, a0, a1, a2, a3, c_prev, KIND: tl.constexpr):
    """The step's gate activations, stored over their pre-activations at ``a`` (gates ``H`` apart), and ``(o, c_t)``.
    ``LSTM`` [i, f, o, g]; ``LSTM_NOFORGET`` [i, o, g]; ``CIFG`` [f, o, g] (i = 1 - f). ``a3``: ``LSTM`` only."""
    s0 = sig(a0)
    s1 = sig(a1)
    tl.store(a, s0, mask=m)
    tl.store(a + H, s1, mask=m)
    if KIND == LSTM:
        o = sig(a2)
        g = tanh(a3)
        tl.store(a + 2 * H, o, mask=m)
        tl.store(a + 3 * H, g, mask=m)
        c = s1 * c_prev + s0 * g
    elif KIND == LSTM_NOFORGET:
        o = s1
        g = tanh(a2)
        tl.store(a + 2 * H, g, mask=m)
        c = c_prev + s0 * g
    else:
        o = s1
        g = tanh(a2)
        tl.store(a + 2 * H, g, mask=m)
        c = g + s0 * (c_prev - g)
    return o, c


@triton.jit
def lstm_fwd(A, sa_t, W, sw_k, sw_n, H0, S, ss_t, Cs, TC, OUT, MF, T, B, H, P_OFF, N_OFF, CP, CN,
             KIND: tl.constexpr, MASKED: tl.constexpr, REVERSE: tl.constexpr, USE_H0: tl.constexpr,
             DOT: tl.constexpr, PREC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
             BLOCK_N: tl.constexpr):
    G: tl.constexpr = 4 if KIND == LSTM else 3
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rok = rows < B
    ks = tl.arange(0, BLOCK_K)
    ns = tl.arange(0, BLOCK_N)
    for i in range(T):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        pi = tl.minimum(tl.maximum(t + P_OFF, 0), T)  # clamped: at the first step with USE_H0 it is not read
        if MASKED:
            keep = keep_rows(MF, t, B, rows, rok)
        for n0 in range(0, H, BLOCK_N):
            cols = n0 + ns
            m = rok[:, None] & (cols < H)[None, :]
            offs = rows[:, None] * H + cols[None, :]
            a = A + t * sa_t + rows[:, None] * (G * H) + cols[None, :]  # gates [sigmoid gates..., g]
            a0 = tl.load(a, mask=m, other=0.0)
            a1 = tl.load(a + H, mask=m, other=0.0)
            a2 = tl.load(a + 2 * H, mask=m, other=0.0)
            if G == 4:
                a3 = tl.load(a + 3 * H, mask=m, other=0.0)
            for k0 in range(0, H, BLOCK_K):  # += h_{t-1} W_hh^T for this column chunk of every gate
                kk = k0 + ks
                hk = _prev(H0, S, ss_t, pi, i, rows[:, None] * H + kk[None, :], rok[:, None] & (kk < H)[None, :],
                           USE_H0)
                wm = (kk < H)[:, None] & (cols < H)[None, :]
                w = W + kk[:, None] * sw_k + cols[None, :] * sw_n
                a0 = _mm(a0, hk, tl.load(w, mask=wm, other=0.0), DOT, PREC)
                a1 = _mm(a1, hk, tl.load(w + H * sw_n, mask=wm, other=0.0), DOT, PREC)
                a2 = _mm(a2, hk, tl.load(w + 2 * H * sw_n, mask=wm, other=0.0), DOT, PREC)
                if G == 4:
                    a3 = _mm(a3, hk, tl.load(w + 3 * H * sw_n, mask=wm, other=0.0), DOT, PREC)
            c_prev = tl.load(Cs + (t + CP) * B * H + offs, mask=m, other=0.0)
            if G == 4:
                o, c = lstm_cell(a, m, H, a0, a1, a2, a3, c_prev, KIND)
            else:
                o, c = lstm_cell(a, m, H, a0, a1, a2, a2, c_prev, KIND)
            tc = tanh(c)
            tl.store(TC + t * B * H + offs, tc, mask=m)
            h = o * tc
            if MASKED:
                tl.store(Cs + (t + CN) * B * H + offs, tl.where(keep, c_prev, c), mask=m)
                h_prev = _prev(H0, S, ss_t, pi, i, offs, m, USE_H0)
                tl.store(S + (t + N_OFF) * ss_t + offs, tl.where(keep, h_prev, h), mask=m)
                tl.store(OUT + t * B * H + offs, tl.where(keep, 0.0, h), mask=m)
            else:
                tl.store(Cs + (t + CN) * B * H + offs, c, mask=m)
                tl.store(S + (t + N_OFF) * ss_t + offs, h, mask=m)
        tl.debug_barrier()  # h_t complete for these rows before step t+1 reads all its columns


@triton.jit
def lstm_dgates(DG, Ac, Adc, Ao, F, sf_t, sf_b, GO, DH, DC, MF, t, B, H, rows, rok, cols, m, K: tl.constexpr,
                HAS_F: tl.constexpr, MASKED: tl.constexpr):
    """Phase 1 of a backward step on one ``(rows, cols)`` tile: the gate gradients into ``DG[t]``, the cell
    gradient carried to step t-1 into ``DC``, with lengths the part of dJ/dh_t passed through a padded step into
    ``DH``; returns dJ/dh_t inside the sequence (for the norms)."""
    offs = rows[:, None] * H + cols[None, :]
    toffs = t * B * H + offs
    dh_t = tl.load(DH + offs, mask=m, other=0.0) + tl.load(GO + toffs, mask=m, other=0.0)  # total dJ/dh_t
    dc_t = tl.load(DC + offs, mask=m, other=0.0)
    if MASKED:
        mk = tl.load(MF + t * B + rows, mask=rok, other=0.0)[:, None]
        dhc = dh_t * mk
        dcc = dc_t * mk
    else:
        dhc = dh_t
        dcc = dc_t
    dcc = dcc + dhc * tl.load(Ac + toffs, mask=m, other=0.0)
    d = DG + t * B * (K + 1) * H + rows[:, None] * ((K + 1) * H) + cols[None, :]
    for k in tl.static_range(K):
        adc = tl.load(Adc + ((t * B + rows[:, None]) * K + k) * H + cols[None, :], mask=m, other=0.0)
        tl.store(d + k * H, adc * dcc, mask=m)
    tl.store(d + K * H, dhc * tl.load(Ao + toffs, mask=m, other=0.0), mask=m)
    if HAS_F:
        dcc = dcc * tl.load(F + t * sf_t + rows[:, None] * sf_b + cols[None, :], mask=m, other=0.0)
    if MASKED:
        tl.store(DC + offs, dc_t - dc_t * mk + dcc, mask=m)
        tl.store(DH + offs, dh_t - dhc, mask=m)  # passed through padded steps; + dG W_hh in phase 2
    else:
        tl.store(DC + offs, dcc, mask=m)
    return dhc


@triton.jit
def lstm_bwd(DG, Ac, Adc, Ao, F, sf_t, sf_b, GO, DH, DC, MF, NR, W, T, B, H, K: tl.constexpr,
             HAS_F: tl.constexpr, MASKED: tl.constexpr, RECORD: tl.constexpr, REVERSE: tl.constexpr,
             DOT: tl.constexpr, PREC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
             BLOCK_N: tl.constexpr):
    GH = (K + 1) * H
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rok = rows < B
    ks = tl.arange(0, BLOCK_K)
    ns = tl.arange(0, BLOCK_N)
    for i in range(T):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        nr = tl.zeros([BLOCK_B], dtype=tl.float64)  # see sum_squares
        # phase 1: gate gradients of step t for these rows
        for n0 in range(0, H, BLOCK_N):
            cols = n0 + ns
            m = rok[:, None] & (cols < H)[None, :]
            dhc = lstm_dgates(DG, Ac, Adc, Ao, F, sf_t, sf_b, GO, DH, DC, MF, t, B, H, rows, rok, cols, m, K, HAS_F,
                              MASKED)
            if RECORD:
                nr += sum_squares(dhc, 1)
        if RECORD:
            tl.store(NR + t * B + rows, tl.sqrt(nr), mask=rok)
        tl.debug_barrier()  # DG[t] (all columns) and dh written before phase 2 reads them
        # phase 2: dJ/dh_{t-1} = (passed-through part) + dG_t W_hh
        _dh_prev(DG, DH, W, t, B, H, GH, rows, rok, ks, ns, MASKED, DOT, PREC, BLOCK_B, BLOCK_K, BLOCK_N)
        tl.debug_barrier()  # dh complete before the next step reads it


@triton.jit
def gru_cell(a, m, H, ar, az, an, xn, h_prev, nb):
    """One GRU step on a tile from its pre-activations: r, z and ``W_hn h + b_hn`` stored over them at ``a`` (gates
    ``H`` apart), n at ``nb``; returns h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}."""
    r = sig(ar)
    z = sig(az)
    tl.store(a, r, mask=m)
    tl.store(a + H, z, mask=m)
    tl.store(a + 2 * H, an, mask=m)  # W_hn h_{t-1} + b_hn, kept for the backward
    n = tanh(xn + r * an)
    tl.store(nb, n, mask=m)
    return n + z * (h_prev - n)


@triton.jit
def gru_fwd(A, sa_t, W, sw_k, sw_n, XN, sx_t, sx_b, NB, H0, S, ss_t, OUT, MF, T, B, H, P_OFF, N_OFF,
            MASKED: tl.constexpr, REVERSE: tl.constexpr, USE_H0: tl.constexpr, DOT: tl.constexpr,
            PREC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rok = rows < B
    ks = tl.arange(0, BLOCK_K)
    ns = tl.arange(0, BLOCK_N)
    for i in range(T):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        pi = tl.minimum(tl.maximum(t + P_OFF, 0), T)
        if MASKED:
            keep = keep_rows(MF, t, B, rows, rok)
        else:
            keep = rok[:, None]  # not read
        for n0 in range(0, H, BLOCK_N):
            cols = n0 + ns
            m = rok[:, None] & (cols < H)[None, :]
            offs = rows[:, None] * H + cols[None, :]
            a = A + t * sa_t + rows[:, None] * (3 * H) + cols[None, :]  # [r, z, W_hn h + b_hn]
            ar = tl.load(a, mask=m, other=0.0)
            az = tl.load(a + H, mask=m, other=0.0)
            an = tl.load(a + 2 * H, mask=m, other=0.0)
            for k0 in range(0, H, BLOCK_K):
                kk = k0 + ks
                hk = _prev(H0, S, ss_t, pi, i, rows[:, None] * H + kk[None, :], rok[:, None] & (kk < H)[None, :],
                           USE_H0)
                wm = (kk < H)[:, None] & (cols < H)[None, :]
                w = W + kk[:, None] * sw_k + cols[None, :] * sw_n
                ar = _mm(ar, hk, tl.load(w, mask=wm, other=0.0), DOT, PREC)
                az = _mm(az, hk, tl.load(w + H * sw_n, mask=wm, other=0.0), DOT, PREC)
                an = _mm(an, hk, tl.load(w + 2 * H * sw_n, mask=wm, other=0.0), DOT, PREC)
            xn = tl.load(XN + t * sx_t + rows[:, None] * sx_b + cols[None, :], mask=m, other=0.0)
            h_prev = _prev(H0, S, ss_t, pi, i, offs, m, USE_H0)
            h = gru_cell(a, m, H, ar, az, an, xn, h_prev, NB + t * B * H + offs)
            store_h(S, ss_t, OUT, t, N_OFF, B, H, offs, m, h, h_prev, keep, MASKED)
        tl.debug_barrier()


@triton.jit
def gru_dgates(DG, DN, Az, An, Ar, R, Z, sr_t, sr_b, GO, DH, MF, t, B, H, rows, rok, cols, m, MASKED: tl.constexpr):
    """Phase 1 of a GRU backward step on one ``(rows, cols)`` tile: ``DN[t]``, the gate gradients into ``DG[t]``, and
    into ``DH`` the part of dJ/dh_{t-1} that does not go through W_hh (through z, and padded steps); returns dJ/dh_t
    inside the sequence (for the norms)."""
    offs = rows[:, None] * H + cols[None, :]
    toffs = t * B * H + offs
    goffs = t * sr_t + rows[:, None] * sr_b + cols[None, :]
    dh_t = tl.load(DH + offs, mask=m, other=0.0) + tl.load(GO + toffs, mask=m, other=0.0)
    if MASKED:
        dhc = dh_t * tl.load(MF + t * B + rows, mask=rok, other=0.0)[:, None]
    else:
        dhc = dh_t
    dn = dhc * tl.load(An + toffs, mask=m, other=0.0)
    tl.store(DN + toffs, dn, mask=m)
    d = DG + t * B * (3 * H) + rows[:, None] * (3 * H) + cols[None, :]
    tl.store(d, dn * tl.load(Ar + toffs, mask=m, other=0.0), mask=m)
    tl.store(d + H, dhc * tl.load(Az + toffs, mask=m, other=0.0), mask=m)
    tl.store(d + 2 * H, dn * tl.load(R + goffs, mask=m, other=0.0), mask=m)
    tl.store(DH + offs, dh_t - dhc + dhc * tl.load(Z + goffs, mask=m, other=0.0), mask=m)
    return dhc


@triton.jit
def gru_bwd(DG, DN, Az, An, Ar, R, Z, sr_t, sr_b, GO, DH, MF, NR, W, T, B, H, MASKED: tl.constexpr,
            RECORD: tl.constexpr, REVERSE: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
            BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    GH = 3 * H
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rok = rows < B
    ks = tl.arange(0, BLOCK_K)
    ns = tl.arange(0, BLOCK_N)
    for i in range(T):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        nr = tl.zeros([BLOCK_B], dtype=tl.float64)  # see sum_squares
        for n0 in range(0, H, BLOCK_N):
            cols = n0 + ns
            m = rok[:, None] & (cols < H)[None, :]
            dhc = gru_dgates(DG, DN, Az, An, Ar, R, Z, sr_t, sr_b, GO, DH, MF, t, B, H, rows, rok, cols, m, MASKED)
            if RECORD:
                nr += sum_squares(dhc, 1)
        if RECORD:
            tl.store(NR + t * B + rows, tl.sqrt(nr), mask=rok)
        tl.debug_barrier()
        _dh_prev(DG, DH, W, t, B, H, GH, rows, rok, ks, ns, True, DOT, PREC, BLOCK_B, BLOCK_K, BLOCK_N)
        tl.debug_barrier()


@triton.jit
def rnn_fwd(XP, W, sw_k, sw_n, H0, S, ss_t, OUT, MF, T, B, H, P_OFF, N_OFF, ACT: tl.constexpr,
            MASKED: tl.constexpr, REVERSE: tl.constexpr, USE_H0: tl.constexpr, DOT: tl.constexpr,
            PREC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rok = rows < B
    ks = tl.arange(0, BLOCK_K)
    ns = tl.arange(0, BLOCK_N)
    for i in range(T):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        pi = tl.minimum(tl.maximum(t + P_OFF, 0), T)
        if MASKED:
            keep = keep_rows(MF, t, B, rows, rok)
        else:
            keep = rok[:, None]  # not read
        for n0 in range(0, H, BLOCK_N):
            cols = n0 + ns
            m = rok[:, None] & (cols < H)[None, :]
            offs = rows[:, None] * H + cols[None, :]
            h = tl.load(XP + t * B * H + offs, mask=m, other=0.0)
            for k0 in range(0, H, BLOCK_K):
                kk = k0 + ks
                hk = _prev(H0, S, ss_t, pi, i, rows[:, None] * H + kk[None, :], rok[:, None] & (kk < H)[None, :],
                           USE_H0)
                w = tl.load(W + kk[:, None] * sw_k + cols[None, :] * sw_n,
                            mask=(kk < H)[:, None] & (cols < H)[None, :], other=0.0)
                h = _mm(h, hk, w, DOT, PREC)
            if ACT == TANH:
                h = tanh(h)
            elif ACT == RELU:
                h = tl.maximum(h, 0.0)
            if MASKED:
                h_prev = _prev(H0, S, ss_t, pi, i, offs, m, USE_H0)
            else:
                h_prev = h  # not read
            store_h(S, ss_t, OUT, t, N_OFF, B, H, offs, m, h, h_prev, keep, MASKED)
        tl.debug_barrier()


@triton.jit
def rnn_dgates(DG, Ad, GO, DH, MF, t, B, H, rows, rok, cols, m, HAS_AD: tl.constexpr, MASKED: tl.constexpr):
    """Phase 1 of an RNN backward step on one ``(rows, cols)`` tile: dJ/d(preactivation) into ``DG[t]``, with lengths
    the part of dJ/dh_t passed through a padded step into ``DH``; returns dJ/dh_t inside the sequence."""
    offs = rows[:, None] * H + cols[None, :]
    toffs = t * B * H + offs
    dh_t = tl.load(DH + offs, mask=m, other=0.0) + tl.load(GO + toffs, mask=m, other=0.0)
    if MASKED:
        dhc = dh_t * tl.load(MF + t * B + rows, mask=rok, other=0.0)[:, None]
        tl.store(DH + offs, dh_t - dhc, mask=m)  # passed through padded steps
    else:
        dhc = dh_t
    if HAS_AD:
        tl.store(DG + toffs, dhc * tl.load(Ad + toffs, mask=m, other=0.0), mask=m)
    else:
        tl.store(DG + toffs, dhc, mask=m)
    return dhc


@triton.jit
def rnn_bwd(DG, Ad, GO, DH, MF, NR, W, T, B, H, HAS_AD: tl.constexpr, MASKED: tl.constexpr,
            RECORD: tl.constexpr, REVERSE: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
            BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    rok = rows < B
    ks = tl.arange(0, BLOCK_K)
    ns = tl.arange(0, BLOCK_N)
    for i in range(T):
        if REVERSE:
            t = T - 1 - i
        else:
            t = i
        nr = tl.zeros([BLOCK_B], dtype=tl.float64)  # see sum_squares
        for n0 in range(0, H, BLOCK_N):
            cols = n0 + ns
            m = rok[:, None] & (cols < H)[None, :]
            dhc = rnn_dgates(DG, Ad, GO, DH, MF, t, B, H, rows, rok, cols, m, HAS_AD, MASKED)
            if RECORD:
                nr += sum_squares(dhc, 1)
        if RECORD:
            tl.store(NR + t * B + rows, tl.sqrt(nr), mask=rok)
        tl.debug_barrier()
        _dh_prev(DG, DH, W, t, B, H, H, rows, rok, ks, ns, MASKED, DOT, PREC, BLOCK_B, BLOCK_K, BLOCK_N)
        tl.debug_barrier()
