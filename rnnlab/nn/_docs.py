"""Docstring pieces shared by the recurrent modules (Args and the Inputs/Outputs shape table)."""


def shapes_doc(lstm: bool, proj: bool = False) -> str:
    hx = "(h_0, c_0)" if lstm else "h_0"
    hn = "(h_n, c_n)" if lstm else "h_n"
    c0 = "\n        * **c_0**: same shape as ``h_0``." if lstm else ""
    cn = "\n        * **c_n**: same shape, the cell state." if lstm else ""
    h_out = r"\text{proj\_size if proj\_size > 0 otherwise hidden\_size}" if proj else r"\text{hidden\_size}"
    if proj:
        c0 = c0.replace("same shape as ``h_0``", "as ``h_0`` with ``hidden_size`` columns")
        cn = cn.replace("same shape", "as ``h_n`` with ``hidden_size`` columns")
    return rf"""
    Inputs: input, {hx}, lengths
        * **input**: tensor of shape :math:`(L, H_{{in}})` for unbatched input, :math:`(L, N, H_{{in}})` when
          ``batch_first=False`` or :math:`(N, L, H_{{in}})` when ``batch_first=True``, or a
          :class:`torch.nn.utils.rnn.PackedSequence` (then the output is one too, with the same sorted indices).
        * **h_0**: :math:`(D * \text{{num\_layers}}, H_{{out}})` unbatched or
          :math:`(D * \text{{num\_layers}}, N, H_{{out}})`; zeros if ``hx`` is not given.{c0}
        * **lengths**: ``None``, or a list of ints or a 1-D integer tensor :math:`(N)` on the CPU or the input's
          device, :math:`1 \le \text{{lengths}} \le L`. Steps past a sequence's length are padding: they keep its
          state and output zeros; the reverse direction starts at each sequence's own last token. Same numbers as
          torch with ``pack_padded_sequence(input, lengths, enforce_sorted=False)``. Not allowed with a
          PackedSequence (its lengths are used).

        .. math::
            \begin{{aligned}}
                N ={{}} & \text{{batch size}} \\
                L ={{}} & \text{{sequence length}} \\
                D ={{}} & 2 \text{{ if bidirectional=True otherwise }} 1 \\
                H_{{in}} ={{}} & \text{{input\_size}} \\
                H_{{out}} ={{}} & {h_out}
            \end{{aligned}}

    Outputs: output, {hn}
        * **output**: :math:`(L, D * H_{{out}})`, :math:`(L, N, D * H_{{out}})` or :math:`(N, L, D * H_{{out}})` (as
          the input): :math:`h_t` of the last layer for each t, both directions concatenated; zero at padded steps.
        * **h_n**: :math:`(D * \text{{num\_layers}}, N, H_{{out}})` (no N if unbatched): the hidden state at each
          sequence's own last step, for every layer and direction.{cn}
"""


def args_doc(name: str, forget: bool = False, nonlinearity: bool = False, proj: bool = False) -> str:
    s = f"""
    Args:
        input_size: The number of expected features in the input `x`
        hidden_size: The number of features in the hidden state `h`
        num_layers: Number of recurrent layers; ``num_layers=2`` stacks two {name}s, the second taking the outputs
            of the first. Default: 1
        bias: If ``False``, the layer does not use ``b_ih`` and ``b_hh``. Default: ``True``
        batch_first: If ``True``, input and output tensors are ``(batch, seq, feature)``; states are not.
            Default: ``False``
        dropout: If non-zero, a Dropout layer on the outputs of each layer except the last, with this
            probability. Default: 0
        bidirectional: If ``True``, becomes a bidirectional {name}. Default: ``False``
"""
    if nonlinearity:
        s += """        nonlinearity: ``'tanh'``, ``'relu'`` or ``'identity'`` (a linear RNN, whose vanishing or exploding
            gradient is the product of powers of W_hh and can be computed in closed form). Default: ``'tanh'``
"""
    if proj:
        s += """        proj_size: If ``> 0``, an LSTM with projections of this size: :math:`h_t = W_{hr} (o_t \\odot
            \\tanh(c_t))`, so :math:`h_t`, the output and ``h_n`` have ``proj_size`` entries per direction.
            Runs on the ``'loop'`` backend (another backend warns once and steps aside to it). Default: 0
"""
    if forget:
        s += """        forget_bias: added to the forget-gate slice of ``bias_ih`` after initialisation. ``1.0`` is
            Jozefowicz et al. (2015), "An Empirical Exploration of Recurrent Network Architectures", and Keras'
            ``unit_forget_bias`` (rnnlab's experiments set it through ``model.forget_bias``); the default ``0``
            draws torch's initial weights. With ``bias=False`` there is no bias to add it to, so it has no
            effect. Default: 0.0
"""
    s += """        init: ``'torch'`` (U(-1/sqrt(H), 1/sqrt(H)), the same draws as ``torch.nn``) or ``'keras'``
            (Glorot-uniform ``weight_ih``, orthogonal ``weight_hh``, zero biases); see :mod:`rnnlab.nn.init`.
            Default: ``'torch'``
        backend: ``'auto'`` or a key of :data:`rnnlab.nn.base.BACKENDS` (``'loop'``: the autograd reference).
            Default: ``'auto'``
        zoneout, zoneout_cell, weight_dropout, variational_dropout, layer_norm: keyword-only regularizers, off by
            default; their equations are in :mod:`rnnlab.nn.regularizers`. ``zoneout`` (z_h) and ``zoneout_cell``
            (z_c, LSTM/CIFG; default: ``zoneout``): probability that a unit keeps its previous state in training, the
            expectation at evaluation. ``weight_dropout``: DropConnect on ``weight_hh``, one mask per forward pass.
            ``variational_dropout``: one dropout mask per sequence on each layer's input and the last output.
            ``layer_norm``: haste's layer-normalized pre-activations (and cell, LSTM/CIFG). ``zoneout`` and
            ``layer_norm`` run on the ``'loop'`` backend (another warns once and steps aside to it). Default: 0 / ``False``
"""
    return s
