"""Entry points: from_module (trace and convert), import_module (a user's factory to a network file)."""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...errors import InputError
from ...graph.layer_graph import LayerGraph
from ...graph.network_file import validate_op
from . import elementwise, functions, modules, moe  # noqa: F401  (registers the handlers)
from .converter import _Converter
from .report import ImportReport
from .leaf import CALLS, leaves_replaced
from .registry import export_leaf
from .trace import Traced, _no_mha_fastpath, error_line, quiet, trace_dispatch, trace_eager, trace_export, trace_fx
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


@contextlib.contextmanager
def _no_layerdrop(module: nn.Module, notes: list[str]):
    """LayerDrop skips whole layers at random in training (a branch on a random number no tracer can
    follow); every layer is kept and costed (the expected cost is (1 - p) of it)."""
    saved = []
    for obj in {id(o): o for m in module.modules() for o in (m, getattr(m, "config", None)) if o is not None}.values():
        for attr in [k for k in vars(obj) if "layerdrop" in k and isinstance(vars(obj)[k], float)]:
            if getattr(obj, attr) > 0:
                saved.append((obj, attr, getattr(obj, attr)))
    for obj, attr, p in saved:
        object.__setattr__(obj, attr, 0.0) if isinstance(obj, nn.Module) else setattr(obj, attr, 0.0)
        notes.append(f"LayerDrop ({attr}={p}) not applied: every layer is costed")
    try:
        yield
    finally:
        for obj, attr, p in saved:
            object.__setattr__(obj, attr, p) if isinstance(obj, nn.Module) else setattr(obj, attr, p)


def _tracers(module: nn.Module, args: tuple, kwargs: dict, leaves: tuple[type, ...]):
    """(label, thunk) for each tracing method, in the order tried."""
    yield "fx", lambda: trace_fx(module, args, kwargs, leaves)
    yield "export", lambda: trace_export(module, args, kwargs)
    yield "dispatch trace", lambda: trace_dispatch(module, args, kwargs)
    yield "eager trace", lambda: trace_eager(module, args, kwargs)
    yield "fx (all torch.nn modules as leaves)", lambda: trace_fx(module, args, kwargs, leaves, leaf_all=True)


def _convert(traced: Traced, module: nn.Module, batch: int) -> _Converter:
    conv = _Converter(traced.gm, module, batch, traced.input_names, traced.prefix)
    try:
        with torch.no_grad(), quiet(), _no_mha_fastpath():
            conv.run(*traced.run_inputs)
    except Exception as e:
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        raise RuntimeError(f"running the traced model on the example inputs failed: {tb}") from e
    return conv


def _trace_and_convert(module, args, kwargs, batch, leaves, progress) -> tuple[_Converter, str, list[str]]:
    try:  # the model itself must run on these inputs: say so plainly, before any tracer tries
        with torch.no_grad(), quiet(), _no_mha_fastpath():
            module(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the user's model, any error
        first = (str(e).strip().splitlines() or [""])[0][:400]
        raise RuntimeError(f"the model fails on these example inputs: {type(e).__name__}: {first}") from None
    errors: list[str] = []
    for label, thunk in _tracers(module, args, kwargs, leaves):
        if progress:
            progress(f"tracing with {label} ...")
        try:
            if label in ("export", "dispatch trace"):
                with leaves_replaced(module, export_leaf, lambda: module(*args, **kwargs)):
                    traced = thunk()
                    conv = _convert(traced, module, batch)
            else:
                traced = thunk()
                conv = _convert(traced, module, batch)
            return conv, traced.method, errors
        except Exception as e:  # noqa: BLE001 - any failure moves on to the next method
            errors.append(error_line(label, e))
    raise RuntimeError("cannot trace the module: " + "; ".join(errors))


def from_module(module: nn.Module, example_inputs=(), *, kwargs: dict | None = None, batch: int | None = None,
                name: str | None = None, leaf_modules: tuple[type, ...] = (),
                progress: Callable[[str], None] | None = None) -> tuple[LayerGraph, ImportReport]:
    """Trace `module` on `example_inputs` (a tensor, a tuple of positional args, or a dict as one arg) and
    keyword inputs `kwargs`; return its LayerGraph and an ImportReport (custom layers, approximations,
    parameter totals). `batch`: the example batch size (default: dim 0 of the first tensor); a tensor whose
    dim 1 is the batch (token ids [T, B]) makes the model sequence-first. Tracers are tried in the order fx,
    torch.export, dispatch trace, fx with every torch.nn module a leaf; the first that converts is used.

    `leaf_modules`: extra module classes to keep whole (they become custom layers with measured FLOPs).
    `progress`: called with a line before each tracing attempt.
    """
    import time

    from ...ops import op_cost

    t0 = time.perf_counter()
    args, kwargs = _as_args(example_inputs), dict(kwargs or {})
    batch = batch or _batch_of(args + tuple(kwargs.values()))
    notes: list[str] = []
    try:
        with _no_layerdrop(module, notes):
            conv, method, errors = _trace_and_convert(module, args, kwargs, batch, tuple(leaf_modules), progress)
    finally:
        CALLS.clear()
    specs = _finish(conv.specs)
    gname = name or type(module).__name__
    graph = LayerGraph(gname, [validate_op(s, f"layer '{s['name']}'") for s in specs],
                       description=f"imported from PyTorch ({type(module).__module__}.{type(module).__qualname__}) "
                                   f"by perfmodel.torch.from_module ({method})")
    used = {l.name for l in graph.layers}
    unmapped = tuple(u for u in conv.unmapped if u.layer in used)
    costs = {l.name: op_cost(l, 1, 4) for l in graph.layers}
    params_module = sum(p.numel() for p in {id(p): p for p in module.parameters() if p.requires_grad}.values())
    kinds: dict[str, int] = {}
    for l in graph.layers:
        kinds[l.op] = kinds.get(l.op, 0) + 1
    report = ImportReport(
        name=gname, method=method, batch=batch, layers=len(graph), unmapped=unmapped,
        approximations=tuple(notes + conv.approx), trace_errors=tuple(errors), params_module=params_module,
        params_graph=sum(c.params for c in costs.values()), kinds=kinds,
        import_time_s=round(time.perf_counter() - t0, 3), warnings=_warnings(graph, unmapped),
    )
    return graph, report


def _warnings(graph, unmapped) -> tuple[str, ...]:
    from ...ops.layout import free_custom_layers

    out = free_custom_layers(graph)
    out += [f"standard module {u.target} at layer '{u.layer}' stayed opaque: {u.reason}" for u in unmapped
            if u.standard]
    return tuple(out)


def import_module(spec: str, input_shapes: list[str] = (), out: Path | str | None = None, *, batch: int = 3,
                  name: str | None = None, inputs: list[str] = (),
                  progress: Callable[[str], None] | None = None) -> tuple[LayerGraph, ImportReport]:
    """Import the user's model 'package.module:factory' (or 'file.py:factory'), trace it and save its graph as
    YAML/JSON at `out` (when given). See perfmodel.torch.importer.user for what runs.

    `input_shapes`: per-sample shapes, one per positional input of forward ('3x224x224'; '128:int64' for
    token ids; 'B' where the batch goes when not first: '35xB:int64'); `inputs`: keyword inputs
    'NAME=SHAPE[:dtype]'. With neither, a factory returning (model, example_inputs) supplies them.
    """
    from ...graph import save_network
    from .user import build_model, check_inputs, example_tensor, load_factory

    model, example = build_model(load_factory(spec))
    kwargs = {}
    for item in inputs:
        key, sep, shape = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--input '{item}': expected NAME=SHAPE[:dtype], e.g. attention_mask=128:int64")
        kwargs[key.strip()] = example_tensor(shape, batch, key.strip())
    if input_shapes or kwargs or example is None:
        args = tuple(example_tensor(s, batch) for s in input_shapes)
        bsize = batch
    elif isinstance(example, dict):  # keyword inputs
        args, kwargs, bsize = (), example, None
    else:
        args, bsize = _as_args(example), None
    check_inputs(model, args, kwargs)
    graph, report = from_module(model, args, kwargs=kwargs, batch=bsize,
                                name=name or spec.rpartition(":")[2].split(".")[-1], progress=progress)
    if out is not None:
        save_network(graph, out, flat=True)
    return graph, report
