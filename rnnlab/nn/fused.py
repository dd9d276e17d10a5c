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
  incoming gradient, scale by the factors, one ``addmm_`` with :math:`W_{hh}`;
* gate gradients of all steps land in one buffer ``(T, B, G*H)``; after the loop
  ``dW_ih``, ``dW_hh``, ``dx`` are one matmul each and the biases one sum.

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

__all__ = ["run_layer"]


def _gate_layout(cell, forget_gate, n_gates):
    """Torch-order gate names and the forward permutation putting sigmoid gates first."""
    if cell == "cifg":
        names = ["f", "g", "o"]
    elif cell == "lstm" and (forget_gate or n_gates == 4):
        names = ["i", "f", "g", "o"]  # forget_gate=False with 4H rows: f rows unused
    elif cell == "lstm":
        names = ["i", "g", "o"]
    else:
        return None, None
    fwd = [n for n in names if n != "g"] + ["g"]  # sigmoid gates contiguous, tanh gate last
    return names, [names.index(n) for n in fwd]


def _rows(w, order, H):
    """Rows of a gate-packed ``w`` ((G*H, ...) or (G*H,)) reordered gate-wise."""
    return torch.cat([w[k * H:(k + 1) * H] for k in order])


def _steps(T, reverse):
    """Time indices in walk order and the (prev, new) offsets into a (T+1, ...) state buffer."""
    return (range(T - 1, -1, -1), 1, 0) if reverse else (range(T), 0, 1)


class _FusedLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, mask, reverse, cell, nonlinearity,
                forget_gate, grad_norms):
        T, B, _ = x.shape
        H = w_hh.size(1)
        G = w_hh.size(0) // H
        lstm_like = cell in ("lstm", "cifg")
        names, perm = _gate_layout(cell, forget_gate, G)
        steps, p, n = _steps(T, reverse)
        x2 = x.reshape(T * B, -1)  # (T*B, I)

        out = x.new_empty(T, B, H)
        masked = mask is not None
        if masked:  # states Hl[t+p] before step t, Hl[t+n] after it; out = m ⊙ candidate
            Hs = x.new_empty(T + 1, B, H)
            Hs[T if reverse else 0] = h0
            Hl = Hs.unbind(0)
            M = mask.unsqueeze(-1)  # (T, B, 1) bool
            Mf = M.to(x.dtype)
            Ml, Mfl = M.unbind(0), Mf.unbind(0)
            outl = out.unbind(0)
            hc = x.new_empty(B, H)  # candidate state of this step
        else:  # the output is the state sequence itself
            Hs = None
            Hl = [*out.unbind(0), h0] if reverse else [h0, *out.unbind(0)]
        ctx.saved = {}

        if lstm_like:
            bias = None if b_ih is None else _rows(b_ih + b_hh, perm, H)
            w_ih_p, w_hh_p = _rows(w_ih, perm, H), _rows(w_hh, perm, H)
            # (T, B, G*H) preactivations, then activations in place: [sigmoid gates..., g]
            A = (torch.mm(x2, w_ih_p.t()) if bias is None else torch.addmm(bias, x2, w_ih_p.t()))
            A = A.view(T, B, G * H)
            Al = A.unbind(0)
            Sl = A[..., : (G - 1) * H].unbind(0)
            gate = {nm: A[..., k * H:(k + 1) * H].unbind(0)
                    for k, nm in enumerate(names[j] for j in perm)}
            Il, Fl, Gl, Ol = gate.get("i"), gate.get("f"), gate["g"], gate["o"]
            use_f = cell == "cifg" or forget_gate
            Cs = x.new_empty(T + 1, B, H)
            Cs[T if reverse else 0] = c0
            Cl = Cs.unbind(0)
            TC = x.new_empty(T, B, H)  # tanh(c~_t)
            TCl = TC.unbind(0)
            tmp = x.new_empty(B, H)
            whhT = w_hh_p.t()
            for t in steps:
                hp, cp = Hl[t + p], Cl[t + p]
                Al[t].addmm_(hp, whhT)
                Sl[t].sigmoid_()
                Gl[t].tanh_()
                cn = tmp if masked else Cl[t + n]
                if cell == "cifg":
                    torch.sub(cp, Gl[t], out=cn)
                    cn.mul_(Fl[t]).add_(Gl[t])  # c_t = g_t + f_t ⊙ (c_{t-1} - g_t)
                elif use_f:
                    torch.mul(Fl[t], cp, out=cn)
                    cn.addcmul_(Il[t], Gl[t])  # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
                else:
                    torch.addcmul(cp, Il[t], Gl[t], out=cn)  # c_t = c_{t-1} + i_t ⊙ g_t
                torch.tanh(cn, out=TCl[t])
                if masked:
                    torch.where(Ml[t], cn, cp, out=Cl[t + n])
                    torch.mul(Ol[t], TCl[t], out=hc)  # h~_t = o_t ⊙ tanh(c~_t)
                    torch.where(Ml[t], hc, hp, out=Hl[t + n])
                    torch.mul(hc, Mfl[t], out=outl[t])
                else:
                    torch.mul(Ol[t], TCl[t], out=Hl[t + n])  # h_t = o_t ⊙ tanh(c_t)
            ctx.saved.update(A=A, Cs=Cs, TC=TC, names=names, perm=perm, use_f=use_f)
        elif cell == "gru":
            # A[t] = [x W_ir + b_ir + b_hr, x W_iz + b_iz + b_hz, b_hn]; addmm_ adds W_hh h_{t-1}
            XP = torch.mm(x2, w_ih.t()).view(T, B, 3 * H)  # (T, B, 3H)
            if b_ih is not None:
                XP += b_ih
            A = x.new_empty(T, B, 3 * H)
            if b_ih is not None:
                torch.add(XP[..., : 2 * H], b_hh[: 2 * H], out=A[..., : 2 * H])
                A[..., 2 * H:] = b_hh[2 * H:]
            else:
                A[..., : 2 * H] = XP[..., : 2 * H]
                A[..., 2 * H:] = 0
            Al, RZl = A.unbind(0), A[..., : 2 * H].unbind(0)
            Rl, Zl, HNl = (A[..., k * H:(k + 1) * H].unbind(0) for k in range(3))
            XNl = XP[..., 2 * H:].unbind(0)
            N = x.new_empty(T, B, H)
            Nl = N.unbind(0)
            tmp = x.new_empty(B, H)
            whhT = w_hh.t()
            for t in steps:
                hp = Hl[t + p]
                Al[t].addmm_(hp, whhT)
                RZl[t].sigmoid_()
                torch.addcmul(XNl[t], Rl[t], HNl[t], out=Nl[t]).tanh_()  # n_t
                torch.sub(hp, Nl[t], out=tmp)
                hn = hc if masked else Hl[t + n]
                torch.addcmul(Nl[t], Zl[t], tmp, out=hn)  # h_t = n_t + z_t ⊙ (h_{t-1} - n_t)
                if masked:
                    torch.where(Ml[t], hc, hp, out=Hl[t + n])
                    torch.mul(hc, Mfl[t], out=outl[t])
            ctx.saved.update(A=A, N=N)
        else:  # rnn
            A = torch.mm(x2, w_ih.t()) if b_ih is None else torch.addmm(b_ih + b_hh, x2, w_ih.t())
            XPl = A.view(T, B, H).unbind(0)
            act = {"tanh": torch.Tensor.tanh_, "relu": torch.Tensor.relu_, "identity": None}[nonlinearity]
            whhT = w_hh.t()
            for t in steps:
                hp = Hl[t + p]
                hn = hc if masked else Hl[t + n]
                torch.addmm(XPl[t], hp, whhT, out=hn)
                if act is not None:
                    act(hn)  # h_t = φ(...)
                if masked:
                    torch.where(Ml[t], hc, hp, out=Hl[t + n])
                    torch.mul(hc, Mfl[t], out=outl[t])

        h_n = Hl[0 if reverse else T].clone()
        c_n = None
        if lstm_like:
            c_n = Cs[0 if reverse else T].clone()
        ctx.saved.update(Hs=Hs, mask=mask, Mf=Mf if masked else None, reverse=reverse, cell=cell,
                         nonlinearity=nonlinearity, grad_norms=grad_norms, G=G, H=H)
        ctx.has_bias = b_ih is not None
        ctx.save_for_backward(x, h0, w_ih, w_hh, out)
        return out, h_n, c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, gout, gh_n, gc_n):
        x, h0, w_ih, w_hh, out = ctx.saved_tensors
        s = ctx.saved
        cell, reverse, H, G = s["cell"], s["reverse"], s["H"], s["G"]
        T, B, _ = x.shape
        steps, p, n = _steps(T, reverse)
        steps = steps[::-1]  # walk back
        Hs, Mf = s["Hs"], s["Mf"]
        masked = Mf is not None
        if masked:  # (T, B, H) states before / after each step
            Hprev, Hnew = (Hs[1:], Hs[:T]) if reverse else (Hs[:T], Hs[1:])
        else:
            Hnew = out
            Hprev = torch.cat([out[1:], h0[None]] if reverse else [h0[None], out[:-1]])
        if masked:
            gout = gout * Mf  # out = m ⊙ h~
            Mfl = Mf.unbind(0)
            dhc = x.new_empty(B, H)  # dJ/dh~_t
        GOl = gout.unbind(0)
        dh = gh_n.clone()  # dJ/d(state h) after the current step
        rec = s["grad_norms"] is not None
        if rec:
            NR = x.new_empty(T, B)
            NRl = NR.unbind(0)
        DG = x.new_empty(T, B, G * H)  # gate preactivation gradients, torch gate order
        DGl = DG.unbind(0)
        one = x.new_ones(())
        lstm_like = cell in ("lstm", "cifg")

        if lstm_like:
            A, Cs, TC, names, perm, use_f = (s[k] for k in ("A", "Cs", "TC", "names", "perm", "use_f"))
            fwd_names = [names[j] for j in perm]
            act = {nm: A[..., k * H:(k + 1) * H] for k, nm in enumerate(fwd_names)}
            Cprev = Cs[1:] if reverse else Cs[:T]
            o, g, tc = act["o"], act["g"], TC
            # local derivative factors, all steps at once
            Ac = o * torch.addcmul(one, tc, tc, value=-1)  # o ⊙ (1 - tanh²c)
            K = G - 1  # gates driven by dc: all but o, in torch order (o is last)
            Adc = x.new_empty(T, B, K, H)
            for k, nm in enumerate(names[:K]):
                a = act[nm]
                if nm == "g":
                    gi = (1 - act["f"]) if cell == "cifg" else act["i"]
                    torch.mul(gi, torch.addcmul(one, g, g, value=-1), out=Adc[:, :, k])
                elif nm == "f" and cell == "lstm" and not use_f:
                    Adc[:, :, k] = 0
                else:
                    dsig = torch.addcmul(a, a, a, value=-1)  # σ' = σ(1-σ)
                    other = {"i": g, "f": (Cprev - g) if cell == "cifg" else Cprev}[nm]
                    torch.mul(other, dsig, out=Adc[:, :, k])
            Ao = tc * torch.addcmul(o, o, o, value=-1)  # tanh(c) ⊙ o(1-o)
            Acl, Adcl, Aol = Ac.unbind(0), Adc.unbind(0), Ao.unbind(0)
            DC = DG[..., : K * H].view(T, B, K, H).unbind(0)
            DO = DG[..., K * H:].unbind(0)
            Fl = act["f"].unbind(0) if use_f else None
            dc = gc_n.clone()
            dc_u = dc.unsqueeze(1)
            if masked:
                dcc = x.new_empty(B, H)
                dcc_u = dcc.unsqueeze(1)
            for t in steps:
                dh.add_(GOl[t])  # total dJ/dh_t
                if masked:
                    torch.mul(dh, Mfl[t], out=dhc)
                    dh.sub_(dhc)  # the part passed through a padded step
                    torch.mul(dc, Mfl[t], out=dcc)
                    dc.sub_(dcc)
                    dcc.addcmul_(dhc, Acl[t])
                    torch.mul(Adcl[t], dcc_u, out=DC[t])
                    torch.mul(dhc, Aol[t], out=DO[t])
                    if Fl is None:
                        dc.add_(dcc)
                    else:
                        dc.addcmul_(dcc, Fl[t])
                    if rec:
                        torch.linalg.vector_norm(dhc, dim=1, out=NRl[t])
                else:
                    if rec:
                        torch.linalg.vector_norm(dh, dim=1, out=NRl[t])
                    dc.addcmul_(dh, Acl[t])  # dJ/dc_t
                    torch.mul(Adcl[t], dc_u, out=DC[t])
                    torch.mul(dh, Aol[t], out=DO[t])
                    if Fl is not None:
                        dc.mul_(Fl[t])  # dJ/dc_{t-1}
                if masked:
                    dh.addmm_(DGl[t], w_hh)  # dJ/dh_{t-1}: kept part + through W_hh
                else:
                    torch.mm(DGl[t], w_hh, out=dh)  # dJ/dh_{t-1} = dG_t W_hh
            dc0 = dc
            DX = DH = DG
        elif cell == "gru":
            A, N = s["A"], s["N"]
            R, Z, HN = (A[..., k * H:(k + 1) * H] for k in range(3))
            Az = (Hprev - N) * torch.addcmul(Z, Z, Z, value=-1)  # (h_{t-1} - n) ⊙ z(1-z)
            An = (1 - Z) * torch.addcmul(one, N, N, value=-1)  # (1-z) ⊙ (1-n²)
            Ar = HN * torch.addcmul(R, R, R, value=-1)  # (W_hn h + b_hn) ⊙ r(1-r)
            DN = x.new_empty(T, B, H)  # dJ/d(n preactivation); DG holds [dr, dz, d(W_hn h + b_hn)]
            Azl, Anl, Arl, Rl, Zl = (v.unbind(0) for v in (Az, An, Ar, R, Z))
            DNl = DN.unbind(0)
            DRl, DZl, DHNl = (DG[..., k * H:(k + 1) * H].unbind(0) for k in range(3))
            for t in steps:
                dh.add_(GOl[t])
                d = dh
                if masked:
                    d = torch.mul(dh, Mfl[t], out=dhc)
                    dh.sub_(dhc)
                if rec:
                    torch.linalg.vector_norm(d, dim=1, out=NRl[t])
                torch.mul(d, Azl[t], out=DZl[t])
                torch.mul(d, Anl[t], out=DNl[t])
                torch.mul(DNl[t], Arl[t], out=DRl[t])
                torch.mul(DNl[t], Rl[t], out=DHNl[t])
                if masked:
                    dh.addcmul_(dhc, Zl[t])
                else:
                    dh.mul_(Zl[t])  # through h_t = ... + z_t ⊙ h_{t-1}
                dh.addmm_(DGl[t], w_hh)
            DH = DG
            DX = torch.cat([DG[..., : 2 * H], DN], dim=-1)  # (T, B, 3H)
            dc0 = None
        else:
            nl = s["nonlinearity"]
            if nl == "tanh":
                Ad = torch.addcmul(one, Hnew, Hnew, value=-1)  # 1 - h²
            elif nl == "relu":
                Ad = (Hnew > 0).to(x.dtype)
            else:
                Ad = None
            Adl = Ad.unbind(0) if Ad is not None else None
            for t in steps:
                dh.add_(GOl[t])
                d = dh
                if masked:
                    d = torch.mul(dh, Mfl[t], out=dhc)
                    dh.sub_(dhc)
                if rec:
                    torch.linalg.vector_norm(d, dim=1, out=NRl[t])
                if Adl is not None:
                    torch.mul(d, Adl[t], out=DGl[t])
                else:
                    DGl[t].copy_(d)
                if masked:
                    dh.addmm_(DGl[t], w_hh)
                else:
                    torch.mm(DGl[t], w_hh, out=dh)
            DX = DH = DG
            dc0 = None

        if rec:
            s["grad_norms"].copy_(NR.t())
        need = ctx.needs_input_grad
        DX2, DH2 = DX.view(T * B, -1), DH.view(T * B, -1)
        dx = torch.mm(DX2, w_ih).view_as(x) if need[0] else None
        dw_ih = torch.mm(DX2.t(), x.reshape(T * B, -1)) if need[3] else None
        dw_hh = torch.mm(DH2.t(), Hprev.reshape(T * B, H)) if need[4] else None
        db_ih = db_hh = None
        if ctx.has_bias:
            db_ih = DX2.sum(0)
            db_hh = db_ih if DH is DX else DH2.sum(0)
        return dx, dh, dc0, dw_ih, dw_hh, db_ih, db_hh, None, None, None, None, None, None


def run_layer(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
              *, nonlinearity="tanh", forget_gate=True, grad_norms=None):
    """One layer, one direction of ``cell`` over ``x`` (T, B, I); see the module docstring.

    Returns ``(out (T, B, H), h_n (B, H), c_n (B, H) or None)``. ``lengths`` (B,) int64 or None;
    ``grad_norms`` (B, T) float tensor filled in place by the backward, or None.
    """
    if cell not in ("lstm", "cifg", "gru", "rnn"):
        raise ValueError(f"cell must be one of 'lstm', 'cifg', 'gru', 'rnn': got {cell!r}")
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
                                      bool(reverse), cell, nonlinearity, forget_gate, grad_norms)
    return out, h_n, c_n
