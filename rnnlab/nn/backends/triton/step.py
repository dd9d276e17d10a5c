r"""Per-step Triton loops: the six loops of :mod:`rnnlab.nn.backends.fused` with each step's gate arithmetic in one
Triton kernel (:mod:`.step_kernels`).

Same algorithm and buffers as the fused backend (:mod:`rnnlab.nn.backends.bptt` has the glossary); only the
six per-step loops differ. A forward step is one ``addmm_`` (:math:`W_{hh} h_{t-1}`, cuBLAS) plus
one kernel doing every elementwise op of the step (activations, cell and state update, length
mask, masked output); a backward step is one kernel (incoming gradient, length mask,
:math:`\lVert \partial J/\partial h_t \rVert` as a row reduction, gate gradients, the cell-state
carry) plus one ``addmm_`` with :math:`W_{hh}`. ``fused`` spends ~7 kernel launches per step on
the same arithmetic.

Runs on CUDA tensors; on CPU tensors only under the Triton interpreter (``TRITON_INTERPRET=1``
set before the first call), which is how the tests check it without a GPU. Needs the optional
``triton`` package (``pip install rnnlab[gpu]``). Double backward is not supported.
"""
import os

import torch

from rnnlab.nn.backends import LSTM
from rnnlab.nn.backends.bptt import states, walk

__all__ = ["TritonLoops", "interpreting"]

_K = {}  # the kernels, made on first use (so TRITON_INTERPRET is read then, not at import)


def _kernels():
    if not _K:
        import triton

        from rnnlab.nn.backends.triton import step_kernels as tk
        _K.update(lstm_fwd=tk.lstm_fwd, lstm_bwd=tk.lstm_bwd, gru_fwd=tk.gru_fwd, gru_bwd=tk.gru_bwd,
                  rnn_fwd=tk.rnn_fwd, rnn_bwd=tk.rnn_bwd, next_pow2=triton.next_power_of_2)
    return _K


BLOCK = 128  # columns per program in the forward kernels


def _setup(T, B, H, h0, out, Hs, M, Mf, reverse):
    """State views and a per-step float mask (or a dummy) for the kernels."""
    Hl = states(h0.contiguous(), out, Hs, reverse)
    Mfl = Mf.reshape(T, B).unbind(0) if Mf is not None else [out] * T  # dummy pointer when unmasked
    return Hl, Mfl


class TritonLoops:
    """The six loops of :mod:`rnnlab.nn.backends.fused`, one Triton kernel per step for the gate arithmetic."""

    @staticmethod
    def lstm_fwd(A, whhT, h0, Cs, TC, out, Hs, M, Mf, kind, reverse):
        k = _kernels()
        T, B, GH = A.shape
        H = GH // (4 if kind == LSTM else 3)
        steps, p, n = walk(T, reverse)
        Hl, Mfl = _setup(T, B, H, h0, out, Hs, M, Mf, reverse)
        Al, Cl, TCl, outl = A.unbind(0), Cs.unbind(0), TC.unbind(0), out.unbind(0)
        grid = (B, triton_cdiv(H, BLOCK))
        for t in steps:
            Al[t].addmm_(Hl[t + p], whhT)
            k["lstm_fwd"][grid](Al[t], Hl[t + p], Cl[t + p], Hl[t + n], Cl[t + n], TCl[t], outl[t], Mfl[t], H,
                                KIND=kind, MASKED=Mf is not None, BLOCK=BLOCK)

    @staticmethod
    def lstm_bwd(DG, Ac, Adc, Ao, F, gout, dh, dc, w_hh, Mf, NR, reverse):
        k = _kernels()
        T, B, K, H = Adc.shape
        gout = gout.contiguous()
        DGl, GOl, Acl, Adcl, Aol = DG.unbind(0), gout.unbind(0), Ac.unbind(0), Adc.unbind(0), Ao.unbind(0)
        Fl = F.unbind(0) if F is not None else Acl  # dummy when there is no forget gate
        f_stride = F.stride(1) if F is not None else 0
        Mfl = Mf.reshape(T, B).unbind(0) if Mf is not None else GOl
        NRl = NR.unbind(0) if NR is not None else GOl
        for t in walk(T, not reverse)[0]:
            k["lstm_bwd"][(B,)](DGl[t], Acl[t], Adcl[t], Aol[t], Fl[t], f_stride, GOl[t], dh, dc, Mfl[t], NRl[t], H,
                                K=K, HAS_F=F is not None, MASKED=Mf is not None, RECORD=NR is not None,
                                BLOCK=k["next_pow2"](H))
            if Mf is not None:
                dh.addmm_(DGl[t], w_hh)
            else:
                torch.mm(DGl[t], w_hh, out=dh)

    @staticmethod
    def gru_fwd(A, whhT, XN, N, h0, out, Hs, M, Mf, reverse):
        k = _kernels()
        T, B, H3 = A.shape
        H = H3 // 3
        steps, p, n = walk(T, reverse)
        Hl, Mfl = _setup(T, B, H, h0, out, Hs, M, Mf, reverse)
        Al, XNl, Nl, outl = A.unbind(0), XN.unbind(0), N.unbind(0), out.unbind(0)
        grid = (B, triton_cdiv(H, BLOCK))
        for t in steps:
            Al[t].addmm_(Hl[t + p], whhT)
            k["gru_fwd"][grid](Al[t], XNl[t], XN.stride(1), Nl[t], Hl[t + p], Hl[t + n], outl[t], Mfl[t], H,
                               MASKED=Mf is not None, BLOCK=BLOCK)

    @staticmethod
    def gru_bwd(DG, DN, Az, An, Ar, R, Z, gout, dh, w_hh, Mf, NR, reverse):
        k = _kernels()
        T, B, H = DN.shape
        gout = gout.contiguous()
        DGl, DNl, GOl = DG.unbind(0), DN.unbind(0), gout.unbind(0)
        Azl, Anl, Arl, Rl, Zl = (v.unbind(0) for v in (Az, An, Ar, R, Z))
        Mfl = Mf.reshape(T, B).unbind(0) if Mf is not None else GOl
        NRl = NR.unbind(0) if NR is not None else GOl
        for t in walk(T, not reverse)[0]:
            k["gru_bwd"][(B,)](DGl[t], DNl[t], Azl[t], Anl[t], Arl[t], Rl[t], Zl[t], R.stride(1), GOl[t], dh,
                               Mfl[t], NRl[t], H, MASKED=Mf is not None, RECORD=NR is not None,
                               BLOCK=k["next_pow2"](H))
            dh.addmm_(DGl[t], w_hh)

    @staticmethod
    def rnn_fwd(XP, whhT, h0, out, Hs, M, Mf, act, reverse):
        k = _kernels()
        T, B, H = XP.shape
        steps, p, n = walk(T, reverse)
        Hl, Mfl = _setup(T, B, H, h0, out, Hs, M, Mf, reverse)
        XPl, outl = XP.unbind(0), out.unbind(0)
        hc = XP.new_empty(B, H)
        grid = (B, triton_cdiv(H, BLOCK))
        for t in steps:
            torch.addmm(XPl[t], Hl[t + p], whhT, out=hc)
            k["rnn_fwd"][grid](hc, Hl[t + p], Hl[t + n], outl[t], Mfl[t], H, ACT=act, MASKED=Mf is not None,
                               BLOCK=BLOCK)

    @staticmethod
    def rnn_bwd(DG, Ad, gout, dh, w_hh, Mf, NR, reverse):
        k = _kernels()
        T, B, H = DG.shape
        gout = gout.contiguous()
        DGl, GOl = DG.unbind(0), gout.unbind(0)
        Adl = Ad.unbind(0) if Ad is not None else GOl
        Mfl = Mf.reshape(T, B).unbind(0) if Mf is not None else GOl
        NRl = NR.unbind(0) if NR is not None else GOl
        for t in walk(T, not reverse)[0]:
            k["rnn_bwd"][(B,)](DGl[t], Adl[t], GOl[t], dh, Mfl[t], NRl[t], H, HAS_AD=Ad is not None,
                               MASKED=Mf is not None, RECORD=NR is not None, BLOCK=k["next_pow2"](H))
            if Mf is not None:
                dh.addmm_(DGl[t], w_hh)
            else:
                torch.mm(DGl[t], w_hh, out=dh)


def triton_cdiv(a, b):
    return (a + b - 1) // b


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
