"""Handlers of torch.nn modules (call_module nodes) and of the bridge modules of to_module."""

from __future__ import annotations


import torch
from torch import nn

from ..to_module import PositionalEmbedding, TransposedLinear
from .registry import _flatten, _BRIDGE_HANDLERS, _act, _arg, _on_modules, _real, _rowwise_in, _rowwise_out, _sample_axis, _simple
from .values import Act, Const, LossVal, RecState, Seq, Unmappable  # noqa: F401
from .values import _value


_SELF_ATTENTION_ARGS = ("query", "key", "value")

def _mod(c, n) -> nn.Module:
    return c.module_of(n)


@_on_modules(nn.Linear)
def _h_linear(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    a = _act(ia[0])
    name = c.layer_name(n)
    shared = c.claim(name, [m.weight, m.bias])
    fields = {"units": m.out_features, "bias": m.bias is not None}
    if shared:
        fields["share_params_with"] = shared
    name = c.add("dense", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


def _conv_fields(m, n_spatial: int) -> dict:
    def norm(v):
        v = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n_spatial
        return v[0] if n_spatial == 1 else (v if v[0] != v[1] else v[0])

    f = {"out_channels": m.out_channels, "kernel": norm(m.kernel_size), "stride": norm(m.stride),
         "dilation": norm(m.dilation), "groups": m.groups, "bias": m.bias is not None}
    if isinstance(m.padding, str):
        f["padding"] = m.padding
    else:
        f["padding"] = norm(m.padding)
    return f


def _param_layer(c, n, op, a_info, result, fields, params):
    a = _act(a_info)
    name = c.layer_name(n)
    shared = c.claim(name, params)
    if shared:
        fields["share_params_with"] = shared
    name = c.add(op, name, [c.ensure(a)] if a.real is not None else [a.layer], **fields)
    return c.out_act(name, result)


@_on_modules(nn.Conv1d, nn.Conv2d)
def _h_conv(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    if m.padding_mode != "zeros":
        c.note(f"'{n.target}': padding mode '{m.padding_mode}' costed as zero padding")
    nsp = 1 if isinstance(m, nn.Conv1d) else 2
    _real(_act(ia[0]))
    return _param_layer(c, n, "conv1d" if nsp == 1 else "conv2d", ia[0], result, _conv_fields(m, nsp),
                        [m.weight, m.bias])


@_on_modules(nn.ConvTranspose2d)
def _h_convt(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    _real(_act(ia[0]))
    if len(args) > 1 and args[1] is not None:
        raise Unmappable("an explicit output_size")
    f = _conv_fields(m, 2)
    f["output_padding"] = tuple(m.output_padding) if m.output_padding[0] != m.output_padding[1] else m.output_padding[0]
    return _param_layer(c, n, "conv_transpose2d", ia[0], result, f, [m.weight, m.bias])


def _pair_or_int(v):
    if isinstance(v, (tuple, list)):
        v = tuple(int(x) for x in v)
        return v[0] if len(v) == 1 or v[0] == v[1] else v
    return int(v)


def _pool(c, n, op, a_info, result, kernel, stride, padding, ceil_mode, dilation=1):
    if _pair_or_int(dilation) != 1:
        raise Unmappable("a dilated pooling window")
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        stride = kernel
    a = _act(a_info)
    if len(_real(a)) != 3:
        raise Unmappable("pooling of a non-image tensor")
    name = c.add(op, c.layer_name(n), [c.ensure(a)], kernel=_pair_or_int(kernel), stride=_pair_or_int(stride),
                 padding=_pair_or_int(padding), ceil_mode=bool(ceil_mode))
    return c.out_act(name, result)


@_on_modules(nn.MaxPool2d)
def _h_maxpool(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    if m.return_indices:
        raise Unmappable("return_indices=True")
    return _pool(c, n, "maxpool2d", ia[0], result, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.dilation)


@_on_modules(nn.AvgPool2d)
def _h_avgpool(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _pool(c, n, "avgpool2d", ia[0], result, m.kernel_size, m.stride, m.padding, m.ceil_mode)


def _gap(c, n, a_info, result):
    a = _act(a_info)
    if len(_real(a)) not in (2, 3):
        raise Unmappable("global pooling of a tensor that is not [C, L] or [C, H, W]")
    name = c.add("global_avgpool", c.layer_name(n), [c.ensure(a)])
    return Act(name, (a.real[0],), c.per_sample(result))


@_on_modules(nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)
def _h_adaptive(c, n, result, args, kwargs, ia, ik):
    size = _mod(c, n).output_size
    if tuple(size if isinstance(size, (tuple, list)) else (size,)) not in ((1,), (1, 1)):
        raise Unmappable(f"adaptive pooling to {size} (only 1 maps to global_avgpool)")
    return _gap(c, n, ia[0], result)


@_on_modules(nn.BatchNorm1d, nn.BatchNorm2d)
def _h_bn(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _param_layer(c, n, "batchnorm", ia[0], result, {"eps": m.eps, "affine": m.affine},
                        [m.weight, m.bias] if m.affine else [])


@_on_modules(nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)
def _h_groupnorm(c, n, result, args, kwargs, ia, ik):
    """Group and instance norm: the passes and per-channel parameters of batch norm (statistics over groups
    of channels of one sample instead of over the batch)."""
    m = _mod(c, n)
    a = _act(ia[0])
    if a.real is None or len(a.real) not in (2, 3) or a.real[0] != getattr(m, "num_channels", a.real[0]):
        raise Unmappable("a group/instance norm of a tensor that is not [C, L] or [C, H, W]")
    c.note(f"{type(m).__name__} costed as batchnorm (same passes and per-channel parameters)")
    affine = bool(getattr(m, "affine", False))
    return _param_layer(c, n, "batchnorm", a, result, {"eps": m.eps, "affine": affine},
                        [m.weight, m.bias] if affine else [])


@_on_modules(nn.LayerNorm)
def _h_ln(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    if len(m.normalized_shape) != 1:
        raise Unmappable("layer norm over more than the last dim")
    if m.elementwise_affine and getattr(m, "bias", None) is None:
        raise Unmappable("layer norm without a bias (the kind has weight and bias)")
    a = _act(ia[0])
    name = c.layer_name(n)
    fields = {"eps": m.eps, "affine": m.elementwise_affine}
    shared = c.claim(name, [m.weight, m.bias] if m.elementwise_affine else [])
    if shared:
        fields["share_params_with"] = shared
    c.add("layernorm", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


_on_modules(nn.ReLU)(_simple("relu"))
_on_modules(nn.Sigmoid)(_simple("sigmoid"))
_on_modules(nn.Tanh)(_simple("tanh"))
_on_modules(nn.Identity)(lambda c, n, result, args, kwargs, ia, ik: _act(ia[0]))


@_on_modules(nn.GELU)
def _h_gelu_mod(c, n, result, args, kwargs, ia, ik):
    if _mod(c, n).approximate != "none":
        c.note(f"'{n.target}': tanh-approximated GELU costed as gelu")
    return _simple("gelu")(c, n, result, args, kwargs, ia, ik)


@_on_modules(nn.LeakyReLU)
def _h_lrelu_mod(c, n, result, args, kwargs, ia, ik):
    return _simple("leaky_relu", slope=_mod(c, n).negative_slope)(c, n, result, args, kwargs, ia, ik)


@_on_modules(nn.Dropout, nn.Dropout1d, nn.Dropout2d)
def _h_dropout_mod(c, n, result, args, kwargs, ia, ik):
    return _simple("dropout", p=_mod(c, n).p)(c, n, result, args, kwargs, ia, ik)


def _softmax_layer(c, n, a_info, dim, result, log=False):
    a = _act(a_info)
    if dim is None:
        raise Unmappable("softmax without an explicit dim")
    if log:
        c.note("log_softmax costed as softmax")
    if a.real is None:
        if dim not in (-1,):
            raise Unmappable("softmax over a folded tensor on a dim other than the last")
        name = c.add("softmax", c.layer_name(n), [a.layer], axis=-1)
        return Act(name, c.shapes[name], None)
    axis = _sample_axis(dim, len(a.real) + 1, a.bdim)
    axis = axis - len(a.real) if dim < 0 else axis
    name = c.add("softmax", c.layer_name(n), [c.ensure(a)], axis=axis)
    return c.out_act(name, result)


@_on_modules(nn.Softmax, nn.LogSoftmax)
def _h_softmax_mod(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _softmax_layer(c, n, ia[0], m.dim, result, log=isinstance(m, nn.LogSoftmax))


@_on_modules(nn.Flatten)
def _h_flatten_mod(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _flatten(c, n, ia[0], m.start_dim, m.end_dim, result)


@_on_modules(nn.Embedding)
def _h_embedding(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    a = _act(ia[0])
    if not a.is_int or a.real is None:
        raise Unmappable("the ids are not an int64 input of the model")
    return _embedding(c, n, a, m.weight, result)


def _embedding(c, n, a: Act, weight, result):
    src = _id_input(c, c.ensure(a))
    name = c.layer_name(n)
    fields = {"vocab": int(weight.shape[0]), "dim": int(weight.shape[1])}
    shared = c.claim(name, [weight])
    if shared:
        fields["share_params_with"] = shared
    c.add("embedding", name, [src], **fields)
    return c.out_act(name, result)


def _id_input(c, src: str) -> str:
    """The int64 input layer the ids come from (the graph's embedding reads one directly). Ids transformed on
    the way (shifted labels, a mask applied) read the input they come from when the shape is the same."""
    todo, seen = [src], set()
    while todo and len(seen) < 64:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        spec = c.kinds[name]
        if spec["op"] == "input" and spec.get("dtype") == "int64" and c.shapes[name] == c.shapes[src]:
            if name != src:
                c.note("ids transformed before an embedding (e.g. shifted labels) read as the input they come from")
            return name
        todo.extend(spec.get("inputs") or [])
    raise Unmappable("the ids are not an int64 input of the model (nor transformed from one of the same shape)")


@_on_modules(nn.RNN, nn.LSTM, nn.GRU)
def _h_recurrent(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    if getattr(m, "proj_size", 0):
        raise Unmappable("an LSTM with proj_size")
    a = _act(ia[0])
    if a.real is None or len(a.real) != 2:
        raise Unmappable("input is not a batch of [T, F] sequences")
    if a.bdim != (0 if m.batch_first else 1):
        raise Unmappable(f"batch_first={m.batch_first} but the batch is dim {a.bdim} of the input")
    op = {nn.RNN: "rnn", nn.LSTM: "lstm", nn.GRU: "gru"}[type(m)]
    fields = {"hidden": m.hidden_size, "layers": m.num_layers, "bidirectional": m.bidirectional, "bias": m.bias}
    if op == "rnn":
        fields["nonlinearity"] = m.nonlinearity
    return _recurrent_layer(c, n, op, a, fields, list(m.parameters()), m.dropout, result)


def _recurrent_layer(c, n, op, a, fields, params, dropout, result):
    if dropout:
        c.note("dropout between stacked recurrent layers is not costed")
    name = c.layer_name(n)
    shared = c.claim(name, params)
    if shared:
        fields["share_params_with"] = shared
    name = c.add(op, name, [c.ensure(a)], **fields)
    out = c.out_act(name, result[0])
    state = RecState(out, 2 if fields["bidirectional"] else 1)
    hidden = Seq((state, state)) if op == "lstm" else state
    return Seq((out, hidden))


@_on_modules(nn.MultiheadAttention)
def _h_mha(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    q, k, v = (_arg(ia, ik, i, nm) for i, nm in enumerate(_SELF_ATTENTION_ARGS))
    if m.bias_k is not None or m.add_zero_attn:
        raise Unmappable("add_bias_kv/add_zero_attn")
    a = _act(q)
    if a.real is None or len(a.real) != 2:
        raise Unmappable("input is not a batch of [T, D] sequences")
    if a.bdim != (0 if m.batch_first else 1):
        raise Unmappable(f"batch_first={m.batch_first} but the batch is dim {a.bdim} of the query")
    causal = bool(_value(ik.get("is_causal", Const(False))))
    mask = _arg(ia, ik, 5, "attn_mask", None)
    if not causal and mask is not None and _value(mask) is not None:
        mv = _value(mask)
        if isinstance(mv, torch.Tensor) and _is_causal_mask(mv):
            causal = True
        else:
            c.note(f"'{n.target}': an attention mask that is not causal is ignored")
    if _arg(ia, ik, 3, "key_padding_mask") is not None and _value(_arg(ia, ik, 3, "key_padding_mask")) is not None:
        c.note(f"'{n.target}': key_padding_mask ignored")
    if not (q is k is v) or not m._qkv_same_embed_dim:
        out = _cross_attention(c, n, m, a, _act(k), _act(v), result[0], causal)
    else:
        name = c.layer_name(n)
        fields = {"heads": m.num_heads, "causal": causal, "bias": m.in_proj_bias is not None, "dropout": m.dropout}
        shared = c.claim(name, list(m.parameters()))
        if shared:
            fields["share_params_with"] = shared
        c.add("attention", name, [c.ensure(a)], **fields)
        out = c.out_act(name, result[0])
    w = result[1]
    return Seq((out, Const(None) if w is None else Act(out.layer, a.real, None)))


def _cross_attention(c, n, m, q: Act, k: Act, v: Act, result, causal: bool) -> Act:
    """Attention whose keys and values are not the query (cross-attention, kdim/vdim): dense projections,
    per-head score and context matmuls, softmax, dropout and the output projection."""
    if k.real is None or v.real is None or len(k.real) != 2 or len(v.real) != 2:
        raise Unmappable("keys or values are not a batch of [T, D] sequences")
    e, h = m.embed_dim, m.num_heads
    d, tq, tk = e // h, q.real[0], k.real[0]
    base = c.layer_name(n)
    bias = m.in_proj_bias is not None
    if causal:
        c.note(f"'{base}': a causal mask of cross-attention does not change its cost here")
    shared = c.claim(f"{base}.q_proj", list(m.parameters()))
    if shared:
        raise Unmappable("cross-attention that shares its parameters")
    qp = c.add("dense", c.unique(f"{base}.q_proj"), [c.ensure(q)], units=e, bias=bias)
    kp = c.add("dense", c.unique(f"{base}.k_proj"), [c.ensure(k)], units=e, bias=bias)
    vp = c.add("dense", c.unique(f"{base}.v_proj"), [c.ensure(v)], units=e, bias=bias)
    qh = c.add("reshape", c.unique(f"{base}.q_heads"), [qp], shape=[h, tq, d])
    kh = c.add("reshape", c.unique(f"{base}.k_heads"), [kp], shape=[h, tk, d])
    vh = c.add("reshape", c.unique(f"{base}.v_heads"), [vp], shape=[h, tk, d])
    scores = c.add("matmul", c.unique(f"{base}.scores"), [qh, kh], transpose_b=True)
    probs = c.add("softmax", c.unique(f"{base}.softmax"), [scores], axis=-1)
    if m.dropout:
        probs = c.add("dropout", c.unique(f"{base}.dropout"), [probs], p=m.dropout)
    ctx = c.add("matmul", c.unique(f"{base}.context"), [probs, vh])
    merged = c.add("reshape", c.unique(f"{base}.merge"), [ctx], shape=[tq, e])
    name = c.add("dense", c.unique(f"{base}.out_proj"), [merged], units=e, bias=m.out_proj.bias is not None)
    c.note("permutes of heads in cross-attention are views (reshape layers)")
    return c.out_act(name, result)


def _is_causal_mask(m: torch.Tensor) -> bool:
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        return False
    blocked = m if m.dtype == torch.bool else torch.isinf(m) & (m < 0)
    want = torch.triu(torch.ones_like(blocked, dtype=torch.bool), diagonal=1)
    return bool(torch.equal(blocked.bool(), want))


@_on_modules(nn.Upsample)
def _h_upsample_mod(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _upsample(c, n, ia[0], m.scale_factor, m.mode, result)


def _upsample(c, n, a_info, scale, mode, result):
    a = _act(a_info)
    if scale is None:
        raise Unmappable("upsampling to a size (only an integer scale factor maps)")
    s = scale if not isinstance(scale, (tuple, list)) else (scale[0] if len(set(scale)) == 1 else None)
    if s is None or float(s) != int(s):
        raise Unmappable(f"non-integer or anisotropic scale {scale}")
    if mode not in ("nearest", "bilinear", "linear"):
        raise Unmappable(f"mode '{mode}'")
    name = c.add("upsample", c.layer_name(n), [c.ensure(a)], scale=int(s),
                 mode="nearest" if mode == "nearest" else "bilinear")
    return c.out_act(name, result)


def _loss(c, n, op, a_info, result):
    a = _act(a_info, "prediction")
    name = c.add(op, c.layer_name(n), [a.layer if a.real is None else c.ensure(a)])
    return LossVal()


_on_modules(nn.CrossEntropyLoss)(lambda c, n, r, a, k, ia, ik: _loss(c, n, "softmax_cross_entropy", ia[0], r))
_on_modules(nn.MSELoss)(lambda c, n, r, a, k, ia, ik: _loss(c, n, "mse", ia[0], r))
_on_modules(nn.BCEWithLogitsLoss)(lambda c, n, r, a, k, ia, ik: _loss(c, n, "bce", ia[0], r))


# --- bridge modules of to_module ------------------------------------------------------------------------


def _h_posemb(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    a = _act(ia[0])
    return _posemb_layer(c, n, a, m.weight, result)


def _posemb_layer(c, n, a: Act, weight, result):
    if a.real is None or len(a.real) != 2:
        raise Unmappable("position table added to a tensor that is not [T, D]")
    name = c.layer_name(n)
    fields = {"max_len": int(weight.shape[-2])}
    shared = c.claim(name, [weight])
    if shared:
        fields["share_params_with"] = shared
    c.add("positional_embedding", name, [c.ensure(a)], **fields)
    return c.out_act(name, result)


def _h_translinear(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    a = _act(ia[0])
    name = c.layer_name(n)
    shared = c.claim(name, [m._other[0].weight])
    fields = {"units": m.out_features, "bias": m.bias is not None}
    if shared:
        fields["share_params_with"] = shared
    name = c.add("dense", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


_BRIDGE_HANDLERS[PositionalEmbedding] = _h_posemb
_BRIDGE_HANDLERS[TransposedLinear] = _h_translinear
