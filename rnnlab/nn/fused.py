r"""Fused backend: one layer, one direction, with a hand-written BPTT backward.

Same contract as :func:`rnnlab.nn.loop.run_layer` (the reference); see SPEC "the one place
for the recurrence". The recurrence is the cells' own:

.. math::
    \begin{array}{ll}
    \text{lstm:} & c_t = f_t \odot c_{t-1} + i_t \odot g_t, \quad h_t = o_t \odot \tanh(c_t) \\
    \text{lstm, forget\_gate=False:} & c_t = c_{t-1} + i_t \odot g_t \\
    \text{cifg:} & c_t = f_t \odot c_{t-1} + (1 - f_t) \odot g_t \\
    \text{gru:} & n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})), \quad
                  h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1} \\
    \text{rnn:} & h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),
                  \ \phi \in \{\tanh, \mathrm{relu}, \mathrm{identity}\}
    \end{array}

How it is fast:

* the input projection of all timesteps is one matmul ``(T*B, I) @ W_ih^T``;
* each step is one in-place ``addmm_`` for :math:`W_{hh} h_{t-1}` plus a handful of in-place /
  ``out=`` elementwise ops on views made once with ``unbind`` (no per-step allocation, no
  per-step slicing); LSTM/CIFG weights are permuted so the sigmoid gates are contiguous;
* the backward first computes, for all steps at once, the local derivative factors
  (e.g. :math:`A_i = g_t \odot i_t (1 - i_t)`), so each reverse step is ~6 ops: add the
  incoming gradient, scale by the factors, one ``addmm_`` with :math:`W_{hh}` (on CPU the C++
  LSTM/CIFG loop, ``lstm_bwd_inline``, computes the factors row by row inside the loop instead);
* gate gradients of all steps land in one buffer ``(T, B, G*H)``; after the loop
  ``dW_ih``, ``dW_hh``, ``dx`` are one matmul each and the biases one sum;
* the six per-step loops (``lstm_fwd`` ... ``rnn_bwd`` below) also exist in C++
  (:mod:`rnnlab.nn.fused_ext`, built once in the background and cached): on CPU a step is then the
  matmul plus one vectorised pass over the step's gates. Same buffers, same numbers; the Python
  loops are used until (or unless) the extension is built.

Lengths: with :math:`m_t = [t < \text{len}]`, the state is kept where :math:`m_t = 0`
(``h_t = m_t ? \tilde h_t : h_{t-1}``) and the output is :math:`m_t \tilde h_t`. The reverse
direction walks ``t = T-1..0`` with the same mask, so it starts at each sequence's own last token.

``grad_norms`` (B, T), if given, is filled during the backward with
:math:`\lVert \partial J / \partial h_t \rVert_2`, the total derivative (output at ``t`` plus
recurrence), 0 at padded steps; no second pass.

Double backward is not supported (the backward is ``once_differentiable``).
"""
import torch
from torch.autograd.function import once_differentiable

from rnnlab.nn import fused_ext

__all__ = ["run_layer"]


LSTM, LSTM_NO_FORGET, CIFG = 0, 1, 2  # `kind` of the lstm-like loops
TANH, RELU, IDENTITY = 0, 1, 2  # `act` of the rnn loops
_ACTS = {"tanh": TANH, "relu": RELU, "identity": IDENTITY}


def _states(h0, out, Hs, reverse):
    """Views of the state before/after each step: ``[Hl[t + p], Hl[t + n]]`` (see :func:`_walk`).

    Without lengths the output *is* the state sequence, so ``out`` is used directly; with lengths
    states live in ``Hs`` (T+1, B, H) and ``out`` holds the masked outputs.
    """
    if Hs is not None:
        return Hs.unbind(0)
    return [*out.unbind(0), h0] if reverse else [h0, *out.unbind(0)]


def _walk(T, reverse):
    """Time indices in walk order and offsets ``p``, ``n``: state before step t is index t+p, after it t+n."""
    return (range(T - 1, -1, -1), 1, 0) if reverse else (range(T), 0, 1)


# --- the per-step loops (the C++ extension implements the same six functions) ----------------------
def lstm_fwd(A, whhT, h0, Cs, TC, out, Hs, M, Mf, kind: int, reverse: bool):
    """A (T, B, G*H) preactivations minus W_hh h, gates permuted to [sigmoid gates..., g]; in place."""
    T, B, GH = A.shape
    H = GH // (4 if kind == LSTM else 3)
    steps, p, n = _walk(T, reverse)
    Hl, Cl, TCl = _states(h0, out, Hs, reverse), Cs.unbind(0), TC.unbind(0)
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
        torch.linalg.vector_norm(dhc, dim=1, out=nr)


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
    for t in _walk(T, not reverse)[0]:
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
    steps, p, n = _walk(T, reverse)
    Hl = _states(h0, out, Hs, reverse)
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
    for t in _walk(T, not reverse)[0]:
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
    steps, p, n = _walk(T, reverse)
    Hl, XPl = _states(h0, out, Hs, reverse), XP.unbind(0)
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
    for t in _walk(T, not reverse)[0]:
        _incoming(dh, GOl[t], Mfl[t], dhc, NRl[t])
        if Adl is not None:
            torch.mul(dhc, Adl[t], out=DGl[t])  # φ'(preactivation)
        else:
            DGl[t].copy_(dhc)
        if masked:
            dh.addmm_(DGl[t], w_hh)
        else:
            torch.mm(DGl[t], w_hh, out=dh)


# --- the autograd Function: setup before the loops, one matmul per gradient after ------------------
def _onednn_ok():
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_ONEDNN = _onednn_ok()


def _linear(x, w, b=None):
    """``x @ w.T + b`` for the big matmuls. float32 on CPU goes to oneDNN (``mkldnn::_linear_pointwise``), which
    ran these shapes about 2x faster than MKL's sgemm behind ``torch.mm`` on the AMD EPYC CPU measured here."""
    if _ONEDNN and x.dtype == torch.float32 and x.device.type == "cpu":
        return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
    return torch.mm(x, w.t()) if b is None else torch.addmm(b, x, w.t())


def _gate_layout(cell, forget_gate):
    """Torch-order gate names, and the forward order putting the sigmoid gates first."""
    names = {"cifg": "fgo", "lstm": "ifgo" if forget_gate else "igo"}[cell]
    fwd = names.replace("g", "") + "g"
    return names, [names.index(c) for c in fwd]


def _rows(w, order, H):
    """Rows of a gate-packed ``w`` ((G*H, ...) or (G*H,)) reordered gate-wise."""
    return torch.cat([w[k * H:(k + 1) * H] for k in order])


class _FusedLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, reverse, cell, nonlinearity,
                forget_gate, grad_norms, loops):
        T, B, _ = x.shape
        H = w_hh.size(1)
        x2 = x.reshape(T * B, -1)  # (T*B, I)
        out = x.new_empty(T, B, H)
        M = Mf = Hs = None
        if mask is not None:  # states in Hs; out = m ⊙ candidate
            Hs = x.new_empty(T + 1, B, H)
            Hs[T if reverse else 0] = h0
            M = mask.unsqueeze(-1)  # (T, B, 1) bool
            Mf = M.to(x.dtype)
        saved = {}
        if cell in ("lstm", "cifg"):
            names, perm = _gate_layout(cell, forget_gate)
            w_ih_p, w_hh_p = _rows(w_ih, perm, H), _rows(w_hh, perm, H)
            A = _linear(x2, w_ih_p, None if b_ih is None else _rows(b_ih + b_hh, perm, H)).view(T, B, -1)  # (T, B, G*H), gates [sigmoid gates..., g]
            Cs = x.new_empty(T + 1, B, H)
            Cs[T if reverse else 0] = c0
            TC = x.new_empty(T, B, H)  # tanh(c~_t)
            kind = CIFG if cell == "cifg" else (LSTM if forget_gate else LSTM_NO_FORGET)
            loops.lstm_fwd(A, w_hh_p.t(), h0, Cs, TC, out, Hs, M, Mf, kind, reverse)
            saved.update(A=A, Cs=Cs, TC=TC, names=names, perm=perm, kind=kind)
        elif cell == "gru":
            XP = _linear(x2, w_ih).view(T, B, 3 * H)  # (T, B, 3H)
            A = x.new_empty(T, B, 3 * H)
            if b_ih is None:
                A[..., : 2 * H] = XP[..., : 2 * H]
                A[..., 2 * H:] = 0
            else:
                XP += b_ih
                torch.add(XP[..., : 2 * H], b_hh[: 2 * H], out=A[..., : 2 * H])
                A[..., 2 * H:] = b_hh[2 * H:]
            N = x.new_empty(T, B, H)
            loops.gru_fwd(A, w_hh.t(), XP[..., 2 * H:], N, h0, out, Hs, M, Mf, reverse)
            saved.update(A=A, N=N)
        else:
            XP = _linear(x2, w_ih, None if b_ih is None else b_ih + b_hh)
            loops.rnn_fwd(XP.view(T, B, H), w_hh.t(), h0, out, Hs, M, Mf, _ACTS[nonlinearity], reverse)

        if Hs is None:
            h_n = out[0 if reverse else T - 1].clone()
        else:
            h_n = Hs[0 if reverse else T].clone()
        c_n = saved["Cs"][0 if reverse else T].clone() if "Cs" in saved else None
        saved.update(Hs=Hs, Mf=Mf, reverse=reverse, cell=cell, nonlinearity=nonlinearity,
                     grad_norms=grad_norms, loops=loops)
        ctx.saved = saved
        ctx.has_bias = b_ih is not None
        ctx.save_for_backward(x, h0, w_ih, w_hh, out)  # `out` also: in-place edits of it are caught
        return out, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, gout, gh_n, gc_n):
        x, h0, w_ih, w_hh, out = ctx.saved_tensors
        s = ctx.saved
        cell, reverse, Hs, Mf, loops = s["cell"], s["reverse"], s["Hs"], s["Mf"], s["loops"]
        T, B, _ = x.shape
        H = w_hh.size(1)
        if Hs is not None:  # (T, B, H) states before / after each step
            Hprev, Hnew = (Hs[1:], Hs[:T]) if reverse else (Hs[:T], Hs[1:])
            gout = gout * Mf  # out = m ⊙ h~
        else:
            Hnew = out
            Hprev = torch.cat([out[1:], h0[None]] if reverse else [h0[None], out[:-1]])
        NR = x.new_empty(T, B) if s["grad_norms"] is not None else None
        DG = x.new_empty(T, B, w_hh.size(0))  # preactivation gradients, torch gate order
        dh = gh_n.clone()  # dJ/d(state) after the current step
        one = x.new_ones(())
        dc0 = None

        if cell in ("lstm", "cifg"):
            A, Cs, TC, names, perm, kind = (s[k] for k in ("A", "Cs", "TC", "names", "perm", "kind"))
            dc = gc_n.clone()
            inline = _inline_lstm_bwd(loops, x)
            if inline is not None:  # C++ on CPU: the factors below are computed inside the loop, no pass over all steps
                inline(DG, A, TC, Cs, gout, dh, dc, w_hh, Mf, NR, kind, reverse)
            else:
                act = {names[j]: A[..., k * H:(k + 1) * H] for k, j in enumerate(perm)}
                Cprev = Cs[1:] if reverse else Cs[:T]
                o, g = act["o"], act["g"]
                # local derivative factors of every step at once
                Ac = o * torch.addcmul(one, TC, TC, value=-1)  # o ⊙ (1 - tanh² c)
                Ao = TC * torch.addcmul(o, o, o, value=-1)  # tanh(c) ⊙ o(1 - o)
                K = len(names) - 1  # gates driven by dJ/dc: all but o (last in torch order)
                Adc = x.new_empty(T, B, K, H)
                for k, nm in enumerate(names[:K]):
                    a = act[nm]
                    if nm == "g":
                        gi = (1 - act["f"]) if kind == CIFG else act["i"]
                        torch.mul(gi, torch.addcmul(one, g, g, value=-1), out=Adc[:, :, k])  # i ⊙ (1 - g²)
                    else:
                        other = {"i": g, "f": (Cprev - g) if kind == CIFG else Cprev}[nm]
                        torch.mul(other, torch.addcmul(a, a, a, value=-1), out=Adc[:, :, k])  # · ⊙ σ'
                F = act["f"] if kind != LSTM_NO_FORGET else None
                loops.lstm_bwd(DG, Ac, Adc, Ao, F, gout, dh, dc, w_hh, Mf, NR, reverse)
            dc0, DX, DH = dc, DG, DG
        elif cell == "gru":
            A, N = s["A"], s["N"]
            R, Z, HN = (A[..., k * H:(k + 1) * H] for k in range(3))
            Az = (Hprev - N) * torch.addcmul(Z, Z, Z, value=-1)  # (h_{t-1} - n) ⊙ z(1 - z)
            An = (1 - Z) * torch.addcmul(one, N, N, value=-1)  # (1 - z) ⊙ (1 - n²)
            Ar = HN * torch.addcmul(R, R, R, value=-1)  # (W_hn h + b_hn) ⊙ r(1 - r)
            DN = x.new_empty(T, B, H)
            loops.gru_bwd(DG, DN, Az, An, Ar, R, Z, gout, dh, w_hh, Mf, NR, reverse)
            DH = DG  # [dr, dz, d(W_hn h + b_hn)]
            DX = torch.cat([DG[..., : 2 * H], DN], dim=-1)  # [dr, dz, dn], (T, B, 3H)
        else:
            nl = s["nonlinearity"]
            Ad = None  # φ' at the (candidate) output; padded steps get no gradient anyway
            if nl == "tanh":
                Ad = torch.addcmul(one, Hnew, Hnew, value=-1)  # 1 - h²
            elif nl == "relu":
                Ad = (Hnew > 0).to(x.dtype)
            loops.rnn_bwd(DG, Ad, gout, dh, w_hh, Mf, NR, reverse)
            DX = DH = DG

        if NR is not None:
            s["grad_norms"].copy_(NR.t())
        need = ctx.needs_input_grad
        DX2, DH2 = DX.view(T * B, -1), DH.view(T * B, -1)
        dx = _linear(DX2, w_ih.t()).view_as(x) if need[0] else None  # dG W_ih
        dw_ih = dw_hh = None
        wgrad = getattr(loops, "wgrad", None)  # the C++ loops' dG^T X: oneDNN on the transposed view, no copy
        if wgrad is not None and x.device.type == "cpu":
            dw_ih = wgrad(DX2, x.reshape(T * B, -1)) if need[3] else None  # dG^T x
            dw_hh = wgrad(DH2, Hprev.reshape(T * B, H)) if need[4] else None  # dG^T h_{t-1}
        elif need[3] or need[4]:  # dG^T made contiguous once (oneDNN would copy a transposed view on each call)
            DXt = DX2.t().contiguous()  # (G*H, T*B)
            DHt = DXt if DH is DX else DH2.t().contiguous()
            dw_ih = _linear(DXt, x.reshape(T * B, -1).t()) if need[3] else None  # dG^T x
            dw_hh = _linear(DHt, Hprev.reshape(T * B, H).t()) if need[4] else None  # dG^T h_{t-1}
        db_ih = db_hh = None
        if ctx.has_bias:
            db_ih = DX2.sum(0)
            db_hh = db_ih if DH is DX else DH2.sum(0)
        return dx, dh, dc0, dw_ih, dw_hh, db_ih, db_hh, None, None, None, None, None, None, None


def _inline_lstm_bwd(loops, x):
    """The C++ ``lstm_bwd_inline`` (LSTM backward computing its derivative factors inside the loop) where it
    applies: the extension's loops, CPU, float32/float64; else None (precompute + ``loops.lstm_bwd``)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return None
    return getattr(loops, "lstm_bwd_inline", None)


class _PythonLoops:
    """The per-step loops above, as a namespace like the C++ extension's ``torch.ops`` one."""
    lstm_fwd, lstm_bwd = staticmethod(lstm_fwd), staticmethod(lstm_bwd)
    gru_fwd, gru_bwd = staticmethod(gru_fwd), staticmethod(gru_bwd)
    rnn_fwd, rnn_bwd = staticmethod(rnn_fwd), staticmethod(rnn_bwd)


def run_layer(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
              *, nonlinearity="tanh", forget_gate=True, grad_norms=None):
    """One layer, one direction of ``cell`` over ``x`` (T, B, I); see the module docstring.

    Returns ``(out (T, B, H), h_n (B, H), c_n (B, H) or None)``. ``lengths`` (B,) int64 or None;
    ``grad_norms`` (B, T) float tensor filled in place by the backward, or None.
    """
    return run_layer_with(_loops(x), cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                          reverse, nonlinearity=nonlinearity, forget_gate=forget_gate, grad_norms=grad_norms)


def run_layer_with(loops, cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                   *, nonlinearity="tanh", forget_gate=True, grad_norms=None):
    """:func:`run_layer` with a given implementation of the six per-step loops (Python, C++, Triton)."""
    if cell not in ("lstm", "cifg", "gru", "rnn"):
        raise ValueError(f"`cell` must be one of ('lstm', 'cifg', 'gru', 'rnn'): got {cell!r}")
    T, B, _ = x.shape
    H = weight_hh.size(1)
    if h0 is None:
        h0 = x.new_zeros(B, H)
    if cell in ("lstm", "cifg") and c0 is None:
        c0 = x.new_zeros(B, H)
    mask = None
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=x.device)
        mask = torch.arange(T, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)  # (T, B)
    if cell in ("gru", "rnn"):
        c0 = None
    out, h_n, c_n = _FusedLayer.apply(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, mask,
                                      bool(reverse), cell, nonlinearity, forget_gate, grad_norms,
                                      loops)
    return out, h_n, c_n


def _loops(x):
    """The C++ loops once the extension is built (see :mod:`rnnlab.nn.fused_ext`), else the Python ones."""
    ops = fused_ext.loops()
    return _PythonLoops if ops is None else ops
