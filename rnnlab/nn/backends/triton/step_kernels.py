r"""Triton kernels of :mod:`rnnlab.nn.backends.triton.step`: one step's gate arithmetic, forward and backward.

Imported on first use, so ``TRITON_INTERPRET=1`` (CPU interpreter, for tests) is read then. Row ``b`` of a
step's ``(B, G*H)`` gate block per program; the backward kernels see a whole row (``BLOCK >= H``) to reduce
:math:`\lVert \partial J / \partial h_t \rVert` in place. Gate layouts, buffers and factors: the glossary of
:mod:`rnnlab.nn.backends.bptt`.
"""
import triton
import triton.language as tl

from rnnlab.nn import backends

# The `KIND` / `ACT` codes of rnnlab.nn.backends, as constants a kernel may read.
LSTM, LSTM_NOFORGET, CIFG = tl.constexpr(backends.LSTM), tl.constexpr(backends.LSTM_NOFORGET), tl.constexpr(backends.CIFG)
TANH, RELU, IDENTITY = tl.constexpr(backends.TANH), tl.constexpr(backends.RELU), tl.constexpr(backends.IDENTITY)


@triton.jit
def wide(x):
    """float16 / bfloat16 values as float32 (Triton's exp and sqrt take 32 or 64 bits); others as they are."""
    if x.dtype.primitive_bitwidth < 32:
        return x.to(tl.float32)
    else:
        return x


@triton.jit
def sum_squares(x, axis: tl.constexpr):
    """Sum of squares along ``axis`` in float64: float32 squares of entries below ~1e-19 are denormal, and flushed
    to zero where denormals are, while every float32 entry's square is a normal float64."""
    x64 = x.to(tl.float64)
    return tl.sum(x64 * x64, axis=axis)


@triton.jit
def sig(x):
    return 1.0 / (1.0 + tl.exp(-wide(x)))


@triton.jit
def tanh(x):
    return 2.0 / (1.0 + tl.exp(-2.0 * wide(x))) - 1.0


@triton.jit
def lstm_fwd(A, hp, cp, hs, cs, tc, out, m, H, KIND: tl.constexpr, MASKED: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = j < H
    G: tl.constexpr = 4 if KIND == LSTM else 3
    a = A + b * G * H + j  # row b of A_t, gates [sigmoid gates..., g]
    r = b * H + j
    s0 = sig(tl.load(a, mask=ok))
    tl.store(a, s0, mask=ok)
    s1 = sig(tl.load(a + H, mask=ok))
    tl.store(a + H, s1, mask=ok)
    g = tanh(tl.load(a + (G - 1) * H, mask=ok))
    tl.store(a + (G - 1) * H, g, mask=ok)
    c_prev = tl.load(cp + r, mask=ok)
    if KIND == LSTM:  # [i, f, o, g]
        o = sig(tl.load(a + 2 * H, mask=ok))
        tl.store(a + 2 * H, o, mask=ok)
        c = s1 * c_prev + s0 * g  # c_t = f ⊙ c_{t-1} + i ⊙ g
    elif KIND == LSTM_NOFORGET:  # [i, o, g]
        o = s1
        c = c_prev + s0 * g  # c_t = c_{t-1} + i ⊙ g
    else:  # [f, o, g]
        o = s1
        c = g + s0 * (c_prev - g)  # c_t = f ⊙ c_{t-1} + (1 - f) ⊙ g
    t = tanh(c)
    tl.store(tc + r, t, mask=ok)
    h = o * t  # h_t = o ⊙ tanh(c_t)
    if MASKED:
        keep = tl.load(m + b) == 0
        tl.store(cs + r, tl.where(keep, c_prev, c), mask=ok)
        tl.store(hs + r, tl.where(keep, tl.load(hp + r, mask=ok), h), mask=ok)
        tl.store(out + r, tl.where(keep, 0.0, h), mask=ok)
    else:
        tl.store(cs + r, c, mask=ok)
        tl.store(hs + r, h, mask=ok)


@triton.jit
def lstm_bwd(DG, Ac, Adc, Ao, F, f_stride, gout, dh, dc, m, nr, H, K: tl.constexpr, HAS_F: tl.constexpr,
             MASKED: tl.constexpr, RECORD: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    j = tl.arange(0, BLOCK)
    ok = j < H
    r = b * H + j
    dh_t = tl.load(dh + r, mask=ok, other=0.0) + tl.load(gout + r, mask=ok, other=0.0)  # total dJ/dh_t
    dc_t = tl.load(dc + r, mask=ok, other=0.0)
    if MASKED:
        mk = tl.load(m + b)
        dhc, dcc = dh_t * mk, dc_t * mk
    else:
        dhc, dcc = dh_t, dc_t
    dcc = dcc + dhc * tl.load(Ac + r, mask=ok)
    d = DG + b * (K + 1) * H + j
    for k in tl.static_range(K):
        tl.store(d + k * H, tl.load(Adc + (b * K + k) * H + j, mask=ok) * dcc, mask=ok)
    tl.store(d + K * H, dhc * tl.load(Ao + r, mask=ok), mask=ok)
    if HAS_F:
        dcc = dcc * tl.load(F + b * f_stride + j, mask=ok)
    if MASKED:
        tl.store(dc + r, dc_t - dc_t * mk + dcc, mask=ok)
        tl.store(dh + r, dh_t - dhc, mask=ok)  # passed through padded steps; + dG W_hh after
    else:
        tl.store(dc + r, dcc, mask=ok)
    if RECORD:
        tl.store(nr + b, tl.sqrt(sum_squares(dhc, 0)))


@triton.jit
def gru_fwd(A, XN, xn_stride, N, hp, hs, out, m, H, MASKED: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = j < H
    a = A + b * 3 * H + j  # [r, z, W_hn h + b_hn]
    r = b * H + j
    rg = sig(tl.load(a, mask=ok))
    z = sig(tl.load(a + H, mask=ok))
    tl.store(a, rg, mask=ok)
    tl.store(a + H, z, mask=ok)
    n = tanh(tl.load(XN + b * xn_stride + j, mask=ok) + rg * tl.load(a + 2 * H, mask=ok))
    tl.store(N + r, n, mask=ok)
    h_prev = tl.load(hp + r, mask=ok)
    h = n + z * (h_prev - n)  # h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    if MASKED:
        keep = tl.load(m + b) == 0
        tl.store(hs + r, tl.where(keep, h_prev, h), mask=ok)
        tl.store(out + r, tl.where(keep, 0.0, h), mask=ok)
    else:
        tl.store(hs + r, h, mask=ok)


@triton.jit
def gru_bwd(DG, DN, Az, An, Ar, R, Z, gate_stride, gout, dh, m, nr, H, MASKED: tl.constexpr,
            RECORD: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    j = tl.arange(0, BLOCK)
    ok = j < H
    r = b * H + j
    dh_t = tl.load(dh + r, mask=ok, other=0.0) + tl.load(gout + r, mask=ok, other=0.0)
    if MASKED:
        dhc = dh_t * tl.load(m + b)
    else:
        dhc = dh_t
    dn = dhc * tl.load(An + r, mask=ok)
    tl.store(DN + r, dn, mask=ok)
    d = DG + b * 3 * H + j
    tl.store(d, dn * tl.load(Ar + r, mask=ok), mask=ok)
    tl.store(d + H, dhc * tl.load(Az + r, mask=ok), mask=ok)
    tl.store(d + 2 * H, dn * tl.load(R + b * gate_stride + j, mask=ok), mask=ok)
    tl.store(dh + r, dh_t - dhc + dhc * tl.load(Z + b * gate_stride + j, mask=ok), mask=ok)
    if RECORD:
        tl.store(nr + b, tl.sqrt(sum_squares(dhc, 0)))


@triton.jit
def rnn_fwd(hc, hp, hs, out, m, H, ACT: tl.constexpr, MASKED: tl.constexpr, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = j < H
    r = b * H + j
    h = tl.load(hc + r, mask=ok)
    if ACT == TANH:
        h = tanh(h)
    elif ACT == RELU:
        h = tl.maximum(h, 0.0)
    if MASKED:
        keep = tl.load(m + b) == 0
        tl.store(hs + r, tl.where(keep, tl.load(hp + r, mask=ok), h), mask=ok)
        tl.store(out + r, tl.where(keep, 0.0, h), mask=ok)
    else:
        tl.store(hs + r, h, mask=ok)


@triton.jit
def rnn_bwd(DG, Ad, gout, dh, m, nr, H, HAS_AD: tl.constexpr, MASKED: tl.constexpr, RECORD: tl.constexpr,
            BLOCK: tl.constexpr):
    b = tl.program_id(0)
    j = tl.arange(0, BLOCK)
    ok = j < H
    r = b * H + j
    dh_t = tl.load(dh + r, mask=ok, other=0.0) + tl.load(gout + r, mask=ok, other=0.0)
    if MASKED:
        dhc = dh_t * tl.load(m + b)
        tl.store(dh + r, dh_t - dhc, mask=ok)
    else:
        dhc = dh_t
    if HAS_AD:
        tl.store(DG + r, dhc * tl.load(Ad + r, mask=ok), mask=ok)
    else:
        tl.store(DG + r, dhc, mask=ok)
    if RECORD:
        tl.store(nr + b, tl.sqrt(sum_squares(dhc, 0)))
