"""Tracing a module: fx (mapped modules as leaves), torch.export, and where a node came from."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.fx as fx
from torch import nn

from torch.utils import _pytree as pytree

from .registry import keeps_whole
from .registry import mapped_module_types as _mapped_module_types
from .transformer import PLAIN_FORWARDS


class _Tracer(fx.Tracer):
    """fx tracer that records, for every node, the module path it was created in; mapped modules are leaves,
    and nn.Transformer{Encoder,Decoder}[Layer] run a plain forward without the inference fast path's checks."""

    def __init__(self, leaf_all_torch: bool, extra_leaves: tuple[type, ...] = ()):
        super().__init__()
        self.record_stack_traces = True
        self.leaf_all_torch = leaf_all_torch
        self.extra_leaves = extra_leaves
        self._path: list[str] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _mapped_module_types()) or isinstance(m, self.extra_leaves) or keeps_whole(m):
            return True
        if self.leaf_all_torch:
            return super().is_leaf_module(m, qualname)
        return False

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):  # the node names its module itself (node.target)
            return super().call_module(m, forward, args, kwargs)
        plain = PLAIN_FORWARDS.get(type(m))
        if plain is not None:
            forward = functools.partial(plain, m)
        self._path.append(path)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._path.pop()

    def create_node(self, *a, **kw):
        node = super().create_node(*a, **kw)
        node.meta["perfmodel_module"] = self._path[-1] if self._path else ""
        return node


@contextlib.contextmanager
def _no_mha_fastpath():
    """nn.TransformerEncoderLayer & co. branch on tensor properties to pick a fused inference kernel;
    with the fast path off, fx can trace through them (training never takes that path anyway)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):  # pragma: no cover - older torch
        yield
        return
    prev = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(prev)


@contextlib.contextmanager
def quiet():
    """Silence what tracers print (warnings, logging, graph dumps on stderr) while they run."""
    buf = io.StringIO()
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(buf), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


@dataclass
class Traced:
    """A traced graph, the tracer's name, the values to run it on (in placeholder order) and their names."""

    gm: fx.GraphModule
    method: str
    run_inputs: list
    input_names: list[str] | None = None
    prefix: str = ""  # module paths in the graph start with this (the flattening wrapper)


def error_line(label: str, e: BaseException) -> str:
    """One line for a tracing failure: the tracer, the exception type and its first line."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{label}: {type(e).__name__}: {first[:300]}"


def trace_fx(module: nn.Module, args: tuple, kwargs: dict, leaves: tuple[type, ...], leaf_all: bool = False) -> Traced:
    """fx symbolic trace; arguments that are not tensors (None masks, flags) and omitted defaults are concrete."""
    sig = inspect.signature(module.forward)
    bound = sig.bind(*args, **kwargs)
    concrete, run = {}, []
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            if bound.arguments.get(name):
                raise TypeError("fx cannot trace a forward called with *args/**kwargs")
            continue
        if name in bound.arguments and _has_tensor(bound.arguments[name]):
            run.append(bound.arguments[name])
        elif name in bound.arguments:
            concrete[name] = bound.arguments[name]
        elif p.default is not p.empty:
            concrete[name] = p.default
    tracer = _Tracer(leaf_all, leaves)
    with _no_mha_fastpath(), quiet():
        graph = tracer.trace(module, concrete_args=concrete or None)
    gm = fx.GraphModule(tracer.root, graph, type(module).__name__)
    return Traced(gm, "fx (all torch.nn modules as leaves)" if leaf_all else "fx", run)


def _has_tensor(v) -> bool:
    return any(isinstance(x, torch.Tensor) for x in pytree.tree_leaves(v))


def input_names(module: nn.Module, args: tuple, kwargs: dict) -> tuple[list[str], list]:
    """Names and values of the tensors among the inputs (forward's parameter names; dict keys; list indices)."""
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs).arguments
    except TypeError:
        bound = {**{f"input_{i}": a for i, a in enumerate(args)}, **kwargs}
    names, values = [], []
    first_dict = True
    for name, v in bound.items():
        if isinstance(v, dict) and not isinstance(v, torch.Tensor):
            for k, x in v.items():
                if isinstance(x, torch.Tensor):
                    names.append(str(k) if first_dict else f"{name}.{k}")
                    values.append(x)
            first_dict = False
        elif isinstance(v, torch.Tensor):
            names.append(name)
            values.append(v)
        else:
            for i, x in enumerate(pytree.tree_leaves(v)):
                if isinstance(x, torch.Tensor):
                    names.append(f"{name}_{i}")
                    values.append(x)
    return names, values


class _Flat(nn.Module):
    """Calls the model with its inputs rebuilt from a flat tuple of tensors; returns the output's tensors."""

    def __init__(self, model: nn.Module, args: tuple, kwargs: dict):
        super().__init__()
        self.model = model
        flat, self._spec = pytree.tree_flatten((args, kwargs))
        self._consts = [None if isinstance(x, torch.Tensor) else x for x in flat]
        self._is_t = [isinstance(x, torch.Tensor) for x in flat]

    def forward(self, *xs):
        it = iter(xs)
        flat = [next(it) if t else c for t, c in zip(self._is_t, self._consts)]
        args, kwargs = pytree.tree_unflatten(flat, self._spec)
        return tuple(output_tensors(self.model(*args, **kwargs)))


def output_tensors(obj, depth: int = 0, seen: set | None = None) -> list[torch.Tensor]:
    """Every tensor in a model's output: tuples, dicts, HF ModelOutput and cache objects (their attributes)."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth > 8 or id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
        return []
    seen.add(id(obj))
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        items = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, (nn.Module, type)) and not callable(obj):
        items = list(vars(obj).values())
    else:
        return []
    return [t for i in items for t in output_tensors(i, depth + 1, seen)]


def trace_export(module: nn.Module, args: tuple, kwargs: dict) -> Traced:
    """torch.export (non-strict) of the model wrapped to take and return flat tuples of tensors."""
    names, values = input_names(module, args, kwargs)
    flat = _Flat(module, args, kwargs)
    xs = tuple(x for x in pytree.tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor))
    with _no_mha_fastpath(), quiet():
        ep = torch.export.export(flat, xs, strict=False)
    return Traced(ep.module(), "export", list(xs), names if len(names) == len(xs) else None, "model.")


def trace_dispatch(module: nn.Module, args: tuple, kwargs: dict) -> Traced:
    """A dispatch-level trace of aten ops on the real inputs (make_fx, pre-dispatch): control flow, data-dependent
    shapes and Python side effects resolve as they do in this run. Module paths come from module hooks."""
    from torch.fx.experimental.proxy_tensor import make_fx

    names, values = input_names(module, args, kwargs)
    flat = _Flat(module, args, kwargs)
    xs = tuple(x for x in pytree.tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor))
    with _no_mha_fastpath(), quiet(), _record_paths(flat):
        gm = make_fx(flat, tracing_mode="real", pre_dispatch=True)(*xs)
    return Traced(gm, "dispatch trace", list(xs), names if len(names) == len(xs) else None, "model.")


def trace_eager(module: nn.Module, args: tuple, kwargs: dict) -> Traced:
    """Record the torch functions and methods of one eager run (see eager.py)."""
    from .eager import trace_eager as record

    names, _ = input_names(module, args, kwargs)
    with _no_mha_fastpath(), quiet():
        gm, inputs = record(module, args, kwargs, names)
    return Traced(gm, "eager trace", inputs, names if len(names) == len(inputs) else None)


@contextlib.contextmanager
def _record_paths(root: nn.Module):
    """While make_fx runs, tag every node it creates with the path of the innermost module running."""
    paths = {id(m): p for p, m in root.named_modules(remove_duplicate=False)}
    stack: list[str] = []

    def pre(m, args):
        stack.append(paths.get(id(m), stack[-1] if stack else ""))

    def post(m, args, out):
        if stack:
            stack.pop()

    h1 = nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = nn.modules.module.register_module_forward_hook(post)
    create = fx.Graph.create_node

    def create_node(self, *a, **kw):
        node = create(self, *a, **kw)
        node.meta["perfmodel_module"] = stack[-1] if stack else ""
        return node

    fx.Graph.create_node = create_node
    try:
        yield
    finally:
        fx.Graph.create_node = create
        h1.remove()
        h2.remove()


_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
_BRIDGE_DIR = str(Path(__file__).resolve().parent.parent)  # perfmodel/torch: frames of the bridge itself


def module_path(node: fx.Node) -> str:
    """The path of the module whose forward created `node` ('' at the top level)."""
    path = node.meta.get("perfmodel_module") or ""
    if not path and node.meta.get("nn_module_stack"):  # torch.export keeps the module stack
        stack = list(node.meta["nn_module_stack"].values())
        path = str(stack[-1][0]) if stack else ""
    return path


def _location(node: fx.Node) -> str:
    path = module_path(node)
    if node.op == "call_module":
        path = str(node.target)
    src = ""
    st = node.meta.get("stack_trace") or node.stack_trace
    if st:
        frames = [ln.strip() for ln in st.strip().splitlines() if ln.strip().startswith("File ")]
        user = [f for f in frames if _TORCH_DIR not in f and _BRIDGE_DIR not in f]  # innermost frame of the model
        if user:
            src = user[-1].replace("File ", "")
    parts = [f"module '{path}'" if path else "top-level forward", src]
    return ", ".join(p for p in parts if p)


def _target_name(node: fx.Node, root: nn.Module) -> str:
    if node.op == "call_module":
        return type(root.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    t = node.target
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or str(t)
    if mod and not str(t).startswith("aten."):
        return f"{mod}.{name}"
    return str(t)
