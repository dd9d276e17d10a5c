r"""Backend ``'fused'``: :mod:`~rnnlab.nn.backends.bptt`'s hand-written BPTT around six per-step loops.

The loops below (``lstm_fwd`` ... ``rnn_bwd``) are the Python ones: each step is one in-place ``addmm_`` for
:math:`W_{hh} h_{t-1}` plus a handful of in-place / ``out=`` elementwise ops on views made once with ``unbind`` (no
per-step allocation, no per-step slicing). The same six loops exist in C++ (:mod:`~rnnlab.nn.backends.cpp`, built
once in the background and cached), where a CPU step is the matmul plus one vectorised pass over the step's gates;
:func:`run_layer` uses them once built and these until then (same buffers, same numbers: tests/test_fused.py).
The buffers' names are those of the glossary in :mod:`~rnnlab.nn.backends.bptt`.

``grad_norms`` (B, T), if given, is filled during the backward with
:math:`\lVert \partial J / \partial h_t \rVert_2`, the total derivative (output at ``t`` plus
recurrence), 0 at padded steps; no second pass.
"""
import torch

from rnnlab.nn.backends import CIFG, LSTM, RELU, TANH
from rnnlab.nn.backends.bptt import run_layer_with, states, walk
from rnnlab.nn.norms import grad_norm

__all__ = ["run_layer", "PythonLoops"]


def lstm_fwd(A, whhT, h0, Cs, TC, out, Hs, M, Mf, kind: int, reverse: bool):
    """A (T, B, G*H) preactivations minus W_hh h, gates permuted to [sigmoid gates..., g]; in place."""
    T, B, GH = A.shape
    H = GH // (4 if kind == LSTM else 3)
    steps, p, n = walk(T, reverse)
    Hl, Cl, TCl = states(h0, out, Hs, reverse), Cs.unbind(0), TC.unbind(0)
    Al, Sl, Gl = A.unbind(0), A[..., : GH - H].unbind(0), A[..., GH - H:].unbind(0)
    gate = lambda k: A[..., k * H:(k + 1) * H].unbind(0)  # noqa: E731
    Il, Fl, Ol = gate(0), gate(1 if kind == LSTM else 0), gate(GH // H - 2)  # [i,f,o,g] [i,o,g] [f,o,g]
    cn, hc = A.new_empty(B, H), A.new_empty(B, H)
    masked = M is not None
    if masked:
        Ml, Mfl, outl = M.unbind(0), Mf.unbind(0), out.unbind(0)
    for t in steps:
        hp, cp = Hl[t + p], Cl[t + p]
        Al[t].addmm_(hp, whhT)  # + W_hh h_{t-1}
        Sl[t].sigmoid_()
        Gl[t].tanh_()
        c = cn if masked else Cl[t + n]
        if kind == CIFG:
            torch.sub(cp, Gl[t], out=c)
            torch.addcmul(Gl[t], Fl[t], c, out=c)  # c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ g_t
        elif kind == LSTM:
            torch.mul(Fl[t], cp, out=c)
            c.addcmul_(Il[t], Gl[t])  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
        else:
            torch.addcmul(cp, Il[t], Gl[t], out=c)  # c_t = c_{t-1} + i_t ⊙ g_t
        torch.tanh(c, out=TCl[t])
        if masked:
            torch.where(Ml[t], c, cp, out=Cl[t + n])
            torch.mul(Ol[t], TCl[t], out=hc)  # h~_t = o_t ⊙ tanh(c~_t)
            torch.where(Ml[t], hc, hp, out=Hl[t + n])
            torch.mul(hc, Mfl[t], out=outl[t])
        else:
            torch.mul(Ol[t], TCl[t], out=Hl[t + n])  # h_t = o_t ⊙ tanh(c_t)


def _incoming(dh, go, mf, dhc, nr):
    """One backward step's start, shared by the three ``*_bwd`` loops: ``dh += dJ/d out_t`` (the total dJ/dh_t);
    with a length mask ``mf`` the candidate's share ``dhc = m ⊙ dh`` is split off and ``dh`` keeps what passes
    through the kept state (``dhc`` is ``dh`` itself when unmasked); ``||dhc||`` per row into ``nr`` if recording."""
    dh.add_(go)
    if mf is not None:
        torch.mul(dh, mf, out=dhc)
        dh.sub_(dhc)
    if nr is not None:
        grad_norm(dhc, dim=1, out=nr)


def lstm_bwd(DG, Ac, Adc, Ao, F, gout, dh, dc, w_hh, Mf, NR, reverse: bool):
    """Fills DG (T, B, G*H), torch gate order, dc-driven gates first and o last; dh, dc in place."""
    T, B, K, H = Adc.shape
    DCl = DG[..., : K * H].view(T, B, K, H).unbind(0)
    DOl = DG[..., K * H:].unbind(0)
    DGl, GOl, Acl, Adcl, Aol = DG.unbind(0), gout.unbind(0), Ac.unbind(0), Adc.unbind(0), Ao.unbind(0)
    Fl = F.unbind(0) if F is not None else None
    NRl = NR.unbind(0) if NR is not None else [None] * T
    masked = Mf is not None
    dhc, dcc = (dh, dc) if not masked else (dh.new_empty(B, H), dc.new_empty(B, H))
    dcc_u = dcc.unsqueeze(1)  # (B, 1, H)
    Mfl = Mf.unbind(0) if masked else [None] * T
    for t in walk(T, not reverse)[0]:
        _incoming(dh, GOl[t], Mfl[t], dhc, NRl[t])
        if masked:  # the cell state likewise: the candidate gets m ⊙ dJ/dc_t, the rest passes through
            torch.mul(dc, Mfl[t], out=dcc)
            dc.sub_(dcc)
        dcc.addcmul_(dhc, Acl[t])  # dJ/dc_t += dJ/dh_t ⊙ o_t ⊙ (1 - tanh² c_t)
        torch.mul(Adcl[t], dcc_u, out=DCl[t])  # i, f, g (or f, g) preactivations
        torch.mul(dhc, Aol[t], out=DOl[t])  # o preactivation
        if masked:
            dc.addcmul_(dcc, Fl[t]) if Fl is not None else dc.add_(dcc)
            dh.addmm_(DGl[t], w_hh)
        else:
            if Fl is not None:
                dc.mul_(Fl[t])  # dJ/dc_{t-1} = dJ/dc_t ⊙ f_t
            torch.mm(DGl[t], w_hh, out=dh)  # dJ/dh_{t-1} = dG_t W_hh


def gru_fwd(A, whhT, XN, N, h0, out, Hs, M, Mf, reverse: bool):
    """A (T, B, 3H) = [x W_ir + b_ir + b_hr, x W_iz + b_iz + b_hz, b_hn]; in place."""
    T, B, H3 = A.shape
    H = H3 // 3
    steps, p, n = walk(T, reverse)
    Hl = states(h0, out, Hs, reverse)
    Al, RZl = A.unbind(0), A[..., : 2 * H].unbind(0)
    Rl, Zl, HNl = (A[..., k * H:(k + 1) * H].unbind(0) for k in range(3))
    XNl, Nl = XN.unbind(0), N.unbind(0)
    tmp, hc = A.new_empty(B, H), A.new_empty(B, H)
    masked = M is not None
    if masked:
        Ml, Mfl, outl = M.unbind(0), Mf.unbind(0), out.unbind(0)
    for t in steps:
        hp = Hl[t + p]
        Al[t].addmm_(hp, whhT)  # + W_hh h_{t-1}; the n block becomes W_hn h_{t-1} + b_hn
        RZl[t].sigmoid_()  # r_t, z_t
        torch.addcmul(XNl[t], Rl[t], HNl[t], out=Nl[t]).tanh_()  # n_t
        torch.sub(hp, Nl[t], out=tmp)
        h = hc if masked else Hl[t + n]
        torch.addcmul(Nl[t], Zl[t], tmp, out=h)  # h_t = n_t + z_t ⊙ (h_{t-1} - n_t)
        if masked:
            torch.where(Ml[t], hc, hp, out=Hl[t + n])
            torch.mul(hc, Mfl[t], out=outl[t])


def gru_bwd(DG, DN, Az, An, Ar, R, Z, gout, dh, w_hh, Mf, NR, reverse: bool):
    """Fills DG (T, B, 3H) = grads of [r, z, W_hn h + b_hn] preactivations and DN (n preactivation)."""
    T, B, H = DN.shape
    DRl, DZl, DHNl = (DG[..., k * H:(k + 1) * H].unbind(0) for k in range(3))
    DGl, DNl, GOl = DG.unbind(0), DN.unbind(0), gout.unbind(0)
    Azl, Anl, Arl, Rl, Zl = (v.unbind(0) for v in (Az, An, Ar, R, Z))
    NRl = NR.unbind(0) if NR is not None else [None] * T
    masked = Mf is not None
    dhc = dh.new_empty(B, H) if masked else dh
    Mfl = Mf.unbind(0) if masked else [None] * T
    for t in walk(T, not reverse)[0]:
        _incoming(dh, GOl[t], Mfl[t], dhc, NRl[t])
        torch.mul(dhc, Azl[t], out=DZl[t])
        torch.mul(dhc, Anl[t], out=DNl[t])
        torch.mul(DNl[t], Arl[t], out=DRl[t])
        torch.mul(DNl[t], Rl[t], out=DHNl[t])
        if masked:
            dh.addcmul_(dhc, Zl[t])
        else:
            dh.mul_(Zl[t])  # through h_t = ... + z_t ⊙ h_{t-1}
        dh.addmm_(DGl[t], w_hh)


def rnn_fwd(XP, whhT, h0, out, Hs, M, Mf, act: int, reverse: bool):
    T, B, H = XP.shape
    steps, p, n = walk(T, reverse)
    Hl, XPl = states(h0, out, Hs, reverse), XP.unbind(0)
    hc = XP.new_empty(B, H)
    masked = M is not None
    if masked:
        Ml, Mfl, outl = M.unbind(0), Mf.unbind(0), out.unbind(0)
    for t in steps:
        hp = Hl[t + p]
        h = hc if masked else Hl[t + n]
        torch.addmm(XPl[t], hp, whhT, out=h)
        if act == TANH:
            h.tanh_()  # h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
        elif act == RELU:
            h.relu_()
        if masked:
            torch.where(Ml[t], hc, hp, out=Hl[t + n])
            torch.mul(hc, Mfl[t], out=outl[t])


def rnn_bwd(DG, Ad, gout, dh, w_hh, Mf, NR, reverse: bool):
    T, B, H = DG.shape
    DGl, GOl = DG.unbind(0), gout.unbind(0)
    Adl = Ad.unbind(0) if Ad is not None else None
    NRl = NR.unbind(0) if NR is not None else [None] * T
    masked = Mf is not None
    dhc = dh.new_empty(B, H) if masked else dh
    Mfl = Mf.unbind(0) if masked else [None] * T
    for t in walk(T, not reverse)[0]:
        _incoming(dh, GOl[t], Mfl[t], dhc, NRl[t])
        if Adl is not None:
            torch.mul(dhc, Adl[t], out=DGl[t])  # φ'(preactivation)
        else:
            DGl[t].copy_(dhc)
        if masked:
            dh.addmm_(DGl[t], w_hh)
        else:
            torch.mm(DGl[t], w_hh, out=dh)


class PythonLoops:
    """The per-step loops above, as a namespace like the C++ extension's ``torch.ops`` one."""
    lstm_fwd, lstm_bwd = staticmethod(lstm_fwd), staticmethod(lstm_bwd)
    gru_fwd, gru_bwd = staticmethod(gru_fwd), staticmethod(gru_bwd)
    rnn_fwd, rnn_bwd = staticmethod(rnn_fwd), staticmethod(rnn_bwd)


def run_layer(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
              *, nonlinearity="tanh", forget_gate=True, grad_norms=None):
    """Same contract as :func:`rnnlab.nn.backends.loop.run_layer`: the C++ loops once built, else the Python ones.

    Returns ``(out (T, B, H), h_n (B, H), c_n (B, H) or None)``. ``lengths`` (B,) int64 or None;
    ``grad_norms`` (B, T) float tensor filled in place by the backward, or None.
    """
    return run_layer_with(loops(), cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                          reverse, nonlinearity=nonlinearity, forget_gate=forget_gate, grad_norms=grad_norms)


def loops():
    """The C++ loops once the extension is built (see :mod:`rnnlab.nn.backends.cpp`), else :class:`PythonLoops`."""
    from rnnlab.nn.backends import cpp  # here, so `python -m rnnlab.nn.backends.cpp` finds it not yet imported

    ops = cpp.loops()
    return PythonLoops if ops is None else ops
