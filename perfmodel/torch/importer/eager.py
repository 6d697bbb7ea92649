"""Eager trace: run the model once and record every torch function and tensor method it calls.

The fallback when fx, torch.export and the dispatch trace all fail (Python control flow on tensor values,
data-dependent loops). A TorchFunctionMode sees calls at the level of F.linear, torch.matmul and Tensor.view
(the level the handlers map), with real tensors, so every branch resolves as in this run. Modules that have a
handler are recorded whole (call_module nodes, through global module hooks); every node is tagged with the
path of the module that made it. The result is an fx GraphModule over the model, run again by the converter.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from .registry import keeps_whole, mapped_module_types


class _Recorder(TorchFunctionMode):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.graph = fx.Graph()
        self.nodes: dict[int, fx.Node] = {}
        self.keep: list = []  # tensors seen, kept alive so their ids stay unique
        self.paths = {id(m): p for p, m in model.named_modules(remove_duplicate=False)}
        self.attrs = {id(t): n for n, t in [*model.named_parameters(remove_duplicate=False),
                                            *model.named_buffers(remove_duplicate=False)]}
        self.stack: list[str] = []
        self.leaf: nn.Module | None = None

    def bind(self, t: torch.Tensor, node: fx.Node) -> None:
        self.nodes[id(t)] = node
        self.keep.append(t)

    def arg(self, v):
        if isinstance(v, torch.Tensor):
            if id(v) in self.nodes:
                return self.nodes[id(v)]
            if id(v) in self.attrs:
                node = self.graph.get_attr(self.attrs[id(v)])
                self.bind(v, node)
                return node
            return v  # a constant made outside the trace
        if isinstance(v, (list, tuple)):
            return type(v)(self.arg(x) for x in v)
        if isinstance(v, dict):
            return {k: self.arg(x) for k, x in v.items()}
        return v

    def record(self, op: str, target, args, kwargs, out) -> None:
        tensors = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if not tensors and op != "call_method":
            return
        node = self.graph.create_node(op, target, self.arg(tuple(args)), self.arg(dict(kwargs)))
        node.meta["perfmodel_module"] = self.stack[-1] if self.stack else ""
        self.bind_output(out, node)

    def bind_output(self, out, node: fx.Node) -> None:
        if isinstance(out, torch.Tensor):
            self.bind(out, node)
        elif isinstance(out, (list, tuple)):
            for i, x in enumerate(out):
                if isinstance(x, (torch.Tensor, list, tuple)):
                    self.bind_output(x, self.graph.call_function(operator.getitem, (node, i)))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.leaf is not None:
            return out
        name = getattr(func, "__name__", "")
        qual = getattr(func, "__qualname__", "")
        if name == "__get__" and hasattr(func, "__self__"):  # a property: x.T, x.shape
            self.record("call_function", getattr, (args[0], func.__self__.__name__), {}, out)
        elif name == "__getitem__":
            self.record("call_function", operator.getitem, args, kwargs, out)
        elif qual.startswith(("TensorBase.", "Tensor.")):
            self.record("call_method", name, args, kwargs, out)
        else:
            self.record("call_function", func, args, kwargs, out)
        return out

    # module hooks
    def pre(self, m, args, kwargs=None):
        self.stack.append(self.paths.get(id(m), self.stack[-1] if self.stack else ""))
        if self.leaf is None and self.stack[-1] and _is_leaf(m):
            self.leaf = m

    def post(self, m, args, *rest):
        out = rest[-1]
        kwargs = rest[0] if len(rest) == 2 else {}
        if self.leaf is m:
            self.leaf = None
            node = self.graph.call_module(self.stack[-1], self.arg(tuple(args)), self.arg(dict(kwargs or {})))
            node.meta["perfmodel_module"] = self.stack[-1]
            self.bind_output(out, node)
        if self.stack:
            self.stack.pop()


def _is_leaf(m: nn.Module) -> bool:
    return isinstance(m, mapped_module_types()) or keeps_whole(m)


def trace_eager(model: nn.Module, args: tuple, kwargs: dict, names: list[str]) -> tuple[fx.GraphModule, list]:
    """(GraphModule over `model`, its inputs in placeholder order) recorded from one eager run."""
    rec = _Recorder(model)
    flat, spec = pytree.tree_flatten((args, kwargs))
    inputs = [x for x in flat if isinstance(x, torch.Tensor)]
    for i, x in enumerate(inputs):
        rec.bind(x, rec.graph.placeholder(names[i] if i < len(names) else f"input_{i}"))
    h1 = nn.modules.module.register_module_forward_pre_hook(rec.pre)
    h2 = nn.modules.module.register_module_forward_hook(rec.post)
    try:
        with rec:
            out = model(*args, **kwargs)
    finally:
        h1.remove()
        h2.remove()
    from .trace import output_tensors

    rec.graph.output(tuple(rec.nodes.get(id(t)) for t in output_tensors(out) if id(t) in rec.nodes))
    return fx.GraphModule(model, rec.graph, type(model).__name__), inputs
