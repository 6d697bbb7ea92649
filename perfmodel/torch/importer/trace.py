"""Tracing a module: fx (mapped modules as leaves), torch.export, and where a node came from."""

from __future__ import annotations

import contextlib
import io
import math
import operator
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from .registry import mapped_module_types as _mapped_module_types

class _Tracer(fx.Tracer):
    """fx tracer that records, for every node, the module path it was created in."""

    def __init__(self, leaf_all_torch: bool, extra_leaves: tuple[type, ...] = ()):
        super().__init__()
        self.record_stack_traces = True
        self.leaf_all_torch = leaf_all_torch
        self.extra_leaves = extra_leaves
        self._path: list[str] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _mapped_module_types()) or isinstance(m, self.extra_leaves):
            return True
        if self.leaf_all_torch:
            return super().is_leaf_module(m, qualname)
        return False

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):  # the node names its module itself (node.target)
            return super().call_module(m, forward, args, kwargs)
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


def _trace(module: nn.Module, args: tuple, leaves: tuple[type, ...]) -> tuple[fx.GraphModule, str, list[str]]:
    with _no_mha_fastpath():
        return _trace_any(module, args, leaves)


def _trace_any(module: nn.Module, args: tuple, leaves: tuple[type, ...]) -> tuple[fx.GraphModule, str, list[str]]:
    errors: list[str] = []
    for leaf_all, label in ((False, "fx"), (True, "fx (all torch.nn modules as leaves)")):
        try:
            tracer = _Tracer(leaf_all, leaves)
            graph = tracer.trace(module)
            return fx.GraphModule(tracer.root, graph, type(module).__name__), label, errors
        except Exception as e:  # noqa: BLE001 - any tracing failure moves on to the next method
            errors.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(module, args, strict=False)
        return ep.module(), "export", errors
    except Exception as e:  # noqa: BLE001
        errors.append(f"export: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise RuntimeError("cannot trace the module: " + "; ".join(errors))


_TORCH_DIR = str(Path(torch.__file__).resolve().parent)
_BRIDGE_DIR = str(Path(__file__).resolve().parent.parent)  # perfmodel/torch: frames of the bridge itself


def _location(node: fx.Node) -> str:
    path = node.meta.get("perfmodel_module") or ""
    if not path and "nn_module_stack" in node.meta:  # torch.export keeps the module stack
        stack = list(node.meta["nn_module_stack"].values())
        path = stack[-1][0] if stack else ""
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
