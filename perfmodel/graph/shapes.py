"""Shape inference: one registered rule per op kind, mapping per-sample input shapes to the output shape."""

from __future__ import annotations

import math
from typing import Callable

from ..errors import ShapeError
from . import spec as S

Shape = tuple[int, ...]
ShapeRule = Callable[[S.OpBase, list[Shape]], Shape]

SHAPE_RULES: dict[str, ShapeRule] = {}


def shape_rule(*kinds: str):
    """Register a shape rule for one or more op kinds."""

    def deco(fn: ShapeRule) -> ShapeRule:
        for k in kinds:
            SHAPE_RULES[k] = fn
        return fn

    return deco


def infer_shape(layer: S.OpBase, in_shapes: list[Shape]) -> Shape:
    """Output shape of `layer` given its inputs' shapes; raises ShapeError naming the layer."""
    rule = SHAPE_RULES.get(layer.op)  # type: ignore[attr-defined]
    if rule is None:  # pragma: no cover - every kind in spec has a rule (tested)
        raise ShapeError(f"no shape rule for op '{layer.op}'", where=f"layer '{layer.name}'")
    try:
        out = rule(layer, in_shapes)
    except ShapeError:
        raise
    except (ValueError, IndexError, ZeroDivisionError) as e:
        raise ShapeError(str(e), where=f"layer '{layer.name}' ({layer.op})") from None
    if any(d <= 0 for d in out):
        raise ShapeError(
            f"output shape {list(out)} has a non-positive dimension (input shapes {[list(s) for s in in_shapes]})",
            where=f"layer '{layer.name}' ({layer.op})",
        )
    return out


def _one(layer: S.OpBase, ins: list[Shape]) -> Shape:
    if len(ins) != 1:
        raise ValueError(f"expects exactly one input, got {len(ins)}")
    return ins[0]


def _rank(x: Shape, ranks: tuple[int, ...], what: str) -> None:
    if len(x) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ValueError(f"expects a per-sample input of rank {want} ({what}), got shape {list(x)}")


@shape_rule("input")
def _input(layer: S.Input, ins: list[Shape]) -> Shape:
    if ins:
        raise ValueError("an input layer takes no inputs")
    return tuple(layer.shape)


@shape_rule("dense")
def _dense(layer: S.Dense, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    if len(x) == 0:
        raise ValueError("expects at least a 1-d input")
    return x[:-1] + (layer.units,)


def conv_out(n: int, k: int, s: int, p: float, d: int) -> int:
    """Output length of a convolution along one axis (PyTorch's formula; p may be a half for 'same')."""
    return int((n + 2 * p - d * (k - 1) - 1) // s + 1)


def _ntuple(v, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, tuple) else (v,) * n


def _conv_pads(layer, n_spatial: int) -> tuple[float, ...]:
    """Padding per side per spatial axis. 'same' (stride 1 only, as in PyTorch) pads d*(k-1) in total,
    split unevenly for even kernels, so the output keeps the input's size; returned as the half."""
    if layer.padding == "valid":
        return (0,) * n_spatial
    if layer.padding == "same":
        if any(s != 1 for s in _ntuple(layer.stride, n_spatial)):
            raise ValueError(f"padding 'same' needs stride 1 (as in PyTorch), got stride {layer.stride}")
        ks, ds = _ntuple(layer.kernel, n_spatial), _ntuple(layer.dilation, n_spatial)
        return tuple(d * (k - 1) / 2 for k, d in zip(ks, ds))
    return _ntuple(layer.padding, n_spatial)


def _single(v) -> int:
    return v if isinstance(v, int) else v[0]


def _check_groups(layer, channels_in: int) -> None:
    """Refuses a grouped convolution whose input or output channels are not divisible by its groups."""
    if channels_in % layer.groups or layer.out_channels % layer.groups:
        raise ValueError(f"channels in ({channels_in}) and out ({layer.out_channels}) "
                         f"must be divisible by groups ({layer.groups})")


@shape_rule("conv2d")
def _conv2d(layer: S.Conv2d, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (3,), "[C, H, W]")
    c, h, w = x
    _check_groups(layer, c)
    (kh, kw), (sh, sw), (dh, dw) = S.pair(layer.kernel), S.pair(layer.stride), S.pair(layer.dilation)
    ph, pw = _conv_pads(layer, 2)
    return (layer.out_channels, conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw))


@shape_rule("conv1d")
def _conv1d(layer: S.Conv1d, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (2,), "[C, L]")
    c, n = x
    _check_groups(layer, c)
    p = _conv_pads(layer, 1)[0]
    return (layer.out_channels, conv_out(n, _single(layer.kernel), _single(layer.stride), p, _single(layer.dilation)))


@shape_rule("conv_transpose2d")
def _convt2d(layer: S.ConvTranspose2d, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (3,), "[C, H, W]")
    c, h, w = x
    _check_groups(layer, c)
    (kh, kw), (sh, sw), (dh, dw) = S.pair(layer.kernel), S.pair(layer.stride), S.pair(layer.dilation)
    (ph, pw), (oh, ow) = S.pair(layer.padding), S.pair(layer.output_padding)
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oh + 1
    wo = (w - 1) * sw - 2 * pw + dw * (kw - 1) + ow + 1
    return (layer.out_channels, ho, wo)


def pool_out(n: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """Output length of a pooling window along one axis (PyTorch's formula, dilation 1)."""
    if ceil_mode:
        o = math.ceil((n + 2 * p - k) / s) + 1
        if (o - 1) * s >= n + p:
            o -= 1
        return o
    return (n + 2 * p - k) // s + 1


@shape_rule("maxpool2d", "avgpool2d")
def _pool2d(layer: S.MaxPool2d, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (3,), "[C, H, W]")
    c, h, w = x
    kh, kw = S.pair(layer.kernel)
    sh, sw = S.pair(layer.stride if layer.stride is not None else layer.kernel)
    ph, pw = S.pair(layer.padding)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"padding {layer.padding} must be at most half the kernel {layer.kernel}")
    return (c, pool_out(h, kh, sh, ph, layer.ceil_mode), pool_out(w, kw, sw, pw, layer.ceil_mode))


@shape_rule("global_avgpool")
def _gap(layer, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (2, 3), "[C, L] or [C, H, W]")
    return (x[0],)


@shape_rule("batchnorm")
def _bn(layer, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (1, 2, 3), "[C], [C, L] or [C, H, W]")
    return x


@shape_rule("layernorm", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "dropout", "moe")
def _same(layer, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    if layer.op == "layernorm" and len(x) == 0:
        raise ValueError("expects at least a 1-d input")
    return x


@shape_rule("softmax")
def _softmax(layer: S.Softmax, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    if not -len(x) <= layer.axis < len(x):
        raise ValueError(f"axis {layer.axis} is out of range for shape {list(x)}")
    return x


@shape_rule("add", "mul")
def _elementwise(layer, ins: list[Shape]) -> Shape:
    if len(ins) < 2:
        raise ValueError(f"expects at least two inputs, got {len(ins)}")
    if layer.op == "mul" and len(ins) != 2:
        raise ValueError(f"expects exactly two inputs, got {len(ins)}")
    first = ins[0]
    for i, s in enumerate(ins[1:], 1):
        if s != first:
            raise ValueError(
                f"all inputs must have the same shape; input 0 is {list(first)} but input {i} is {list(s)}"
            )
    return first


@shape_rule("concat")
def _concat(layer: S.Concat, ins: list[Shape]) -> Shape:
    if len(ins) < 2:
        raise ValueError(f"expects at least two inputs, got {len(ins)}")
    r = len(ins[0])
    ax = layer.axis if layer.axis >= 0 else r + layer.axis
    if not 0 <= ax < r:
        raise ValueError(f"axis {layer.axis} is out of range for shape {list(ins[0])}")
    for i, s in enumerate(ins):
        if len(s) != r or any(a != b for j, (a, b) in enumerate(zip(s, ins[0])) if j != ax):
            raise ValueError(
                f"inputs must match except on axis {layer.axis}; input 0 is {list(ins[0])}, input {i} is {list(s)}"
            )
    total = sum(s[ax] for s in ins)
    return ins[0][:ax] + (total,) + ins[0][ax + 1:]


@shape_rule("flatten")
def _flatten(layer, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    return (math.prod(x),)


@shape_rule("reshape")
def _reshape(layer: S.Reshape, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    n = math.prod(x)
    target = list(layer.shape)
    if target.count(-1) > 1:
        raise ValueError(f"at most one -1 in shape {target}")
    if any(d == 0 or d < -1 for d in target):
        raise ValueError(f"shape {target} must hold positive sizes (or one -1)")
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        if n % known:
            raise ValueError(f"cannot reshape {list(x)} ({n} elements) to {target}")
        target[target.index(-1)] = n // known
    if math.prod(target) != n:
        raise ValueError(f"cannot reshape {list(x)} ({n} elements) to {list(layer.shape)}")
    return tuple(target)


@shape_rule("select")
def _select(layer: S.Select, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    ax = layer.axis if layer.axis >= 0 else len(x) + layer.axis
    if not 0 <= ax < len(x):
        raise ValueError(f"axis {layer.axis} is out of range for shape {list(x)}")
    if not -x[ax] <= layer.index < x[ax]:
        raise ValueError(f"index {layer.index} is out of range for axis {layer.axis} of size {x[ax]}")
    return x[:ax] + x[ax + 1:]


@shape_rule("embedding")
def _embedding(layer: S.Embedding, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    return x + (layer.dim,)


@shape_rule("positional_embedding")
def _posemb(layer: S.PositionalEmbedding, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (2,), "[T, D]")
    if x[0] > layer.max_len:
        raise ValueError(f"sequence length {x[0]} exceeds max_len {layer.max_len}")
    return x


@shape_rule("rnn", "lstm", "gru")
def _recurrent(layer: S._Recurrent, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (2,), "[T, F]")
    out = layer.hidden * (2 if layer.bidirectional else 1)
    return (x[0], out) if layer.return_sequences else (out,)


@shape_rule("attention")
def _attention(layer: S.Attention, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (2,), "[T, D]")
    if x[1] % layer.heads:
        raise ValueError(f"model width {x[1]} is not divisible by heads ({layer.heads})")
    return x


@shape_rule("matmul")
def _matmul(layer: S.MatMul, ins: list[Shape]) -> Shape:
    if len(ins) != 2:
        raise ValueError(f"expects exactly two inputs, got {len(ins)}")
    a, b = ins
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"expects inputs of rank >= 2, got {list(a)} and {list(b)}")
    if layer.transpose_b:
        b = b[:-2] + (b[-1], b[-2])
    if a[-1] != b[-2]:
        raise ValueError(f"inner dimensions differ: {list(a)} x {list(ins[1])} (transpose_b={layer.transpose_b})")
    if a[:-2] != b[:-2]:
        raise ValueError(f"batch dimensions differ: {list(a[:-2])} vs {list(b[:-2])}")
    return a[:-2] + (a[-2], b[-1])


@shape_rule("upsample")
def _upsample(layer: S.Upsample, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    _rank(x, (2, 3), "[C, L] or [C, H, W]")
    return (x[0],) + tuple(d * layer.scale for d in x[1:])


@shape_rule("softmax_cross_entropy", "mse", "bce")
def _loss(layer, ins: list[Shape]) -> Shape:
    x = _one(layer, ins)
    if len(x) == 0:
        raise ValueError("expects a non-scalar input")
    return (1,)


@shape_rule("custom")
def _custom(layer: S.Custom, ins: list[Shape]) -> Shape:
    if not ins:
        raise ValueError("expects at least one input")
    return tuple(layer.output_shape)


@shape_rule("elementwise")
def _broadcast(layer, ins: list[Shape]) -> Shape:
    """Inputs broadcast as in numpy (aligned on the last dim)."""
    if not ins:
        raise ValueError("expects at least one input")
    rank = max(len(s) for s in ins)
    out = []
    for i in range(1, rank + 1):
        dims = {s[-i] for s in ins if len(s) >= i} - {1}
        if len(dims) > 1:
            raise ValueError(f"inputs {[list(s) for s in ins]} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(reversed(out))


@shape_rule("pad", "slice")
def _resized(layer, ins: list[Shape]) -> Shape:
    x, out = _one(layer, ins), tuple(layer.output_shape)
    if layer.op == "pad" and (len(out) != len(x) or any(o < i for o, i in zip(out, x))):
        raise ValueError(f"cannot pad {list(x)} to {list(out)}")
    if layer.op == "slice" and math.prod(out) > math.prod(x):
        raise ValueError(f"a slice of {list(x)} cannot have shape {list(out)}")
    return out
