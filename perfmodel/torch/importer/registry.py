"""Handler registries (by module class, function, tensor method, aten op) and helpers handlers share."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from .values import Act, Unmappable
from ..to_module import CustomStandIn, PositionalEmbedding, TransposedLinear


Handler = Callable[..., Any]
_MODULE_HANDLERS: dict[type, Handler] = {}
_BRIDGE_HANDLERS: dict[type, Handler] = {}
_FUNCTION_HANDLERS: dict[Any, Handler] = {}
_PREDICATE_HANDLERS: list[tuple[Callable[[nn.Module], bool], Handler]] = []  # modules recognised by structure


def on_module_kind(predicate: Callable[[nn.Module], bool]):
    """Register a handler for modules recognised by their structure (e.g. mixture-of-experts blocks)."""

    def deco(fn):
        _PREDICATE_HANDLERS.append((predicate, fn))
        return fn

    return deco


def predicate_handler(m: nn.Module) -> Handler | None:
    for pred, h in _PREDICATE_HANDLERS:
        if pred(m):
            return h
    return None


def keeps_whole(m: nn.Module) -> bool:
    """Modules that a structure handler maps as a whole (fx keeps them as leaves)."""
    return predicate_handler(m) is not None


def export_leaf(m: nn.Module) -> bool:
    """Modules kept whole under torch.export and the dispatch trace (see leaf.py): attention, recurrent
    layers and structure-recognised blocks, which those tracers would decompose beyond recognition."""
    return type(m) in (nn.MultiheadAttention, nn.RNN, nn.LSTM, nn.GRU) or keeps_whole(m)


def _on_modules(*classes):
    def deco(fn):
        for c in classes:
            _MODULE_HANDLERS[c] = fn
        return fn

    return deco


def _on(*targets):
    """Register a handler for functions (objects) and tensor methods ('name' strings)."""

    def deco(fn):
        for t in targets:
            _FUNCTION_HANDLERS[("method", t) if isinstance(t, str) else t] = fn
        return fn

    return deco


def _aten(*names):
    out = []
    for nm in names:
        packet, _, overload = nm.partition(".")
        p = getattr(torch.ops.aten, packet, None)
        if p is not None:
            o = getattr(p, overload or "default", None)
            if o is not None:
                out.append(o)
    return out


def _arg(args, kwargs, i: int, name: str, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _act(info, what: str = "input") -> Act:
    if isinstance(info, Act):
        return info
    raise Unmappable(f"its {what} is not an activation of the batch")


def _real(a: Act) -> tuple[int, ...]:
    if a.real is None:
        raise Unmappable("its input has the batch dim folded into another dim")
    return a.real


def _sample_axis(dim: int, rank_with_batch: int, bdim: int = 0) -> int:
    """A dim of the tensor as a per-sample axis (the batch dim, at `bdim`, is not allowed)."""
    d = dim if dim >= 0 else rank_with_batch + dim
    if d == bdim:
        raise Unmappable("it works across the batch dim")
    return d if d < bdim else d - 1


def _rowwise_in(c: _Converter, a: Act, tensor) -> str:
    """Input of a row-wise op (one that acts on the last dim). An activation whose batch dim was folded
    into another dim keeps its layer, provided the last dim is the same."""
    if a.real is None:
        if not isinstance(tensor, torch.Tensor) or tensor.shape[-1] != a.shape[-1]:
            raise Unmappable("its input has the batch dim folded into another dim")
        return a.layer
    return c.ensure(a)


def _rowwise_out(c: _Converter, name: str, a: Act, result) -> Act:
    real = c.per_sample(result) if a.real is not None else None
    return Act(name, c.shapes[name], real, bdim=c.bdim_of(result) or 0)


def _simple(op: str, **fixed):
    """Handler for a shape-preserving one-input op (activations, dropout)."""

    def h(c: _Converter, n, result, args, kwargs, ia, ik):
        a = _act(ia[0] if ia else next(iter(ik.values())))
        x = args[0] if args else next(iter(kwargs.values()))
        fields = {k: (v(args, kwargs) if callable(v) else v) for k, v in fixed.items()}
        name = c.add(op, c.layer_name(n), [_rowwise_in(c, a, x)], **fields)
        return _rowwise_out(c, name, a, result)

    return h


def mapped_module_types() -> tuple[type, ...]:
    """Module classes that have a handler (kept whole by the fx tracer)."""
    return tuple(_MODULE_HANDLERS) + (PositionalEmbedding, TransposedLinear, CustomStandIn)


def _flatten(c, n, a_info, start, end, result):
    a = _act(a_info)
    real = c.per_sample(result)
    if real is None:  # the batch dim was folded (e.g. before a loss)
        return _view(c, n, a, result)
    rank = len(a.real) + 1 if a.real is not None else None
    end_n = end if end >= 0 else (rank + end if rank else end)
    if start == 1 and rank is not None and end_n == rank - 1:
        if len(a.real) == 1:
            return Act(c.ensure(a), a.real, a.real, a.is_int)
        if a.shape == real and a.real is not None:
            return Act(a.layer, a.shape, real, a.is_int)
        name = c.add("flatten", c.layer_name(n), [c.ensure(a)])
        return Act(name, real, real)
    return _view(c, n, a, result)


def _view(c, n, a: Act, result):
    """A view or reshape: the same layer with a new true shape (a reshape layer is added on demand)."""
    real = c.per_sample(result)
    if real is None:
        if a.real is None:
            return a
        return Act(c.ensure(a), a.real, None, a.is_int)
    if a.real is None and math.prod(real) != math.prod(a.shape):
        raise Unmappable("a reshape that moves data across the batch dim")
    return Act(a.layer, a.shape, real, a.is_int, bdim=c.bdim_of(result) or 0)
