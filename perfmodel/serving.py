"""Serving (inference): forward-only latency, throughput and memory per batch size.

Model (each point a documented assumption):
- Time = the forward stage of every layer at the batch, as the training model times it (same cost
  rules, roofline and efficiency curves), without: the loss (no labels at inference), dropout (an
  identity in eval mode), the backward pass, the optimizer step, and the AMP weight cast (the
  weights are stored in the serving dtype).
- Memory = weights in the serving dtype (no fp32 master copy, gradients or optimizer state) + the
  peak of the activations alive at once + the runtime reserve. Activations are freed after their last
  reader (liveness over the layer graph, in the order the layers run); views (flatten, reshape,
  select) and dropout alias their input; while a layer runs, its output, its inputs still needed
  and its transient buffers (workspace, and for attention the score and probability tensors) are
  alive. Not the training sum of everything saved for backward.
- Latency is the time of one batch on one device; throughput = batch / latency (one batch at a
  time, no pipelining of requests or continuous batching).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .errors import InputError
from .graph.layer_graph import LayerGraph
from .ops import DTYPE_BYTES, OP_KINDS, inference_mode
from .ops.base import OpCost, graph_costs
from .graph.io import load_network
from .engine import memo
from .hardware.loader import load_hardware
from .hardware.topology import device_with_memory_format
from .kernels.data import MEMORY_FORMATS
from .hardware.schema import Device
from .step import step_profile

# What each op kind does at inference is declared by its cost rule (ops.inference_mode): losses are skipped,
# dropout is an identity in eval mode (its output is its input).
SKIPPED_AT_INFERENCE = frozenset(k for k in OP_KINDS if inference_mode(k) != "run")
ALIAS_OPS = frozenset(k for k in OP_KINDS if inference_mode(k) == "alias")
ATTENTION_TRANSIENT_SCORES = 2  # scores and probabilities [batch, heads, T, T] alive together in softmax


@dataclass(frozen=True)
class ServingMemory:
    weights_bytes: float
    activations_bytes: float  # peak of live activations (and transient buffers)
    reserved_bytes: float
    total_bytes: float
    capacity_bytes: float
    fits: bool
    peak_layer: str  # the layer running at the activation peak


@dataclass(frozen=True)
class ServingPoint:
    batch: int
    latency_s: float
    throughput: float  # samples per second
    flops: float  # forward FLOPs of the batch
    achieved_flops: float
    utilization: float
    breakdown: dict[str, float]  # compute, memory, overhead (sum to latency_s)
    memory: ServingMemory

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServingResult:
    network: str
    hardware: str
    dtype: str
    threads: int | None
    params: int
    points: tuple[ServingPoint, ...]
    max_batch: int  # largest batch whose serving memory fits
    assumptions: dict[str, Any] = field(default_factory=dict)
    memory_format: str = "contiguous"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d


def _serving_device(hw: Any):
    if isinstance(hw, Device):
        return hw
    node = hw if getattr(hw, "kind", None) == "node" else getattr(hw, "node", None)
    if isinstance(node, str):
        node = load_hardware(node)
    dev = getattr(node, "device", None)
    if isinstance(dev, str):
        dev = load_hardware(dev)
    if dev is None:
        raise InputError(f"'{getattr(hw, 'name', hw)}' is a {getattr(hw, 'kind', '?')} profile; serving needs a device")
    return dev


def serving_activation_peak(graph: LayerGraph, costs: tuple[OpCost, ...]) -> tuple[float, str]:
    """Peak bytes of live activations during one forward (see the module doc) and the layer at the peak."""
    layers = graph.layers
    n = len(layers)
    idx = {l.name: l.index for l in layers}
    skipped = [l.op in SKIPPED_AT_INFERENCE and l.op not in ALIAS_OPS for l in layers]

    # storage owner of each layer's output: views and dropout alias their (first) input
    owner = list(range(n))
    for l in layers:
        if (costs[l.index].extra.get("view") or l.op in ALIAS_OPS) and l.input_names:
            owner[l.index] = owner[idx[l.input_names[0]]]
    size = [0.0] * n
    for i in range(n):
        if owner[i] == i and not skipped[i]:
            size[i] = float(costs[i].output_bytes)
    # last use of each storage owner
    last_use = list(range(n))
    for l in layers:
        if skipped[l.index]:
            continue
        for s in l.input_names:
            o = owner[idx[s]]
            last_use[o] = max(last_use[o], l.index)
    outputs = {owner[l.index] for l in layers if not skipped[l.index] and all(
        skipped[c] for c in (idx[x] for x in graph.graph.successors(l.name)))}
    for o in outputs:  # results are returned: alive to the end
        last_use[o] = n
    live = 0.0
    peak, at = 0.0, layers[0].name
    for l in layers:
        i = l.index
        if skipped[i]:
            continue
        c = costs[i]
        transient = float(c.workspace_bytes) + ATTENTION_TRANSIENT_SCORES * float(c.extra.get("score_bytes", 0.0))
        live += size[i]
        here = live + transient
        if here > peak:
            peak, at = here, l.name
        # free storages whose last reader was this layer
        for s in set(owner[idx[x]] for x in l.input_names):
            if last_use[s] == i:
                live -= size[s]
        if last_use[i] == i and owner[i] == i:
            live -= size[i]
    return peak, at


def serve(network: Any, hardware: Any, batch: int | Sequence[int] = (1, 8, 32), *, dtype: str = "fp32",
          threads: int | None = None, memory_format: str = "contiguous") -> ServingResult:
    """Forward-only latency, throughput and memory of `network` on one device of `hardware` per batch size
    (`memory_format`: contiguous or channels_last activations, TrainingSetup.memory_format)."""

    if memory_format not in MEMORY_FORMATS:
        raise InputError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {memory_format!r}")
    g = load_network(network)
    base = _serving_device(load_hardware(hardware))
    dev = memo.on(base, ("memory_format", memory_format), lambda: device_with_memory_format(base, memory_format))
    batches = [batch] if isinstance(batch, int) else list(batch)
    if not batches:
        raise InputError("serve needs at least one batch size")
    if dtype not in DTYPE_BYTES:
        raise InputError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    b = DTYPE_BYTES[dtype]
    points = []
    params = 0
    for bs in batches:
        prof = step_profile(g, dev, bs, dtype, threads, "sgd")  # checks batch, dtype, threads
        costs = prof.costs
        params = prof.params
        comp = mem = over = t = flops = 0.0
        for l, c, lt in zip(g.layers, costs, prof.times):
            if l.op in SKIPPED_AT_INFERENCE:
                continue
            st = lt.forward
            t += st.time_s
            comp += st.roof_compute_s
            mem += st.roof_memory_s
            over += st.overhead_s
            flops += c.flops("forward")
        peak, at = serving_activation_peak(g, costs)
        weights = float(params * b)
        reserved = float(dev.runtime_reserved_bytes)
        total = weights + peak + reserved
        m = ServingMemory(weights_bytes=weights, activations_bytes=peak, reserved_bytes=reserved, total_bytes=total,
                          capacity_bytes=float(dev.memory_bytes), fits=total <= dev.memory_bytes, peak_layer=at)
        achieved = flops / t if t > 0 else 0.0
        peak_flops = dev.peak(dtype)
        points.append(ServingPoint(
            batch=bs, latency_s=t, throughput=bs / t if t > 0 else 0.0, flops=flops, achieved_flops=achieved,
            utilization=achieved / peak_flops if peak_flops else 0.0,
            breakdown={"compute": comp, "memory": mem, "overhead": over}, memory=m))
    # largest batch that fits: activations are proportional to the batch (from the first point)
    p0 = points[0]
    per_sample = p0.memory.activations_bytes / p0.batch
    free = dev.memory_bytes - p0.memory.weights_bytes - p0.memory.reserved_bytes
    if free < per_sample:
        max_b = 0
    elif per_sample <= 0:
        max_b = 2**31 - 1
    else:
        max_b = int(free / per_sample * (1 + 1e-12))
    return ServingResult(
        network=g.name, hardware=dev.name, dtype=dtype, threads=prof.threads, params=params, points=tuple(points),
        max_batch=max_b, memory_format=memory_format, assumptions={
            "skipped_at_inference": sorted(SKIPPED_AT_INFERENCE),
            "weights": f"parameters stored in {dtype} ({b} bytes each), no master copy, gradients or optimizer state",
            "activations": "peak of live tensors over one forward (liveness), not the saved-for-backward sum",
            "attention_transient_scores": ATTENTION_TRANSIENT_SCORES,
            "batching": "one batch at a time; throughput = batch / latency",
            "profile_source": dev.source,
        })
