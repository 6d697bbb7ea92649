"""Entry points: from_module (trace and convert), import_module (a user's factory to a network file)."""

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

from ...graph.layer_graph import LayerGraph
from ...graph.network_file import validate_op
from . import functions, modules  # noqa: F401  (registers the handlers)
from .converter import _Converter
from .report import ImportReport
from .trace import _no_mha_fastpath, _trace
from .values import _walk

def _finish(specs: list[dict]) -> list[dict]:
    """Drop unused inputs; fold `select(axis 0, index -1)` of a recurrent layer's sequence (its only user)
    into the layer as return_sequences=False."""
    users: dict[str, list[dict]] = {}
    for s in specs:
        for i in s.get("inputs", []):
            users.setdefault(i, []).append(s)
    by_name = {s["name"]: s for s in specs}
    rename: dict[str, str] = {}
    drop: set[str] = set()
    for s in specs:
        if s["op"] == "select" and s.get("axis") == 0 and s.get("index") == -1:
            src = by_name[s["inputs"][0]]
            if (src["op"] in ("rnn", "lstm", "gru") and src.get("return_sequences", True)
                    and len(users[src["name"]]) == 1):
                src["return_sequences"] = False
                rename[s["name"]] = src["name"]
                drop.add(s["name"])
    out = []
    for s in specs:
        if s["name"] in drop:
            continue
        if s["op"] == "input" and s["name"] not in users:
            continue
        if "inputs" in s:
            s["inputs"] = [rename.get(i, i) for i in s["inputs"]]
        out.append(s)
    return out


# ----------------------------------------------------------------------------------------------------------
# entry points


def _as_args(example_inputs) -> tuple:
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def _batch_of(args: tuple) -> int:
    for x in _walk(list(args)):
        if isinstance(x, torch.Tensor) and x.dim() >= 1:
            return int(x.shape[0])
    raise ValueError("from_module: the example inputs hold no tensor with a batch dim")


def from_module(module: nn.Module, example_inputs, *, name: str | None = None,
                leaf_modules: tuple[type, ...] = ()) -> tuple[LayerGraph, ImportReport]:
    """Trace `module` on `example_inputs` (a tensor, a tuple of positional args, or a dict as one arg) and
    return its LayerGraph and an ImportReport (unmapped ops, approximations, parameter totals).

    `leaf_modules`: extra module classes to keep whole (they become custom layers with measured FLOPs).
    """
    from ...ops import op_cost

    args = _as_args(example_inputs)
    batch = _batch_of(args)
    gm, method, errors = _trace(module, args, tuple(leaf_modules))
    conv = _Converter(gm, module, batch)
    buf = io.StringIO()
    try:
        with torch.no_grad(), contextlib.redirect_stderr(buf), _no_mha_fastpath():
            conv.run(*args)
    except Exception as e:
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        raise RuntimeError(f"from_module: running the traced model on the example inputs failed: {tb}") from e
    specs = _finish(conv.specs)
    gname = name or type(module).__name__
    graph = LayerGraph(gname, [validate_op(s, f"layer '{s['name']}'") for s in specs],
                       description=f"imported from PyTorch ({type(module).__module__}.{type(module).__qualname__}) "
                                   f"by perfmodel.torch.from_module ({method})")
    used = {l.name for l in graph.layers}
    unmapped = tuple(u for u in conv.unmapped if u.layer in used)
    params_graph = sum(op_cost(l, 1, 4).params for l in graph.layers)
    params_module = sum(p.numel() for p in {id(p): p for p in module.parameters() if p.requires_grad}.values())
    report = ImportReport(
        name=gname, method=method, batch=batch, layers=len(graph), unmapped=unmapped,
        approximations=tuple(conv.approx), trace_errors=tuple(errors), params_module=params_module,
        params_graph=params_graph,
    )
    return graph, report


def parse_input_shape(text: str) -> tuple[tuple[int, ...], str]:
    """'3x224x224' -> ((3, 224, 224), 'float'); '128:int64' -> ((128,), 'int64'). Shapes are per sample."""
    shape_s, _, dtype = text.partition(":")
    dtype = dtype.strip() or "float"
    if dtype not in ("float", "int64"):
        raise ValueError(f"input '{text}': dtype must be float or int64, got '{dtype}'")
    try:
        shape = tuple(int(x) for x in shape_s.replace(",", "x").split("x") if x.strip())
    except ValueError:
        raise ValueError(f"input '{text}': expected a per-sample shape like 3x224x224 or 128:int64") from None
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input '{text}': every dim must be a positive integer")
    return shape, dtype


def import_module(spec: str, input_shapes: list[str], out: Path | str, *, batch: int = 3,
                  name: str | None = None) -> tuple[LayerGraph, ImportReport]:
    """Import the user's model 'package.module:factory', trace it and save its graph as YAML/JSON at `out`.

    This deliberately imports and runs the user's own code: `package.module` is imported (from the
    current directory or sys.path) and `factory()` is called to build the model, exactly as if the
    user ran it - it is the purpose of the command, so only name code you trust. `input_shapes` are
    per-sample shapes, one per positional input of forward ('3x224x224', '128:int64' for token ids,
    which are zeros); the example batch is `batch` (3 by default, to tell the batch dim apart).
    """
    import importlib
    import sys

    from ...graph import save_network

    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ValueError(f"expected 'package.module:factory', got '{spec}'")
    added = "" not in sys.path
    if added:
        sys.path.insert(0, "")  # the current directory, as `python -m` would see it
    try:
        module_obj = importlib.import_module(mod_name)
    finally:
        if added:
            sys.path.remove("")
    factory = module_obj
    for part in attr.split("."):
        factory = getattr(factory, part)
    model = factory() if not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise TypeError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    args = []
    for s in input_shapes:
        shape, dtype = parse_input_shape(s)
        if dtype == "int64":
            args.append(torch.zeros((batch, *shape), dtype=torch.int64))
        else:
            args.append(torch.randn((batch, *shape)))
    graph, report = from_module(model, tuple(args), name=name or attr)
    save_network(graph, out, flat=True)
    return graph, report
