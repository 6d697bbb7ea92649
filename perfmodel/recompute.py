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

import numpy as np

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


@dataclass(frozen=True)
class RecomputeLayout:
    """Checkpointed segments as arrays: segment per layer (-1: the last segment, not recomputed), the layers
    whose forward runs twice, and per recomputed layer its non-input sources."""

    segments: tuple[tuple[int, ...], ...]
    segment_of: np.ndarray
    layers: np.ndarray
    sources: tuple[tuple[int, ...], ...]


def recompute_layout(graph: LayerGraph, rule: str = "auto", costs: tuple[OpCost, ...] | None = None) -> RecomputeLayout:
    """Every segment of `rule` but the last is checkpointed (see the module doc)."""
    segs = segments(graph, rule, costs)
    n = len(graph.layers)
    seg_of = np.full(n, -1, dtype=np.int64)
    for si, s in enumerate(segs[:-1]):
        seg_of[s] = si
    is_input = [l.op == "input" for l in graph.layers]
    layers = np.array([seg_of[i] >= 0 and graph.layers[i].in_backward and not is_input[i] for i in range(n)],
                      dtype=bool)
    by_name = {l.name: l.index for l in graph.layers}
    sources = tuple(tuple(by_name[src] for src in l.input_names if not is_input[by_name[src]])
                    if seg_of[l.index] >= 0 and l.in_backward else () for l in graph.layers)
    return RecomputeLayout(tuple(tuple(s) for s in segs), seg_of, layers, sources)


def checkpoint_parts(saved: np.ndarray, output: np.ndarray, lay: RecomputeLayout, a: int, e: int
                     ) -> tuple[list[float], float, float]:
    """Per micro-batch, of layers [a, e) under recomputation: (bytes of each tensor kept as a checkpointed segment's
    input, saved bytes of the layers outside checkpointed segments, saved bytes of the largest checkpointed
    segment)."""
    segs = lay.segment_of[a:e]
    ck = segs >= 0
    sv = saved[a:e]
    plain = float(sv[~ck].sum())
    kept = {j for i in range(a, e) for j in lay.sources[i] if lay.segment_of[j] != lay.segment_of[i] or j < a}
    big = float(np.bincount(segs[ck] - segs[ck].min(), weights=sv[ck]).max()) if ck.any() else 0.0
    return [float(output[j]) for j in kept], plain, big


def kept_activations(saved: np.ndarray, output: np.ndarray, input_bytes: float, lay: RecomputeLayout, a: int, e: int,
                     inflight: int = 1) -> tuple[float, float, float]:
    """Activation bytes layers [a, e) keep with recomputation: per in-flight micro-batch the network inputs and
    the inputs of the checkpointed segments; the non-recomputed layers' saved tensors for all but one micro-batch;
    once, the larger of those and the largest checkpointed segment (re-materialised during its backward).
    Returns (activations, checkpoint bytes, the re-materialised part)."""
    sizes, plain, big = checkpoint_parts(saved, output, lay, a, e)
    ckpt = float(sum(sizes))
    return (input_bytes + ckpt) * inflight + plain * (inflight - 1) + max(plain, big), ckpt, max(plain, big)


def recompute_memory(graph: LayerGraph, batch: int, dtype: str = "fp32", rule: str = "auto",
                     costs: tuple[OpCost, ...] | None = None) -> RecomputeMemory:
    """Activation bytes kept with recomputation of every segment but the last (see the module doc)."""
    if dtype not in DTYPE_BYTES:
        raise InputError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if costs is None:
        costs = graph_costs(graph, batch, DTYPE_BYTES[dtype])
    lay = recompute_layout(graph, rule, costs)
    segs = lay.segments
    used_rule = rule
    if rule == "auto":
        used_rule = "blocks" if [list(s) for s in segs] == block_segments(graph) else "sqrt"
    saved = np.array([c.saved_bytes for c in costs], dtype=float)
    output = np.array([c.output_bytes for c in costs], dtype=float)
    inputs = float(sum(c.output_bytes for l, c in zip(graph.layers, costs) if l.op == "input"))
    acts, ckpt, largest = kept_activations(saved, output, inputs, lay, 0, len(costs))
    seg_saved = [float(saved[list(s)].sum()) for s in segs]
    big = max(range(len(segs)), key=lambda k: seg_saved[k])
    return RecomputeMemory(
        rule=used_rule, segments=len(segs), inputs_bytes=inputs, checkpoint_bytes=ckpt,
        largest_segment_bytes=largest, largest_segment=graph.layers[segs[big][0]].name,
        activations_bytes=float(acts), without_bytes=float(saved.sum() + inputs),
        recomputed_layers=tuple(int(i) for i in np.flatnonzero(lay.layers)),
    )


def recompute_extra_time(profile, memory: RecomputeMemory) -> float:
    """Seconds of the extra forward pass over the recomputed layers, from a step profile (perfmodel.step)."""
    return float(sum(profile.times[i].forward.time_s for i in memory.recomputed_layers))
