"""Values flowing through the traced graph: activations, constants, containers, recurrent states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Unmappable(Exception):
    """Raised by a handler that cannot express the node; the node becomes a custom layer."""


@dataclass(eq=False)
class Act:
    """An activation: the output of graph layer `layer`.

    `real` is its true per-sample shape (the tensor is batch-leading) or None when the batch dim was
    folded into another dim; `shape` is the layer's per-sample output shape (they differ after views).
    """

    layer: str
    shape: tuple[int, ...]
    real: tuple[int, ...] | None
    is_int: bool = False
    _view: str | None = None  # reshape layer giving `real` (created on demand)
    transposed_of: "Act | None" = None  # set by permute/transpose: the activation before the view
    swaps_last_two: bool = False
    bdim: int = 0  # where the batch dim is in the real tensor (1 for sequence-first [T, B, ...] tensors)


@dataclass(eq=False)
class Const:
    """A value that does not depend on the inputs; `params` are ids of the nn.Parameters it derives from."""

    value: Any
    params: frozenset[int] = frozenset()


@dataclass(eq=False)
class Seq:
    items: tuple


@dataclass(eq=False)
class Dict_:
    items: dict


@dataclass(eq=False)
class RecState:
    """h_n (or c_n) of a recurrent layer: [layers*dirs, N, H]."""

    act: Act
    dirs: int


@dataclass(eq=False)
class LossVal:
    """A scalar loss (or arithmetic on losses)."""


def _walk(info):
    if isinstance(info, (Seq,)):
        for i in info.items:
            yield from _walk(i)
    elif isinstance(info, Dict_):
        for i in info.items.values():
            yield from _walk(i)
    elif isinstance(info, (list, tuple)):
        for i in info:
            yield from _walk(i)
    elif isinstance(info, dict):
        for i in info.values():
            yield from _walk(i)
    else:
        yield info


def _dynamic(info) -> bool:
    return any(isinstance(i, (Act, RecState, LossVal)) for i in _walk(info))


def _value(info):
    """The concrete value of a Const (recursively through containers)."""
    if isinstance(info, Const):
        return info.value
    if isinstance(info, (list, tuple)):
        return type(info)(_value(i) for i in info)
    if isinstance(info, dict):
        return {k: _value(v) for k, v in info.items()}
    return info


def _params_of(info) -> frozenset[int]:
    out: set[int] = set()
    for i in _walk(info):
        if isinstance(i, Const):
            out |= i.params
    return frozenset(out)
