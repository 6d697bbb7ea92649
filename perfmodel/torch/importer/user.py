"""A user's model by name ('package.module:factory' or 'path/file.py:factory') and its example inputs.

This deliberately imports and runs the user's own code: the module is imported (from the current
directory or sys.path) or the file executed, and `factory()` is called to build the model, exactly as if
the user ran it - it is the purpose of the command, so only name code you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ...errors import InputError, NotFoundError


DTYPES = {"float": torch.float32, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "int64": torch.int64, "int32": torch.int32, "bool": torch.bool}


def parse_input_shape(text: str) -> tuple[tuple[int, ...], str]:
    """'3x224x224' -> ((3, 224, 224), 'float'); '128:int64' -> ((128,), 'int64'); 'B' marks where the batch
    goes when it is not first ('35xB:int64' -> ((35, 'B'),...)). Shapes are per sample."""
    shape_s, _, dtype = text.partition(":")
    dtype = dtype.strip() or "float"
    if dtype not in DTYPES:
        raise InputError(f"input '{text}': dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    dims = [x.strip() for x in shape_s.replace(",", "x").split("x") if x.strip()]
    try:
        shape = tuple(d if d == "B" else int(d) for d in dims)
    except ValueError:
        raise InputError(f"input '{text}': expected a per-sample shape like 3x224x224, 128:int64 or 35xB:int64 "
                         f"(B: where the batch dim goes when it is not first)") from None
    if not [d for d in shape if d != "B"] or any(d != "B" and d <= 0 for d in shape) or shape.count("B") > 1:
        raise InputError(f"input '{text}': every dim must be a positive integer (and at most one B)")
    return shape, dtype


def example_tensor(text: str, batch: int, name: str = "") -> torch.Tensor:
    """A tensor for one input: random floats, zeros for ids (ones for masks), the batch where B is (or first)."""
    shape, dtype = parse_input_shape(text)
    full = tuple(batch if d == "B" else d for d in shape) if "B" in shape else (batch, *shape)
    dt = DTYPES[dtype]
    if dt.is_floating_point:
        return torch.randn(full, dtype=dt)
    if dt == torch.bool or "mask" in name:
        return torch.ones(full, dtype=dt)
    return torch.zeros(full, dtype=dt)


def load_factory(spec: str) -> Callable:
    """The callable (or module instance) named by 'package.module:factory' or 'path/file.py:factory'."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise InputError(f"expected MODULE:FACTORY or FILE.py:FACTORY (e.g. mypkg.models:build or models.py:build), "
                         f"got '{spec}'")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where)
        if not path.is_file():
            raise NotFoundError(f"model file '{where}' not found (from {Path.cwd()})")
        mspec = importlib.util.spec_from_file_location(path.stem, path)
        obj = importlib.util.module_from_spec(mspec)
        sys.modules.setdefault(path.stem, obj)
        folder = str(path.resolve().parent)  # the file's own imports of its neighbours resolve, as `python FILE`
        sys.path.insert(0, folder)
        try:
            _run_user(lambda: mspec.loader.exec_module(obj), f"running '{where}'")
        finally:
            sys.path.remove(folder)
    else:
        added = "" not in sys.path
        if added:
            sys.path.insert(0, "")  # the current directory, as `python -m` would see it
        try:
            obj = _run_user(lambda: importlib.import_module(where), f"importing '{where}'", where)
        finally:
            if added:
                sys.path.remove("")
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))
            raise NotFoundError(f"'{where}' has no '{attr}'; callables there: {', '.join(names[:20]) or 'none'}")
        obj = getattr(obj, part)
    return obj


def _run_user(fn, what: str, module_name: str | None = None):
    try:
        return fn()
    except ModuleNotFoundError as e:
        if module_name and (e.name == module_name or module_name.startswith(f"{e.name}.")):
            raise NotFoundError(f"module '{module_name}' not found (looked in {Path.cwd()} and sys.path); "
                                f"name a module on the path or a file: path/to/models.py:FACTORY") from None
        raise InputError(f"{what} failed: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's code: one line, not a traceback
        raise InputError(f"{what} failed: {type(e).__name__}: {e}") from None


def build_model(factory) -> tuple[nn.Module, tuple | None]:
    """Call the factory: it returns a module, or (module, example inputs)."""
    if isinstance(factory, nn.Module):
        return factory, None
    if not callable(factory):
        raise InputError(f"the factory is a {type(factory).__name__}, not a callable returning a torch.nn.Module")
    out = _run_user(factory, "calling the factory")
    example = None
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], nn.Module):
        out, example = out
    if not isinstance(out, nn.Module):
        raise InputError(f"the factory returned {type(out).__name__}, not a torch.nn.Module")
    return out, example


def check_inputs(model: nn.Module, args: tuple, kwargs: dict) -> None:
    """Raise a one-paragraph InputError when forward cannot take these inputs."""
    sig = inspect.signature(model.forward)
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        need = [p for p, v in sig.parameters.items()
                if v.default is v.empty and v.kind in (v.POSITIONAL_ONLY, v.POSITIONAL_OR_KEYWORD)]
        raise InputError(f"{type(model).__name__}.forward{sig} cannot take {len(args)} positional input(s)"
                         f"{' and ' + ', '.join(kwargs) if kwargs else ''}: {e}. It needs {len(need)} "
                         f"({', '.join(need) or 'none'}): give one --input-shape per positional input in order, "
                         f"or --input NAME=SHAPE for keyword inputs") from None
