"""Loading and saving networks (YAML or JSON, safe loading only), the built-in zoo, and a builder API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import datafile
from ..datafile import file_exists, is_data_file
from ..errors import NetworkError, NotFoundError, PerfModelError, format_pydantic_error
from ..paths import data_dir, resolve_builtin
from .layer_graph import LayerGraph
from .network_file import NetworkFile, expand_network, validate_op
from .spec import OP_CLASSES

_SUFFIXES = (".yaml", ".yml", ".json")


def read_data_file(path: str | Path, error_cls: type[PerfModelError] = NetworkError) -> Any:
    """Parse a YAML or JSON file safely (see perfmodel.datafile); errors are `error_cls` naming the file."""
    return datafile.read_data_file(path, error_cls)


def builtin_networks() -> dict[str, Path]:
    """Built-in network names (file stems) -> files."""
    d = data_dir("networks")
    return {p.stem: p for p in sorted(d.iterdir()) if p.suffix in _SUFFIXES} if d else {}


def load_network(name_or_path: str | Path | LayerGraph) -> LayerGraph:
    """Load a network from a built-in name (e.g. 'resnet50') or a YAML/JSON file path."""
    if isinstance(name_or_path, LayerGraph):
        return name_or_path
    p = Path(name_or_path)
    if is_data_file(p) or file_exists(p, NetworkError):
        if not file_exists(p, NetworkError):
            raise NotFoundError(f"no such network file '{p}'")
        return network_from_dict(read_data_file(p), file=str(p), origin=str(p))
    return network_from_dict(read_data_file(resolve_builtin(str(name_or_path), builtin_networks(), "network")),
                             file=None, origin=str(name_or_path), builtin=True)


def network_from_dict(data: Any, *, file: str | None = None, origin: str | None = None,
                      builtin: bool = False) -> LayerGraph:
    """Validate a parsed network description and build its LayerGraph."""
    label = file or (f"built-in network '{origin}'" if builtin else None)
    if not isinstance(data, dict):
        raise NetworkError(f"expected a mapping with 'name' and 'layers', got {type(data).__name__}", file=label)
    try:
        nf = NetworkFile.model_validate(data)
    except ValidationError as e:
        raise NetworkError(format_pydantic_error(e), file=label) from None
    try:
        specs = expand_network(nf)
        return LayerGraph(nf.name, specs, description=nf.description, source=nf.source, file=nf, origin=origin)
    except PerfModelError as e:
        raise e.with_file(label) if label else e


def network_to_dict(graph: LayerGraph, *, flat: bool = False) -> dict[str, Any]:
    """The file form of a graph: its original description (with blocks) or, if flat, every layer."""
    if graph.file is not None and not flat:
        return graph.file.model_dump(mode="json", exclude_defaults=True)
    out: dict[str, Any] = {"name": graph.name}
    if graph.description:
        out["description"] = graph.description
    if graph.source:
        out["source"] = graph.source
    out["layers"] = [
        {"op": s.op, **s.model_dump(mode="json", exclude_defaults=True, exclude={"op"})} for s in graph.specs
    ]
    return out


def save_network(graph: LayerGraph, path: str | Path, *, flat: bool = False) -> Path:
    """Write a graph to YAML or JSON (by suffix); loading it back gives an equal graph."""
    p = Path(path)
    data = network_to_dict(graph, flat=flat)
    if p.suffix == ".json":
        p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    else:
        import yaml

        p.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110), encoding="utf-8")
    return p


class NetworkBuilder:
    """Build a LayerGraph in Python: `b.conv2d("c1", out_channels=64, kernel=3)` returns the layer name.

    Every op kind is a method named after it; `inputs` defaults to the previous layer.
    """

    def __init__(self, name: str, description: str = ""):
        self.name = name
        self.description = description
        self._specs: list = []

    def layer(self, op: str, name: str, **fields: Any) -> str:
        """Append a layer of kind `op`; returns its name. (`b.add(...)` is the elementwise-add op.)"""
        raw = {"op": op, "name": name, **fields}
        if "inputs" not in raw and op != "input":
            if not self._specs:
                raise NetworkError("has no input: add an input layer first", where=f"layer '{name}'")
            raw["inputs"] = [self._specs[-1].name]
        self._specs.append(validate_op(raw, f"layer '{name}'"))
        return name

    def __getattr__(self, op: str):
        if op in OP_CLASSES:
            return lambda name, **fields: self.layer(op, name, **fields)
        raise AttributeError(op)

    def build(self) -> LayerGraph:
        return LayerGraph(self.name, list(self._specs), description=self.description)
