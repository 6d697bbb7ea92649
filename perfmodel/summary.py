"""Static description of a network at a batch size: parameters, FLOPs per stage, activation memory, shapes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from .errors import InputError
from .graph.io import load_network
from .graph.layer_graph import LayerGraph
from .ops import DTYPE_BYTES, STAGES, op_cost


class LayerSummary(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    op: str
    inputs: tuple[str, ...]
    output_shape: tuple[int, ...]
    params: int
    flops_forward: float
    saved_bytes: float


class NetworkSummary(BaseModel):
    """Parameters, FLOPs (per batch; forward and backward = backward-data + backward-weight), activation bytes."""

    model_config = ConfigDict(frozen=True)
    name: str
    description: str
    batch: int
    dtype: str
    params: int
    flops: dict[str, float]
    activation_bytes: float
    layers: tuple[LayerSummary, ...]

    def to_dict(self, layers: bool = True) -> dict:
        d = self.model_dump(mode="json")
        if not layers:
            d.pop("layers")
        return d


def network_summary(network: str | Path | LayerGraph, batch: int = 1, dtype: str = "fp32") -> NetworkSummary:
    """Summarise `network` at `batch` samples in `dtype` (activation bytes = saved for backward)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    if dtype not in DTYPE_BYTES:
        raise InputError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    g = load_network(network)
    b = DTYPE_BYTES[dtype]
    costs = [op_cost(l, batch, b) for l in g.layers]
    flops = {s: sum(c.flops(s) for c in costs) for s in STAGES}
    flops["backward"] = flops["backward_data"] + flops["backward_weight"]
    rows = tuple(
        LayerSummary(name=l.name, op=l.op, inputs=l.input_names, output_shape=l.output_shape, params=c.params,
                     flops_forward=c.flops("forward"), saved_bytes=c.saved_bytes)
        for l, c in zip(g.layers, costs)
    )
    return NetworkSummary(
        name=g.name, description=g.description, batch=batch, dtype=dtype, params=sum(c.params for c in costs),
        flops=flops, activation_bytes=sum(c.saved_bytes for c in costs), layers=rows,
    )
