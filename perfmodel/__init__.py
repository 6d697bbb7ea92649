"""perfmodel: an analytical performance model for deep-learning training and serving.

    import perfmodel
    p = perfmodel.predict("resnet50", "v100-sxm2", batch=64)
    p.iteration_time_s, p.breakdown, p.memory.fits

The core imports only the standard library, numpy, pydantic, networkx and pyyaml; torch and plotly
are imported lazily by the parts that need them. Names below are loaded on first use, so
`import perfmodel` (and `perfmodel --help`) stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "predict": "perfmodel.prediction",
    "load_network": "perfmodel.graph.io",
    "save_network": "perfmodel.graph.io",
    "builtin_networks": "perfmodel.graph.io",
    "NetworkBuilder": "perfmodel.graph.io",
    "LayerGraph": "perfmodel.graph.layer_graph",
    "load_hardware": "perfmodel.hardware.loader",
    "list_hardware": "perfmodel.hardware.loader",
    "builtin_hardware": "perfmodel.hardware.loader",
    "network_summary": "perfmodel.summary",
    "Prediction": "perfmodel.result",
    "LayerRow": "perfmodel.result",
    "MemoryFootprint": "perfmodel.result",
    "PerfModelError": "perfmodel.errors",
    "NetworkError": "perfmodel.errors",
    "ShapeError": "perfmodel.errors",
    "HardwareError": "perfmodel.errors",
    "NotFoundError": "perfmodel.errors",
    "InputError": "perfmodel.errors",
    # capacity planning (issue 5)
    "sweep": "perfmodel.sweeps",
    "SweepResult": "perfmodel.sweeps",
    "fit": "perfmodel.planning",
    "compare": "perfmodel.planning",
    "time_to_train": "perfmodel.planning",
    "serve": "perfmodel.serving",
    "write_report": "perfmodel.report.html",
    "plan_search": "perfmodel.planning.search",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'perfmodel' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from .errors import HardwareError, InputError, NetworkError, NotFoundError, PerfModelError, ShapeError
    from .graph.io import NetworkBuilder, builtin_networks, load_network, save_network
    from .graph.layer_graph import LayerGraph
    from .hardware.loader import builtin_hardware, list_hardware, load_hardware
    from .prediction import predict
    from .result import LayerRow, MemoryFootprint, Prediction
    from .summary import network_summary
