"""Per-layer op costs with one cost-rule call per distinct (layer, shape): GPT-3 175B's 774 layers have 11.

Two layers with the same op, parameters (all but their names and input names), shapes and gradient
flags cost the same, so the cost of the first stands for all. Results share perfmodel.ops.base's
per-graph cost cache, so graph_costs returns the same tuple afterwards.
"""

from __future__ import annotations

import json

from ..graph.layer_graph import LayerGraph
from ..ops.base import OpCost, op_cost

COST_CACHE_SIZE = 16  # (batch, dtype) entries per graph, as perfmodel.ops.base.graph_costs keeps


def layer_signature(layer) -> tuple:
    """What a layer's cost depends on: op, parameters but names, shapes and gradient flags."""
    spec = json.dumps(layer.spec.model_dump(mode="json", exclude={"name", "inputs"}), sort_keys=True)
    return (layer.op, spec, layer.input_shapes, layer.output_shape, layer.int_input, layer.requires_grad,
            layer.needs_input_grad, layer.in_backward, layer.grad_consumers)


def cost_groups(graph: LayerGraph) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(group of every layer, first layer of every group), memoised on the graph."""
    hit = graph.__dict__.get("_cost_groups")
    if hit is None:
        index: dict[tuple, int] = {}
        group, first = [], []
        for l in graph.layers:
            g = index.setdefault(layer_signature(l), len(first))
            if g == len(first):
                first.append(l.index)
            group.append(g)
        hit = graph.__dict__["_cost_groups"] = (tuple(group), tuple(first))
    return hit


def layer_costs(graph: LayerGraph, batch: int, dtype_bytes: int) -> tuple[OpCost, ...]:
    """Costs of every layer of `graph` at `batch` (one cost-rule call per distinct layer), memoised on the graph."""
    cache = graph.__dict__.setdefault("_cost_cache", {})
    key = (batch, dtype_bytes)
    hit = cache.get(key)
    if hit is None:
        group, first = cost_groups(graph)
        uniq = [op_cost(graph.layers[i], batch, dtype_bytes) for i in first]
        if len(cache) >= COST_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        hit = cache[key] = tuple(uniq[g] for g in group)
    return hit
