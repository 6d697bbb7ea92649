"""Handlers of pointwise and layout ops without a kind of their own: `elementwise` (ops with a constant,
broadcasts, pow/rsqrt/exp/neg, clamp, ReLU6, SiLU, ...), `pad` (F.pad), `slice` (x[..., a:b], narrow,
chunk/split) and addmm (a dense layer)."""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

from .registry import _act, _arg, _aten, _on, _on_modules, _rowwise_in, _rowwise_out, on_module_kind
from .values import Act, Const, Seq, Unmappable, _params_of, _walk


TRANSCENDENTAL = 2  # as ops/elementwise.py: exp, log, erf, sqrt ... count a few FLOPs
FLOPS = {"pow": 1, "rsqrt": TRANSCENDENTAL, "sqrt": TRANSCENDENTAL, "exp": TRANSCENDENTAL, "log": TRANSCENDENTAL,
         "erf": TRANSCENDENTAL, "sin": TRANSCENDENTAL, "cos": TRANSCENDENTAL, "silu": TRANSCENDENTAL + 2,
         "mish": 2 * TRANSCENDENTAL + 2, "softplus": TRANSCENDENTAL + 1, "elu": TRANSCENDENTAL + 1,
         "selu": TRANSCENDENTAL + 2, "hardswish": 4, "hardsigmoid": 3, "hardtanh": 2, "relu6": 2, "clamp": 2,
         "where": 1, "masked_fill": 1, "reciprocal": 1}


def _fn_name(n) -> str:
    t = n.target
    name = t if isinstance(t, str) else getattr(t, "__name__", None) or str(t)
    name = str(name).split(".")[-2] if str(name).startswith("aten.") else str(name)
    return name.strip("_").replace("true", "").removeprefix("r") if name.startswith("__") else name.strip("_")


def _broadcast(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(1, rank + 1):
        dims = {s[-i] for s in shapes if len(s) >= i} - {1}
        if len(dims) > 1:
            raise Unmappable(f"operands {[list(s) for s in shapes]} do not broadcast per sample")
        out.append(dims.pop() if dims else 1)
    return tuple(reversed(out))


def elementwise(c, n, result, ia, ik, fn: str | None = None, flops: float | None = None, own_params=()):
    """A pointwise op over the activations among its operands (constants and parameters broadcast in);
    `flops` per output element (default: by the function's name, FLOPS); `own_params`: ids of a module's parameters."""
    if not isinstance(result, torch.Tensor):
        raise Unmappable("a pointwise op whose result is not one tensor")
    infos = list(_walk((ia, ik)))
    acts = [i for i in infos if isinstance(i, Act)]
    if not acts:
        raise Unmappable("no activation operand")
    fn = fn or _fn_name(n)
    name = c.layer_name(n)
    params = [p for p in [*own_params, *_params_of((ia, ik))] if p not in c.owner]
    fields = {"fn": fn[:40], "flops_per_element": float(FLOPS.get(fn, 1) if flops is None else flops)}
    if params:
        c.claim(name, params)
        fields["params"] = int(sum(c.param_numel.get(p, 0) for p in params))
    real = c.per_sample(result)
    if real is not None and all(a.real is not None for a in acts):
        if _broadcast([a.real for a in acts]) != real:
            return _grown(c, name, acts, real, result, fields)
        c.add("elementwise", name, list(dict.fromkeys(c.ensure(a) for a in acts)), **fields)
        return c.out_act(name, result)
    if all(a.real is None for a in acts) and len({a.shape for a in acts}) == 1 \
            and result.numel() == c.batch * math.prod(acts[0].shape):
        c.add("elementwise", name, list(dict.fromkeys(a.layer for a in acts)), **fields)
        return Act(name, acts[0].shape, None)
    if len(acts) == 1 and acts[0].real is None and result.dim() and result.shape[-1] == acts[0].shape[-1] \
            and result.numel() == c.batch * math.prod(acts[0].shape):
        c.add("elementwise", name, [acts[0].layer], **fields)
        return Act(name, acts[0].shape, None)
    raise Unmappable("operands with the batch dim folded differently")


def _grown(c, name, acts, real, result, fields):
    """A pointwise op whose constant operands broadcast the activation to a larger shape (a mask built from
    a [T] mask and a [T, T] one): costed as a pad to the output's shape (one read, one write)."""
    if len(acts) != 1 or fields.get("params") or len(acts[0].real) != len(real) \
            or any(i > o for i, o in zip(acts[0].real, real)):
        raise Unmappable("constant operands that grow the activation's shape")
    c.note("a pointwise op whose constant operand enlarges the activation (broadcast) costed as a pad")
    c.add("pad", name, [c.ensure(acts[0])], output_shape=list(real))
    return c.out_act(name, result)


def _h_elementwise(c, n, result, args, kwargs, ia, ik):
    return elementwise(c, n, result, ia, ik)


_on(operator.sub, operator.truediv, operator.neg, operator.pow, operator.isub, operator.itruediv,
    torch.sub, torch.div, torch.neg, torch.pow, torch.rsqrt, torch.sqrt, torch.exp, torch.log, torch.abs,
    torch.clamp, torch.where, torch.erf, torch.sin, torch.cos, torch.reciprocal, torch.square, torch.masked_fill,
    F.silu, F.hardtanh, F.relu6, F.hardswish, F.hardsigmoid, F.softplus, F.mish, F.elu, F.selu,
    "sub", "div", "neg", "pow", "rsqrt", "sqrt", "exp", "log", "abs", "clamp", "clamp_min", "clamp_max",
    "masked_fill", "masked_fill_", "erf", "sin", "cos", "reciprocal", "square", "__sub__", "__rsub__",
    "__truediv__", "__rtruediv__", "__neg__", "__pow__", "__rpow__", "sub_", "div_", "mul_", "clamp_",
    "where", "exp_", "pow_",
    *_aten("sub.Tensor", "div.Tensor", "neg.default", "pow.Tensor_Scalar", "pow.Tensor_Tensor", "rsqrt.default",
           "sqrt.default", "exp.default", "log.default", "abs.default", "clamp.default", "clamp_min.default",
           "hardtanh.default", "hardtanh_.default", "silu.default", "silu_.default", "where.self",
           "masked_fill.Scalar", "masked_fill.Tensor", "erf.default", "sin.default", "cos.default",
           "reciprocal.default", "rsub.Scalar", "add.Scalar", "mul.Scalar", "sub.Scalar", "div.Scalar",
           "hardswish.default", "hardsigmoid.default", "softplus.default", "mish.default", "elu.default",
           "square.default", "__and__.Tensor", "__or__.Tensor", "bitwise_and.Tensor", "bitwise_or.Tensor",
           "bitwise_not.default", "logical_and.default", "logical_or.default", "logical_not.default",
           "eq.Tensor", "eq.Scalar", "ne.Tensor", "ne.Scalar", "lt.Tensor", "lt.Scalar", "gt.Tensor", "gt.Scalar",
           "le.Scalar", "ge.Scalar", "masked_fill_.Scalar", "masked_fill_.Tensor", "copy_.default", "copy.default",
           "where.ScalarOther", "where.ScalarSelf"),
    operator.and_, operator.or_, operator.invert, operator.eq, operator.ne, operator.lt, operator.gt,
    "__and__", "__or__", "__invert__", "eq", "ne", "lt", "gt", "logical_not", "bool")(_h_elementwise)


@_on(torch.randn_like, torch.rand_like, torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like,
     "new_zeros", "new_ones", "new_full", "new_empty", "fill_", "zero_",
     *_aten("randn_like.default", "rand_like.default", "zeros_like.default", "ones_like.default",
            "empty_like.default", "full_like.default", "new_zeros.default", "new_ones.default", "new_full.default",
            "new_empty.default", "fill_.Tensor", "fill_.Scalar", "zero_.default"))
def _h_like(c, n, result, args, kwargs, ia, ik):
    """A new tensor shaped like an activation (noise, zeros): written once, reads nothing it needs."""
    return elementwise(c, n, result, ia[:1], {}, fn=_fn_name(n), flops=0.0)


@_on(*_aten("index_put_.default", "index_put.default"))
def _h_index_put(c, n, result, args, kwargs, ia, ik):
    """x[mask] = values (SpecAugment's learned mask embedding): a masked write over x, the values' parameters
    charged to it."""
    values = ia[2] if len(ia) > 2 and not isinstance(ia[2], Act) else Const(None)
    return elementwise(c, n, result, [ia[0], values], {}, fn="index_put")


@on_module_kind(lambda m: getattr(m, "perfmodel_kind", None) == "elementwise")
def _h_standin(c, n, result, args, kwargs, ia, ik):
    """perfmodel's own stand-in of the elementwise kind (torch/importer_kinds.py): the same layer back."""
    m = c.module_of(n)
    return elementwise(c, n, result, ia, ik, fn=m.fn, flops=m.flops_per_element,
                       own_params=tuple(id(p) for p in m.parameters()))


@_on_modules(nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.ELU, nn.SELU, nn.Softplus)
def _h_act_module(c, n, result, args, kwargs, ia, ik):
    return elementwise(c, n, result, ia, ik, fn=type(c.module_of(n)).__name__.lower())


@_on(F.pad, *_aten("pad.default", "constant_pad_nd.default"))
def _h_pad(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    real = c.per_sample(result)
    if a.real is None or real is None or len(real) != len(a.real) or any(o < i for o, i in zip(real, a.real)):
        raise Unmappable("padding that shrinks a dim or moves the batch dim")
    if _arg(args, kwargs, 2, "mode", "constant") != "constant":
        c.note("F.pad with a non-constant mode costed as a constant pad (one copy)")
    name = c.add("pad", c.layer_name(n), [c.ensure(a)], output_shape=list(real))
    return c.out_act(name, result)


def slice_of(c, n, a: Act, result, name: str | None = None) -> Act:
    """A slice layer giving `result` (a view, or a gather of at most `a`'s elements, that keeps the batch)."""
    real = c.per_sample(result)
    if a.real is None or real is None or not real:
        raise Unmappable("a slice that folds or drops the batch dim")
    if real == a.real:
        return Act(a.layer, a.shape, real, a.is_int, bdim=c.bdim_of(result) or 0)
    lname = c.add("slice", name or c.layer_name(n), [c.ensure(a)], output_shape=list(real))
    out = c.out_act(lname, result)
    out.is_int = a.is_int
    return out


@_on("narrow", torch.narrow, "index_select", torch.index_select, torch.gather, "gather",
     *_aten("slice.Tensor", "narrow.default", "slice_copy.Tensor", "index.Tensor", "index_select.default",
            "gather.default"))
def _h_slice(c, n, result, args, kwargs, ia, ik):
    return slice_of(c, n, _act(ia[0]), result)


@_on("chunk", "split", "unbind", "tensor_split", torch.chunk, torch.split, torch.unbind, torch.tensor_split,
     *_aten("split.Tensor", "split_with_sizes.default", "chunk.default", "unbind.int"))
def _h_split(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    base = c.layer_name(n)
    return Seq(tuple(slice_of(c, n, a, r, c.unique(f"{base}.{i}")) for i, r in enumerate(result)))


def getitem_slice(c, n, a: Act, idx, result):
    """x[...] with slices, ints and Ellipsis that keeps the batch dim: a slice (or a view)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    if not all(isinstance(i, (slice, int, type(Ellipsis), type(None))) for i in items):
        raise Unmappable(f"indexing with {idx!r}")
    return slice_of(c, n, a, result)


@_on(torch.addmm, "addmm", *_aten("addmm.default"))
def _h_addmm(c, n, result, args, kwargs, ia, ik):
    bias, x, w = ia[0], _act(ia[1]), ia[2]
    if not (isinstance(w, Const) and isinstance(bias, Const) and isinstance(w.value, torch.Tensor)):
        raise Unmappable("addmm whose matrix or bias depends on the inputs")
    if _arg(args, kwargs, 3, "beta", 1) != 1 or _arg(args, kwargs, 4, "alpha", 1) != 1:
        raise Unmappable("addmm with alpha or beta")
    name = c.layer_name(n)
    fields = {"units": int(w.value.shape[1]), "bias": True}
    shared = c.claim(name, set(w.params) | set(bias.params))
    if shared:
        fields["share_params_with"] = shared
    name = c.add("dense", name, [_rowwise_in(c, x, args[1])], **fields)
    return _rowwise_out(c, name, x, result)

