"""The PyTorch bridge - the only package of perfmodel that imports torch (lazily: importing this package
does not import torch; the first use of a name below does).

- to_module(graph) -> GraphModule, make_batch(graph, batch): run any layer graph in PyTorch
- from_module(module, example_inputs) -> (LayerGraph, ImportReport); import_module('pkg.mod:factory', ...)
- measure_training(...) -> Measurement; machine_info() (measure); the records and their JSONL storage:
  Measurement, append_jsonl / read_jsonl / load_measurements (records: torch-free)
- ddp: gloo all-reduce and process-contention microbenchmarks, DDP training workers (measure_ddp)
- quiet: waiting for an idle machine, and how much CPU other processes used meanwhile (torch-free)
- calibrate: the microbenchmarks of `perfmodel calibrate` (the fit is perfmodel.calibration)
It holds no suite and no statistics of predicted vs measured: those are perfmodel.validation.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_API = {
    "to_module": "to_module", "make_batch": "to_module", "GraphModule": "to_module",
    "from_module": "from_module", "import_module": "from_module", "ImportReport": "from_module",
    "UnmappedOp": "from_module",
    "measure_training": "measure", "machine_info": "measure",
    "Measurement": "records", "MachineInfo": "records", "LayerTiming": "records", "append_jsonl": "records",
    "read_jsonl": "records", "load_measurements": "records", "default_measurements_dir": "records",
    "default_measurements_path": "records", "JsonlError": "records",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'perfmodel.torch' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


class _Package(types.ModuleType):
    """Keeps `perfmodel.torch.to_module` / `.from_module` the functions: importing the submodules of the
    same names would otherwise rebind those package attributes to the submodules. (The submodules stay
    importable: `from perfmodel.torch.to_module import GraphModule`.)"""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _API.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
