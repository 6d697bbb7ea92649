"""Standard modules kept whole under torch.export and the dispatch trace: `perfmodel::leaf` custom op.

fx keeps mapped modules as leaves itself. torch.export and make_fx have no leaves, and decompose
nn.MultiheadAttention, the recurrent modules and mixture-of-experts blocks into low-level ops (with the
batch folded, or a data-dependent loop over experts). While those tracers run, each such module's forward
is replaced by a call of one opaque custom op, `perfmodel::leaf(tensors, key)`: its real kernel runs the
module's own forward, its fake kernel returns tensors of the shapes recorded in an eager run beforehand.
The converter maps the op's node with the module's handler (see converter.leaf_call).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.utils import _pytree as pytree


@dataclass
class LeafCall:
    """One call signature of a leaf module: how to rebuild its arguments and output."""

    module: nn.Module
    path: str
    forward: Callable
    in_spec: Any
    leaves: list  # non-tensor leaves of (args, kwargs); tensors are None here
    out_spec: Any
    out_meta: list  # (shape, dtype) of each output tensor

    def rebuild(self, tensors):
        it = iter(tensors)
        flat = [next(it) if v is _TENSOR else v for v in self.leaves]
        return pytree.tree_unflatten(flat, self.in_spec)

    def run(self, tensors) -> list[torch.Tensor]:
        args, kwargs = self.rebuild(tensors)
        out = pytree.tree_leaves(self.forward(*args, **kwargs))
        return [o.clone() for o in out]  # a custom op may not return its inputs or views of them


_TENSOR = object()
CALLS: dict[int, LeafCall] = {}
_OP: list = []


def leaf_op():
    """The registered custom op (registered on first use)."""
    if not _OP:
        @torch.library.custom_op("perfmodel::leaf", mutates_args=())
        def leaf(xs: list[torch.Tensor], key: int) -> list[torch.Tensor]:
            return CALLS[key].run(xs)

        @leaf.register_fake
        def _(xs, key):
            return [torch.empty(s, dtype=d) for s, d in CALLS[key].out_meta]

        _OP.append(torch.ops.perfmodel.leaf.default)
    return _OP[0]


def _signature(args, kwargs) -> tuple:
    return tuple((tuple(x.shape), x.dtype) if isinstance(x, torch.Tensor) else ("v", repr(x)[:40])
                 for x in pytree.tree_leaves((args, kwargs)))


@contextlib.contextmanager
def leaves_replaced(model: nn.Module, is_leaf: Callable[[nn.Module], bool], run_eager: Callable[[], Any]):
    """Within the block, modules for which `is_leaf` holds call `perfmodel::leaf` instead of their forward."""
    paths = {id(m): p for p, m in model.named_modules(remove_duplicate=False)}
    chosen = [m for m in {id(m): m for m in model.modules()}.values() if m is not model and is_leaf(m)]
    chosen = [m for m in chosen if not any(o is not m and _contains(o, m) for o in chosen)]  # outermost only
    if not chosen:
        yield []
        return
    op = leaf_op()
    records: dict[tuple, tuple] = {}

    def hook(m, args, kwargs, out):
        leaves, spec = pytree.tree_flatten(out)
        if all(isinstance(x, torch.Tensor) for x in leaves):
            records[(id(m), _signature(args, kwargs))] = (spec, [(tuple(x.shape), x.dtype) for x in leaves])

    handles = [m.register_forward_hook(hook, with_kwargs=True) for m in chosen]
    try:
        with torch.no_grad():
            run_eager()
    finally:
        for h in handles:
            h.remove()
    for m in chosen:
        m.forward = _stand_in(m, paths.get(id(m), ""), type(m).forward.__get__(m), records, op)
    try:
        yield chosen
    finally:
        for m in chosen:
            m.__dict__.pop("forward", None)


def _contains(outer: nn.Module, inner: nn.Module) -> bool:
    return any(x is inner for x in outer.modules())


def _stand_in(m: nn.Module, path: str, forward: Callable, records: dict, op):
    def call(*args, **kwargs):
        rec = records.get((id(m), _signature(args, kwargs)))
        if rec is None:  # a call the eager run did not make: run it as it is
            return forward(*args, **kwargs)
        flat, in_spec = pytree.tree_flatten((args, kwargs))
        tensors = [x for x in flat if isinstance(x, torch.Tensor)]
        leaves = [_TENSOR if isinstance(x, torch.Tensor) else x for x in flat]
        key = len(CALLS)
        CALLS[key] = LeafCall(m, path, forward, in_spec, leaves, rec[0], rec[1])
        return pytree.tree_unflatten(list(op(tensors, key)), rec[0])

    return call
