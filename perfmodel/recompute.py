"""Activation recomputation (gradient checkpointing): memory kept for backward and the extra forward time.

The rule (as torch.utils.checkpoint.checkpoint_sequential applies it):
1. The layers, in topological order, are cut into contiguous *segments*.
2. Every segment but the last is checkpointed: during forward only the tensors that enter it from
   outside (its inputs: the outputs of earlier layers it reads, e.g. the block input and residual
   shortcuts) are kept; its internal activations are dropped. The last segment keeps its
   activations as usual (its backward runs right after the forward).
3. During backward, each checkpointed segment runs its forward again (recomputation), then its
   backward; only one segment's activations are alive at a time.

So activation memory = network inputs + kept segment inputs + the largest segment's
saved-for-backward bytes, and the extra time = one more forward of every checkpointed segment.
All three memory terms are proportional to the batch, so the closed-form largest batch of
perfmodel.memory still holds.

How segments are chosen (`rule`):
- "blocks": one segment per instance of a repeated block of the network file (a transformer layer,
  a ResNet bottleneck): layer names `<use>.<i>.<layer>` group by the prefix up to the last numeric
  part (`h.3`, `layer1.b.2`), other dotted names by their first part (`stem`, `layer1`), and
  consecutive top-level layers form one segment. This is the per-layer checkpointing of
  Megatron-LM's "full" recomputation.
- "sqrt": ceil(sqrt(N)) segments of about equal saved bytes over the N layers (Chen et al. 2016,
  "Training Deep Nets with Sublinear Memory Cost"): memory O(sqrt(N)) for one extra forward.
- "auto" (default): "blocks" when that gives at least 4 segments, else "sqrt".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError
from .graph.layer_graph import LayerGraph
from .ops import DTYPE_BYTES
from .ops.base import OpCost, graph_costs

RULES = ("auto", "blocks", "sqrt")
MIN_BLOCK_SEGMENTS = 4  # "auto" uses "blocks" when the names give at least this many segments


def _block_key(name: str) -> str | None:
    parts = name.split(".")
    if len(parts) == 1:
        return None
    last_num = max((i for i, p in enumerate(parts[:-1]) if p.isdigit()), default=None)
    if last_num is not None:
        return ".".join(parts[: last_num + 1])
    return parts[0]


def block_segments(graph: LayerGraph) -> list[list[int]]:
    """Segments = runs of consecutive layers with the same block-instance prefix (see the module doc)."""
    segs: list[list[int]] = []
    prev: object = object()
    for l in graph.layers:
        k = _block_key(l.name)
        if not segs or k != prev:
            segs.append([])
        segs[-1].append(l.index)
        prev = k
    return segs


def sqrt_segments(graph: LayerGraph, costs: tuple[OpCost, ...]) -> list[list[int]]:
    """ceil(sqrt(N)) contiguous segments with about equal saved-for-backward bytes."""
    n = len(graph.layers)
    k = max(1, math.ceil(math.sqrt(n)))
    total = sum(c.saved_bytes for c in costs)
    target = total / k if total > 0 else 0.0
    segs: list[list[int]] = [[]]
    acc = 0.0
    for i, c in enumerate(costs):
        if segs[-1] and target > 0 and acc + c.saved_bytes > target and len(segs) < k:
            segs.append([])
            acc = 0.0
        segs[-1].append(i)
        acc += c.saved_bytes
    return [s for s in segs if s]


def segments(graph: LayerGraph, rule: str = "auto", costs: tuple[OpCost, ...] | None = None) -> list[list[int]]:
    """Layer indices of each segment under `rule` ("auto", "blocks" or "sqrt")."""
    if rule not in RULES:
        raise InputError(f"recompute rule must be one of {', '.join(RULES)}, got {rule!r}")
    if rule in ("auto", "blocks"):
        segs = block_segments(graph)
        if rule == "blocks" or len(segs) >= MIN_BLOCK_SEGMENTS:
            return segs
    if costs is None:
        costs = graph_costs(graph, 1, 4)
    return sqrt_segments(graph, costs)


@dataclass(frozen=True)
class RecomputeMemory:
    """Activation memory with recomputation at one batch (bytes) and what it is made of."""

    rule: str
    segments: int
    inputs_bytes: float  # network inputs (the data batch)
    checkpoint_bytes: float  # inputs of the checkpointed segments kept through forward
    largest_segment_bytes: float  # saved-for-backward bytes of the largest segment (alive during its backward)
    largest_segment: str  # name of the first layer of that segment
    activations_bytes: float  # sum of the three above
    without_bytes: float  # activations without recomputation (saved for backward + inputs)
    recomputed_layers: tuple[int, ...]  # layers whose forward runs twice


def recompute_memory(graph: LayerGraph, batch: int, dtype: str = "fp32", rule: str = "auto",
                     costs: tuple[OpCost, ...] | None = None) -> RecomputeMemory:
    """Activation bytes kept with recomputation of every segment but the last (see the module doc)."""
    if dtype not in DTYPE_BYTES:
        raise InputError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if costs is None:
        costs = graph_costs(graph, batch, DTYPE_BYTES[dtype])
    segs = segments(graph, rule, costs)
    used_rule = rule
    if rule == "auto":
        used_rule = "blocks" if segs == block_segments(graph) else "sqrt"
    seg_of = {}
    for si, s in enumerate(segs):
        for i in s:
            seg_of[i] = si
    by_name = {l.name: l.index for l in graph.layers}
    is_input = [l.op == "input" for l in graph.layers]
    inputs = sum(costs[i].output_bytes for i in range(len(costs)) if is_input[i])
    kept: set[int] = set()
    last = len(segs) - 1
    for l in graph.layers:
        si = seg_of[l.index]
        if si == last or not l.in_backward:
            continue
        for src in l.input_names:
            j = by_name[src]
            if seg_of[j] != si and not is_input[j]:
                kept.add(j)
    ckpt = sum(costs[j].output_bytes for j in kept)
    seg_saved = [sum(costs[i].saved_bytes for i in s) for s in segs]
    big = max(range(len(segs)), key=lambda k: seg_saved[k])
    recomputed = tuple(i for s in segs[:-1] for i in s if graph.layers[i].in_backward and not is_input[i])
    without = sum(c.saved_bytes for c in costs) + inputs
    acts = inputs + ckpt + seg_saved[big]
    return RecomputeMemory(
        rule=used_rule, segments=len(segs), inputs_bytes=float(inputs), checkpoint_bytes=float(ckpt),
        largest_segment_bytes=float(seg_saved[big]), largest_segment=graph.layers[segs[big][0]].name,
        activations_bytes=float(acts), without_bytes=float(without), recomputed_layers=recomputed,
    )


def recompute_extra_time(profile, memory: RecomputeMemory) -> float:
    """Seconds of the extra forward pass over the recomputed layers, from a step profile (perfmodel.step)."""
    return float(sum(profile.times[i].forward.time_s for i in memory.recomputed_layers))
