"""Memory footprint of training on one device, whether it fits, and the largest batch that fits.

Assumptions: parameters, gradients and optimizer state in fp32 (AMP keeps fp32 master weights and
caches one low-precision copy of the weights per step); activations saved for backward as the cost
rules report them; workspace = the two largest per-layer (output + scratch) buffers alive at once
during backward; plus the runtime's reserve (CUDA context, allocator) from the profile. Every term
except the fixed ones grows linearly with the batch, so the largest batch follows in closed form.
"""

from __future__ import annotations

import math

from .engine.layers import LOWP
from .engine.rates import fused_core_saved
from .graph.layer_graph import LayerGraph
from .hardware.schema import Device
from .ops import DTYPE_BYTES
from .ops.base import graph_costs
from .optimizers import MASTER_BYTES, optimizer_state_bytes
from .result import MemoryFootprint

WORKSPACE_BUFFERS = 2  # gradient-in and gradient-out of the layer being back-propagated


def memory_terms(params: int, dtype: str, optimizer: str, activations_bytes: float, workspace_bytes: float,
                 reserved_bytes: float, zero_dp: int = 1) -> dict[str, float]:
    """The one memory formula (bytes): fp32 master weights (plus the AMP low-precision copy), fp32 gradients,
    optimizer state (sharded over `zero_dp` data-parallel replicas with ZeRO-1), activations, workspace, reserve."""
    b = DTYPE_BYTES[dtype]
    return {
        "weights_bytes": float(params * MASTER_BYTES + (params * b if dtype in LOWP else 0)),
        "gradients_bytes": float(params * MASTER_BYTES),
        "optimizer_bytes": optimizer_state_bytes(optimizer, params) / zero_dp,
        "activations_bytes": float(activations_bytes),
        "workspace_bytes": float(workspace_bytes),
        "reserved_bytes": float(reserved_bytes),
    }


_SUMS_CACHE_SIZE = 32


def _cost_sums(graph: LayerGraph, costs) -> tuple[int, float, float, float]:
    """(parameters, saved activations, input bytes, workspace) of a cost tuple, memoised on the graph."""
    cache = graph.__dict__.setdefault("_memory_sums", {})
    hit = cache.get(id(costs))
    if hit is not None and hit[0] is costs:
        return hit[1]
    params = sum(c.params for c in costs)
    acts = sum(c.saved_bytes for c in costs)
    inputs = sum(c.output_bytes for l, c in zip(graph.layers, costs) if l.op == "input")
    per_layer = sorted((c.output_bytes + c.workspace_bytes for c in costs), reverse=True)
    out = (params, acts, inputs, sum(per_layer[:WORKSPACE_BUFFERS]))
    if len(cache) >= _SUMS_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[id(costs)] = (costs, out)  # holds the tuple, so its id is not reused while cached
    return out


def _terms(graph: LayerGraph, batch: int, dtype: str, optimizer: str, costs=None,
           activations_bytes: float | None = None, reserved_bytes: float = 0.0,
           device: Device | None = None) -> dict[str, float]:
    """Memory terms at `batch`; the attention cores a fused kernel runs (engine.rates.fused_core_saved on `device`)
    keep no saved bytes."""
    if costs is None:
        costs = graph_costs(graph, batch, DTYPE_BYTES[dtype])
    params, acts, inputs, workspace = _cost_sums(graph, costs)
    if device is not None:
        acts = max(acts - sum(fused_core_saved(device, costs)), 0.0)
    return memory_terms(params, dtype, optimizer, acts + inputs if activations_bytes is None else activations_bytes,
                        workspace, reserved_bytes)


MAX_BATCH = 2**31 - 1  # reported when memory does not grow with the batch


def largest_batch(fixed: float, per_sample: float, capacity: float) -> int:
    """Largest b with fixed + b * per_sample <= capacity (0 if not even one sample fits)."""
    if fixed + per_sample > capacity:
        return 0
    if per_sample <= 0:
        return MAX_BATCH
    return int(math.floor((capacity - fixed) / per_sample * (1 + 1e-12)))


def memory_footprint(graph: LayerGraph, device: Device, batch: int, dtype: str = "fp32",
                     optimizer: str = "sgd", costs=None, activations_bytes: float | None = None) -> MemoryFootprint:
    """Footprint at `batch` (with `costs` from the same batch if already computed) and the largest batch that fits.

    Activations and workspace are affine in the batch; weights, gradients, optimizer state and the
    runtime reserve are not. So total(b) = fixed + b * per_sample, solved for the largest b.
    `activations_bytes` replaces the activations term (taken as proportional to the batch), e.g. with
    activation recomputation (perfmodel.recompute).
    """
    reserved = device.runtime_reserved_bytes
    t = _terms(graph, batch, dtype, optimizer, costs, activations_bytes, reserved, device)
    total = sum(t.values())
    # activations and workspace are affine in the batch (per-channel statistics are a constant part):
    # take the slope from a second batch size
    b2 = 2 if batch == 1 else 1
    override2 = None if activations_bytes is None else activations_bytes * b2 / batch
    t2 = _terms(graph, b2, dtype, optimizer, None, override2, device=device)
    var = t["activations_bytes"] + t["workspace_bytes"]
    var2 = t2["activations_bytes"] + t2["workspace_bytes"]
    per_sample = (var - var2) / (batch - b2)
    fixed = total - per_sample * batch
    cap = device.memory_bytes
    max_b = largest_batch(fixed, per_sample, cap)
    return MemoryFootprint(
        **t, total_bytes=total, capacity_bytes=cap, fits=total <= cap,
        max_batch=max_b, bytes_per_sample=per_sample,
    )
