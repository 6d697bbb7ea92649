"""Handlers of functions, tensor methods and aten ops (call_function / call_method nodes)."""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F

from .modules import _embedding, _gap, _loss, _pool, _posemb_layer, _softmax_layer, _upsample
from .elementwise import elementwise, getitem_slice
from .registry import _flatten, _view, _act, _aten, _arg, _on, _real, _rowwise_in, _rowwise_out, _sample_axis, _simple
from .values import Act, Const, Dict_, RecState, Seq, Unmappable  # noqa: F401
from .values import _params_of, _value


def _binary(c, n, op, result, ia):
    xs = [i for i in ia[:2]]
    acts = [x for x in xs if isinstance(x, Act)]
    if len(acts) == 2:
        a, b = acts
        if a.real is None or b.real is None:
            if a.real is None and b.real is None and a.shape == b.shape:
                name = c.add(op, c.layer_name(n), [a.layer, b.layer])
                return Act(name, a.shape, None)
            return elementwise(c, n, result, ia, {}, fn=op)
        if a.real != b.real:
            return elementwise(c, n, result, ia, {}, fn=op)
        name = c.add(op, c.layer_name(n), [c.ensure(a), c.ensure(b)])
        return c.out_act(name, result)
    if op == "add" and len(acts) == 1:
        a = acts[0]
        other = xs[1] if xs[0] is a else xs[0]
        if isinstance(other, Const) and isinstance(other.value, torch.Tensor) and len(other.params) == 1:
            pid = next(iter(other.params))
            p = c.param_by_id.get(pid)
            if p is not None and a.real is not None and len(a.real) == 2 and p.dim() in (2, 3) \
                    and p.shape[-1] == a.real[1] and p.shape[-2] >= a.real[0] and math.prod(p.shape[:-2]) == 1 \
                    and tuple(other.value.shape[-2:]) == a.real and math.prod(other.value.shape[:-2]) == 1:
                return _posemb_layer(c, n, a, p, result)
    return elementwise(c, n, result, ia, {}, fn=op)


@_on(operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__radd__", "__iadd__",
     *_aten("add.Tensor", "add_.Tensor"))
def _h_add(c, n, result, args, kwargs, ia, ik):
    if kwargs.get("alpha", 1) != 1 or (len(args) > 2 and args[2] != 1):
        raise Unmappable("add with alpha")
    return _binary(c, n, "add", result, list(ia))


@_on(operator.mul, operator.imul, torch.mul, "mul", "mul_", "__mul__", "__rmul__", *_aten("mul.Tensor"))
def _h_mul(c, n, result, args, kwargs, ia, ik):
    return _binary(c, n, "mul", result, list(ia))


for _f, _op in ((F.relu, "relu"), (torch.relu, "relu"), ("relu", "relu"), ("relu_", "relu"), (F.relu_, "relu"),
                (torch.sigmoid, "sigmoid"), (F.sigmoid, "sigmoid"), ("sigmoid", "sigmoid"),
                (torch.tanh, "tanh"), (F.tanh, "tanh"), ("tanh", "tanh")):
    _on(_f)(_simple(_op))
_on(*_aten("relu.default", "relu_.default"))(_simple("relu"))
_on(*_aten("sigmoid.default"))(_simple("sigmoid"))
_on(*_aten("tanh.default"))(_simple("tanh"))
_on(F.gelu, *_aten("gelu.default"))(_simple("gelu"))
_on(F.leaky_relu, *_aten("leaky_relu.default"))(
    _simple("leaky_relu", slope=lambda a, k: float(_arg(a, k, 1, "negative_slope", 0.01))))


@_on(F.dropout, *_aten("dropout.default"))
def _h_dropout(c, n, result, args, kwargs, ia, ik):
    p = float(_arg(args, kwargs, 1, "p", 0.5))
    return _simple("dropout", p=min(p, 0.999))(c, n, result, args, kwargs, ia, ik)


@_on(F.softmax, torch.softmax, "softmax", *_aten("softmax.int", "_softmax.default"))
def _h_softmax(c, n, result, args, kwargs, ia, ik):
    return _softmax_layer(c, n, ia[0], _arg(args, kwargs, 1, "dim"), result)


@_on(F.log_softmax, torch.log_softmax, "log_softmax", *_aten("log_softmax.int", "_log_softmax.default"))
def _h_log_softmax(c, n, result, args, kwargs, ia, ik):
    return _softmax_layer(c, n, ia[0], _arg(args, kwargs, 1, "dim"), result, log=True)


@_on(torch.cat, torch.concat, *_aten("cat.default"))
def _h_cat(c, n, result, args, kwargs, ia, ik):
    parts = _arg(ia, ik, 0, "tensors")
    dim = int(_arg(args, kwargs, 1, "dim", 0))
    parts = [p for p in parts if not (isinstance(p, Const) and isinstance(p.value, torch.Tensor)
                                      and p.value.numel() == 0)]  # an empty cache, say
    if any(isinstance(p, Const) for p in parts) and c.per_sample(result) is not None:
        acts = [_act(p) for p in parts if not isinstance(p, Const)]
        if len(acts) == 1 and acts[0].real is not None:
            c.note("a concat of an activation with constants (or a learned token) costed as a pad")
            name = c.layer_name(n)
            own = [p for p in _params_of(parts) if p not in c.owner]
            fields = {"output_shape": list(c.per_sample(result))}
            if own:
                c.claim(name, own)
                fields["params"] = int(sum(c.param_numel[p] for p in own))
            name = c.add("pad", name, [c.ensure(acts[0])], **fields)
            return c.out_act(name, result)
    acts = [_act(p) for p in parts]
    reals = [_real(a) for a in acts]
    axis = _sample_axis(dim, len(reals[0]) + 1, acts[0].bdim)
    if len({x.bdim for x in acts}) > 1:
        raise Unmappable("parts with the batch dim in different places")
    if len(acts) == 1:
        return acts[0]
    name = c.add("concat", c.layer_name(n), [c.ensure(a) for a in acts], axis=axis)
    return c.out_act(name, result)


@_on(torch.flatten, "flatten", *_aten("flatten.using_ints"))
def _h_flatten(c, n, result, args, kwargs, ia, ik):
    return _flatten(c, n, ia[0], int(_arg(args, kwargs, 1, "start_dim", 0)), int(_arg(args, kwargs, 2, "end_dim", -1)),
                    result)


@_on(torch.reshape, "reshape", "view", "view_as", "reshape_as", "unsqueeze", "squeeze", torch.unsqueeze,
     torch.squeeze, "contiguous", "clone", "to", "float", "type_as", "long", "int", "type", "double", "half",
     "bfloat16", "detach", *_aten("view.default", "reshape.default", "_unsafe_view.default", "unsqueeze.default",
                                  "squeeze.dim", "squeeze.default", "clone.default", "contiguous.default",
                                  "_to_copy.default", "to.dtype", "to.device", "to.dtype_layout", "to.other", "alias.default", "detach.default"))
def _h_view(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    if isinstance(result, torch.Tensor) and result.is_floating_point() and a.is_int:
        a = Act(a.layer, a.shape, a.real, False)
    return _view(c, n, a, result)


@_on("permute", "transpose", "t", "swapaxes", "swapdims", torch.permute, torch.transpose, torch.swapaxes,
     *_aten("permute.default", "transpose.int", "t.default"))
def _h_permute(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    perm = _perm(n, args, kwargs, result.dim())
    if a.real is None or perm is None:
        raise Unmappable("a permutation of a tensor whose batch dim is folded")
    new_bdim = perm.index(a.bdim)
    if new_bdim not in (0, 1):
        raise Unmappable("a permutation that moves the batch dim past dim 1")
    if new_bdim == 1:
        c.seq_first = True  # [B, T, ...] -> [T, B, ...]: a sequence-first layout from here on
    order = [d for d in perm if d != a.bdim]
    if order == sorted(order):  # only the batch dim moved: the same per-sample layout
        return Act(a.layer, a.shape, a.real, a.is_int, a._view, a.transposed_of, a.swaps_last_two, new_bdim)
    out = _view(c, n, a, result)
    if c.per_sample(result) is None:
        raise Unmappable("a permutation that moves the batch dim")
    rank = len(order)
    out = Act(out.layer, out.shape, out.real, out.is_int, transposed_of=a, bdim=new_bdim,
              swaps_last_two=[sorted(order).index(d) for d in order] == list(range(rank - 2)) + [rank - 1, rank - 2])
    c.note("permute/transpose are views: a reshape layer stands for them where a consumer needs the new layout "
           "(a transpose of the last two dims feeding a matmul becomes transpose_b)")
    return out


def _perm(n, args, kwargs, rank: int) -> list[int] | None:
    """The permutation a permute/transpose/t node applies (dims of the input, in output order)."""
    name = str(n.target if isinstance(n.target, str) else getattr(n.target, "__name__", n.target))
    if "permute" in name:
        dims = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
        dims = dims or kwargs.get("dims", ())
        return [int(d) % rank for d in dims]
    perm = list(range(rank))
    if name in ("t",) or "t.default" in str(n.target):
        d0, d1 = 0, 1
    elif len(args) >= 3:
        d0, d1 = int(args[1]) % rank, int(args[2]) % rank
    else:
        return None
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return perm


@_on(operator.matmul, torch.matmul, torch.bmm, "matmul", "bmm", "__matmul__", *_aten("matmul.default", "bmm.default"))
def _h_matmul(c, n, result, args, kwargs, ia, ik):
    a, b = ia[0], ia[1]
    if isinstance(a, Act) and isinstance(b, Const):
        w = b.value
        if isinstance(w, torch.Tensor) and w.dim() == 2 and len(b.params) == 1:
            c.note("x @ W with a parameter W costed as a dense layer without bias")
            name = c.layer_name(n)
            fields = {"units": int(w.shape[1]), "bias": False}
            shared = c.claim(name, b.params)
            if shared:
                fields["share_params_with"] = shared
            name = c.add("dense", name, [_rowwise_in(c, a, args[0])], **fields)
            return _rowwise_out(c, name, a, result)
        raise Unmappable("a product with a constant that is not one parameter matrix")
    a, b = _act(a), _act(b)
    transpose_b = False
    src_b = b.transposed_of
    if src_b is not None and b.swaps_last_two and b.layer == src_b.layer:
        b, transpose_b = src_b, True
    ra, rb = _real(a), _real(b)
    if len(ra) < 2 or len(rb) < 2:
        raise Unmappable("a per-sample matrix-vector product")
    name = c.add("matmul", c.layer_name(n), [c.ensure(a), c.ensure(b)], transpose_b=transpose_b)
    return c.out_act(name, result)


@_on(F.linear, *_aten("linear.default"))
def _h_flinear(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    w, bias = _arg(ia, ik, 1, "weight"), _arg(ia, ik, 2, "bias")
    if not isinstance(w, Const) or not isinstance(w.value, torch.Tensor) or w.value.dim() != 2:
        raise Unmappable("a linear map whose weight is not a constant matrix")
    if bias is not None and not isinstance(bias, Const):
        raise Unmappable("a linear map whose bias depends on the inputs")
    name = c.layer_name(n)
    has_bias = bias is not None and isinstance(bias.value, torch.Tensor)
    fields = {"units": int(w.value.shape[0]), "bias": has_bias}
    shared = c.claim(name, set(w.params) | (set(bias.params) if has_bias else set()))
    if shared:
        fields["share_params_with"] = shared
    name = c.add("dense", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


@_on(F.layer_norm, *_aten("layer_norm.default"))
def _h_flayernorm(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    shape = _arg(args, kwargs, 1, "normalized_shape")
    if len(shape) != 1:
        raise Unmappable("layer norm over more than the last dim")
    w, b = _arg(ia, ik, 2, "weight"), _arg(ia, ik, 3, "bias")
    if (w is None) != (b is None):
        raise Unmappable("layer norm with only one of weight and bias")
    name = c.layer_name(n)
    fields = {"eps": float(_arg(args, kwargs, 4, "eps", 1e-5)), "affine": w is not None}
    shared = c.claim(name, _params_of((w, b))) if w is not None else None
    if shared:
        fields["share_params_with"] = shared
    c.add("layernorm", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


@_on(F.embedding)
def _h_fembedding(c, n, result, args, kwargs, ia, ik):
    a, w = _act(ia[0]), _arg(ia, ik, 1, "weight")
    if not (a.is_int or _int_tensor(args[0])) or not isinstance(w, Const) or len(w.params) != 1:
        raise Unmappable("an embedding lookup that is not ids of an input into a parameter table")
    return _embedding(c, n, a, c.param_by_id[next(iter(w.params))], result)


def _int_tensor(t) -> bool:
    return isinstance(t, torch.Tensor) and not t.is_floating_point() and not t.is_complex()


@_on(*_aten("embedding.default"))
def _h_aten_embedding(c, n, result, args, kwargs, ia, ik):
    w, a = ia[0], _act(ia[1])
    if not (a.is_int or _int_tensor(args[1])) or not isinstance(w, Const) or len(w.params) != 1:
        raise Unmappable("an embedding lookup that is not ids of an input into a parameter table")
    return _embedding(c, n, a, c.param_by_id[next(iter(w.params))], result)


@_on(F.max_pool2d, *_aten("max_pool2d.default"))
def _h_fmaxpool(c, n, result, args, kwargs, ia, ik):
    if _arg(args, kwargs, 6, "return_indices", False):
        raise Unmappable("return_indices=True")
    k = _arg(args, kwargs, 1, "kernel_size")
    return _pool(c, n, "maxpool2d", ia[0], result, k, _arg(args, kwargs, 2, "stride", None),
                 _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 5, "ceil_mode", False),
                 _arg(args, kwargs, 4, "dilation", 1))


@_on(F.avg_pool2d, *_aten("avg_pool2d.default"))
def _h_favgpool(c, n, result, args, kwargs, ia, ik):
    k = _arg(args, kwargs, 1, "kernel_size")
    return _pool(c, n, "avgpool2d", ia[0], result, k, _arg(args, kwargs, 2, "stride", None),
                 _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "ceil_mode", False))


@_on(F.adaptive_avg_pool2d, F.adaptive_avg_pool1d, *_aten("adaptive_avg_pool2d.default", "adaptive_avg_pool1d.default"))
def _h_fadaptive(c, n, result, args, kwargs, ia, ik):
    size = _arg(args, kwargs, 1, "output_size")
    if tuple(size if isinstance(size, (tuple, list)) else (size,)) not in ((1,), (1, 1)):
        raise Unmappable(f"adaptive pooling to {size}")
    return _gap(c, n, ia[0], result)


@_on(torch.mean, "mean", *_aten("mean.dim"))
def _h_mean(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    real = _real(a)
    dims = _arg(args, kwargs, 1, "dim")
    if dims is None:
        raise Unmappable("a mean over everything (batch included)")
    rank = len(real) + 1
    dims = sorted(int(d) % rank for d in (dims if isinstance(dims, (list, tuple)) else [dims]))
    if len(real) in (2, 3) and dims == list(range(2, rank)):
        return _gap(c, n, a, result)
    raise Unmappable(f"a mean over dims {dims} (only the mean over all spatial dims is global_avgpool)")


@_on(F.interpolate, *_aten("upsample_nearest2d.vec", "upsample_bilinear2d.vec"))
def _h_interpolate(c, n, result, args, kwargs, ia, ik):
    if isinstance(n.target, torch._ops.OpOverload):
        scale = _arg(args, kwargs, 3 if "bilinear" in str(n.target) else 2, "scale_factors")
        mode = "bilinear" if "bilinear" in str(n.target) else "nearest"
    else:
        scale, mode = _arg(args, kwargs, 2, "scale_factor"), _arg(args, kwargs, 3, "mode", "nearest")
    return _upsample(c, n, ia[0], scale, mode, result)


@_on("select", torch.select, *_aten("select.int"))
def _h_select(c, n, result, args, kwargs, ia, ik):
    if isinstance(ia[0], RecState) and int(_arg(args, kwargs, 1, "dim")) == 0:  # h_n.select(0, i) = h_n[i]
        return _final_state(c, n, ia[0], int(_arg(args, kwargs, 2, "index")), result)
    a = _act(ia[0])
    real = _real(a)
    dim, index = int(_arg(args, kwargs, 1, "dim")), int(_arg(args, kwargs, 2, "index"))
    axis = _sample_axis(dim, len(real) + 1, a.bdim)
    name = c.add("select", c.layer_name(n), [c.ensure(a)], axis=axis, index=index)
    return c.out_act(name, result)


@_on(operator.getitem)
def _h_getitem(c, n, result, args, kwargs, ia, ik):
    src, idx = ia[0], args[1]
    if isinstance(src, Seq):
        item = src.items[idx]
        return Seq(item) if isinstance(item, tuple) else item
    if isinstance(src, Dict_):
        return src.items[idx]
    if isinstance(src, RecState):
        return _final_state(c, n, src, idx, result)
    a = _act(src)
    real = _real(a)
    if not isinstance(idx, tuple):
        idx = (idx,)
    if a.bdim == 1 and len(idx) == 1 and isinstance(idx[0], int):  # out[-1] of a sequence-first tensor
        name = c.add("select", c.layer_name(n), [c.ensure(a)], axis=0, index=idx[0])
        return c.out_act(name, result)
    # x[:, i] / x[:, :, i] / x[..., i]: a select
    if len(idx) >= 2 and idx[0] == slice(None) and all(i == slice(None) for i in idx[1:-1]) \
            and isinstance(idx[-1], int) and len(idx) - 1 <= len(real):
        dim = len(idx) - 1
        name = c.add("select", c.layer_name(n), [c.ensure(a)], axis=dim - 1, index=idx[-1])
        return c.out_act(name, result)
    if len(idx) >= 2 and idx[0] == slice(None) and all(i == slice(None) for i in idx[:-1]) \
            and isinstance(idx[-1], int) is False and idx[-1] == slice(None):
        return a
    return getitem_slice(c, n, a, idx, result)


def _final_state(c, n, src: RecState, idx, result):
    """h_n[i] of a recurrent layer: h_n[-1] of a unidirectional layer is its last time step (a select); any
    other final state is costed as a slice of the output sequence (a view) with a note."""
    if isinstance(idx, int) and idx == -1 and src.dirs == 1:
        name = c.add("select", c.layer_name(n), [c.ensure(src.act)], axis=0, index=-1)
        return c.out_act(name, result)
    real = c.per_sample(result)
    if not isinstance(idx, int) or real is None:
        raise Unmappable("use of a recurrent layer's final state other than h_n[i]")
    c.note("a final state h_n[i] of a recurrent layer is costed as a slice of its output sequence")
    name = c.add("slice", c.layer_name(n), [c.ensure(src.act)], output_shape=list(real))
    return c.out_act(name, result)


@_on(getattr)
def _h_getattr(c, n, result, args, kwargs, ia, ik):
    a, attr = _act(ia[0]), args[1]
    if attr in ("real", "imag", "data"):
        return _view(c, n, a, result)
    if attr in ("T", "mT", "mH", "H"):
        return _h_permute(c, n, result, (args[0], -2, -1), {}, ia, ik)
    raise Unmappable(f"attribute '{attr}'")


def _conv_like(c, n, op, result, a_info, w, b, stride, padding, dilation, groups, output_padding=None):
    a = _act(a_info)
    _real(a)
    if not isinstance(w, Const) or not isinstance(w.value, torch.Tensor):
        raise Unmappable("a convolution whose weight depends on the inputs")
    wt = w.value
    nsp = wt.dim() - 2
    out_ch = int(wt.shape[1] * groups) if op == "conv_transpose2d" else int(wt.shape[0])
    kernel = tuple(int(k) for k in wt.shape[2:])

    def norm(v):
        v = tuple(v) if isinstance(v, (tuple, list)) else (v,) * nsp
        v = tuple(int(x) for x in v) if len(v) == nsp else v * nsp
        return v[0] if nsp == 1 or len(set(v)) == 1 else v

    fields = {"out_channels": out_ch, "kernel": norm(kernel), "stride": norm(stride), "dilation": norm(dilation),
              "groups": int(groups), "bias": b is not None and _value(b) is not None}
    fields["padding"] = padding if isinstance(padding, str) else norm(padding)
    if output_padding is not None:
        fields["output_padding"] = norm(output_padding)
    name = c.layer_name(n)
    ids = [p for p in _params_of((w, b)) if p not in c.owner]
    shared = c.claim(name, _params_of((w, b)))
    if shared:
        fields["share_params_with"] = shared
    name = c.add(op, name, [c.ensure(a)], **fields)
    excess = sum(c.param_numel[p] for p in ids) - wt.numel() - (_value(b).numel() if fields["bias"] else 0)
    if not shared and excess > 0:  # a reparametrised weight (weight norm's g): its extra parameters
        c.note(f"'{name}': a reparametrised weight (weight norm) has {excess:,} parameters beyond the kernel's: "
               "an elementwise layer after it holds them")
        name = c.add("elementwise", c.unique(f"{name}.own_params"), [name], fn="mul", params=int(excess))
    return c.out_act(name, result)


@_on(F.conv1d, F.conv2d, *_aten("conv1d.default", "conv2d.default"))
def _h_fconv(c, n, result, args, kwargs, ia, ik):
    w = _arg(ia, ik, 1, "weight")
    op = "conv1d" if isinstance(w, Const) and getattr(w.value, "dim", lambda: 0)() == 3 else "conv2d"
    return _conv_like(c, n, op, result, ia[0], w, _arg(ia, ik, 2, "bias"), _arg(args, kwargs, 3, "stride", 1),
                      _arg(args, kwargs, 4, "padding", 0), _arg(args, kwargs, 5, "dilation", 1),
                      _arg(args, kwargs, 6, "groups", 1))


@_on(F.conv_transpose2d, *_aten("conv_transpose2d.input"))
def _h_fconvt(c, n, result, args, kwargs, ia, ik):
    return _conv_like(c, n, "conv_transpose2d", result, ia[0], _arg(ia, ik, 1, "weight"), _arg(ia, ik, 2, "bias"),
                      _arg(args, kwargs, 3, "stride", 1), _arg(args, kwargs, 4, "padding", 0),
                      _arg(args, kwargs, 7, "dilation", 1), _arg(args, kwargs, 6, "groups", 1),
                      output_padding=_arg(args, kwargs, 5, "output_padding", 0))


def _bn_like(c, n, result, a_info, w, b, eps):
    a = _act(a_info)
    if len(_real(a)) not in (1, 2, 3):
        raise Unmappable("batch norm of a tensor that is not [C], [C, L] or [C, H, W]")
    affine = w is not None and _value(w) is not None
    name = c.layer_name(n)
    fields = {"eps": float(eps), "affine": affine}
    shared = c.claim(name, _params_of((w, b))) if affine else None
    if shared:
        fields["share_params_with"] = shared
    c.add("batchnorm", name, [c.ensure(a)], **fields)
    return c.out_act(name, result)


@_on(F.group_norm, *_aten("group_norm.default"))
def _h_fgroupnorm(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    if a.real is None or len(a.real) not in (2, 3):
        raise Unmappable("a group norm of a tensor that is not [C, L] or [C, H, W]")
    c.note("group norm costed as batchnorm (same passes and per-channel parameters)")
    return _bn_like(c, n, result, ia[0], _arg(ia, ik, 2, "weight"), _arg(ia, ik, 3, "bias"),
                    _arg(args, kwargs, 4, "eps", 1e-5))


@_on(F.batch_norm)
def _h_fbatchnorm(c, n, result, args, kwargs, ia, ik):
    return _bn_like(c, n, result, ia[0], _arg(ia, ik, 3, "weight"), _arg(ia, ik, 4, "bias"),
                    _arg(args, kwargs, 7, "eps", 1e-5))


@_on(*_aten("batch_norm.default", "_native_batch_norm_legit_no_training.default"))
def _h_aten_batchnorm(c, n, result, args, kwargs, ia, ik):
    eps = args[7] if "no_training" not in str(n.target) else args[6]
    out = _bn_like(c, n, result if isinstance(result, torch.Tensor) else result[0], ia[0], ia[1], ia[2], eps)
    return out if isinstance(result, torch.Tensor) else Seq((out,) + tuple(Const(None) for _ in result[1:]))


@_on(F.scaled_dot_product_attention, *_aten("scaled_dot_product_attention.default"))
def _h_sdpa(c, n, result, args, kwargs, ia, ik):
    q, k, v = (_act(_arg(ia, ik, i, nm)) for i, nm in enumerate(("query", "key", "value")))
    for x in (q, k, v):
        if len(_real(x)) < 2:
            raise Unmappable("attention inputs must be [..., T, d] per sample")
    c.note("scaled_dot_product_attention costed as matmul(q, k^T) -> softmax -> matmul(., v); mask, scale and "
           "causality are not costed")
    base = c.layer_name(n)
    scores = c.add("matmul", c.unique(f"{base}.scores"), [c.ensure(q), c.ensure(k)], transpose_b=True)
    mask = _arg(ia, ik, 3, "attn_mask")
    own = [p for p in _params_of(mask) if p not in c.owner] if mask is not None else []
    if isinstance(mask, Act) or own:  # a learned or computed bias added to the scores (T5's position bias)
        name = c.unique(f"{base}.bias")
        fields = {"fn": "add", "flops_per_element": 1.0}
        if own:
            c.claim(name, own)
            fields["params"] = int(sum(c.param_numel[p] for p in own))
        ins = [scores] + ([c.ensure(mask)] if isinstance(mask, Act) and mask.real is not None else [])
        scores = c.add("elementwise", name, ins, **fields)
    probs = c.add("softmax", c.unique(f"{base}.softmax"), [scores], axis=-1)
    p = float(_value(_arg(ia, ik, 4, "dropout_p", 0.0)) or 0.0)
    if p > 0:
        probs = c.add("dropout", c.unique(f"{base}.dropout"), [probs], p=min(p, 0.999))
    c.add("matmul", base, [probs, c.ensure(v)])
    return c.out_act(base, result)


@_on("expand", "expand_as", *_aten("expand.default", "expand_as.default"))
def _h_expand(c, n, result, args, kwargs, ia, ik):
    """A broadcast view; what reads it (e.g. the reshape of repeat_kv) copies it: costed as a pad."""
    a = _act(ia[0])
    real = c.per_sample(result)
    if a.real is None or real is None or len(real) != len(a.real):
        raise Unmappable("an expand that adds dims or moves the batch dim")
    if real == a.real:
        return a
    c.note("expand (a broadcast view, copied where it is made contiguous) costed as a pad (one copy)")
    name = c.add("pad", c.layer_name(n), [c.ensure(a)], output_shape=list(real))
    return c.out_act(name, result)


def _h_loss_fn(op):
    def h(c, n, result, args, kwargs, ia, ik):
        return _loss(c, n, op, _arg(ia, ik, 0, "input"), result)

    return h


_on(F.cross_entropy, *_aten("cross_entropy_loss.default"))(_h_loss_fn("softmax_cross_entropy"))
_on(F.mse_loss, *_aten("mse_loss.default"))(_h_loss_fn("mse"))
_on(F.binary_cross_entropy_with_logits, *_aten("binary_cross_entropy_with_logits.default"))(_h_loss_fn("bce"))


@_on(F.nll_loss, *_aten("nll_loss.default", "nll_loss_nd.default"))
def _h_nll(c, n, result, args, kwargs, ia, ik):
    a = _act(_arg(ia, ik, 0, "input"))
    if not c.specs or c.specs[-1]["name"] != a.layer or c.specs[-1]["op"] != "softmax":
        raise Unmappable("nll_loss that does not follow a log_softmax")
    c.note("log_softmax + nll_loss costed as softmax_cross_entropy after a softmax")
    return _loss(c, n, "softmax_cross_entropy", a, result)


# ----------------------------------------------------------------------------------------------------------
# post-processing
