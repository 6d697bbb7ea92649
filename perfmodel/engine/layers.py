"""Per-layer building blocks on one device: stage sums by the one work_time, op keys of calibrated rates,
memoised Work tables, parameter tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..graph.layer_graph import LayerGraph
from ..ops import STAGES, OpCost
from ..ops.base import Work
from .rates import Rates
from .worktime import WorkTable, work_table, work_times

# Under autocast (fp16/bf16), each forward casts the fp32 weights to the compute dtype once.
AMP_WEIGHT_CAST = True
LOWP = ("fp16", "bf16", "fp8", "int8")
STRIDED_OPS = ("conv1d", "conv2d", "conv_transpose2d")
_CACHE_SIZE = 64


def elementwise_key(op: str, stage: str) -> str:
    """Key of Efficiency.elementwise for an op's stage: "<op>" (forward) or "<op>.backward"."""
    return op if stage == "forward" else f"{op}.backward"


def stage_factor_key(layer, stage: str) -> str | None:
    """Key of Efficiency.stage_factors for a layer's stage: "<op>.<stage>/strided-1x1" for strided
    convolutions with a 1-wide kernel (the projection shortcuts), "<op>.<stage>/strided" for other strided ones."""
    if layer.op not in STRIDED_OPS:
        return None
    st, k = layer.spec.stride, layer.spec.kernel
    if max(st if isinstance(st, tuple) else (st,)) <= 1:
        return None
    one = max(k if isinstance(k, tuple) else (k,)) == 1
    return f"{layer.op}.{stage}/strided" + ("-1x1" if one else "")


def param_tensors(c: OpCost) -> int:
    """Parameter tensors of a layer (weight and bias, or more for recurrent/attention layers)."""
    return int(c.extra.get("param_tensors", 2 if c.params else 0))


@dataclass(frozen=True, slots=True)
class StageTime:
    """Summed times of one stage of one layer (or of one step part such as the optimizer)."""

    time_s: float = 0.0
    compute_s: float = 0.0
    memory_s: float = 0.0
    overhead_s: float = 0.0
    roof_compute_s: float = 0.0  # part of time_s spent in compute-bound work
    roof_memory_s: float = 0.0  # part of time_s spent in memory-bound work


def stage_time(works: tuple[Work, ...], r: Rates, key: str | None = None,
               factor_key: str | None = None) -> StageTime:
    """Sum the work items of a stage by the one work_time, attributing each item's roofline time to its bound."""
    if not works:
        return StageTime()
    t = work_times(works, r, key, factor_key)
    cb = t["compute"] >= t["memory"]
    return StageTime(float(t["time"].sum()), float(t["compute"].sum()), float(t["memory"].sum()),
                     float(t["overhead"].sum()), float(t["roof"][cb].sum()), float(t["roof"][~cb].sum()))


def cached(graph: LayerGraph, name: str, key: tuple, build) -> Any:
    cache = graph.__dict__.setdefault(name, {})
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        hit = cache[key] = build()
    return hit


def layer_table(graph: LayerGraph, costs: tuple[OpCost, ...], keyed: bool) -> WorkTable:
    """The Work table of `costs` (with per-op elementwise and stage-factor keys when `keyed`), memoised."""
    def build():
        if not keyed:
            return work_table(costs)
        ek = [[elementwise_key(l.op, s) for s in STAGES] for l in graph.layers]
        fk = [[stage_factor_key(l, s) for s in STAGES] for l in graph.layers]
        return work_table(costs, ek, fk)

    hit = cached(graph, "_engine_tables", (id(costs), keyed), lambda: (costs, build()))
    if hit[0] is not costs:  # an id reused by another cost tuple
        graph.__dict__["_engine_tables"].pop((id(costs), keyed))
        return layer_table(graph, costs, keyed)
    return hit[1]
