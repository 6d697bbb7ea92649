"""Cost records and the registry of cost rules (one small function per op kind).

A cost rule maps (layer, batch, dtype bytes) to an OpCost: for each stage (forward, backward-data,
backward-weight) a tuple of Work items (FLOPs, bytes read and written, kernel launches, and the
family whose efficiency curve applies), plus parameters, activation bytes saved for backward, and
output bytes. FLOPs count a multiply-add as 2. Bytes and FLOPs are for the whole mini-batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from ..graph.layer_graph import Layer

FAMILIES = ("matrix", "conv", "memory")

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}
INDEX_BYTES = 8  # int64 token ids / labels, as PyTorch stores them


@dataclass(frozen=True, slots=True)
class Work:
    """One group of identical kernels: total FLOPs and bytes over `kernels` launches of `family`."""

    family: str
    flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    kernels: int = 1

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written


@dataclass(frozen=True, slots=True)
class OpCost:
    """Cost of one layer for one mini-batch, split by stage."""

    forward: tuple[Work, ...]
    backward_data: tuple[Work, ...] = ()
    backward_weight: tuple[Work, ...] = ()
    params: int = 0  # trainable parameters owned by this layer (0 when shared with another layer)
    saved_bytes: float = 0.0  # activation bytes kept from forward for backward (whole batch)
    output_bytes: float = 0.0  # bytes of the layer's output (whole batch)
    workspace_bytes: float = 0.0  # temporary memory needed while the layer runs
    extra: dict = field(default_factory=dict)  # op-specific notes (e.g. attention score bytes)

    def stage(self, name: str) -> tuple[Work, ...]:
        return getattr(self, name)

    def flops(self, stage: str) -> float:
        return sum(w.flops for w in getattr(self, stage))

    def bytes(self, stage: str) -> float:
        return sum(w.bytes for w in getattr(self, stage))

    def kernels(self, stage: str) -> int:
        return sum(w.kernels for w in getattr(self, stage))


STAGES = ("forward", "backward_data", "backward_weight")

CostRule = Callable[[Layer, int, int], OpCost]
COST_RULES: dict[str, CostRule] = {}


def cost_rule(*kinds: str):
    """Register the cost rule of one or more op kinds."""

    def deco(fn: CostRule) -> CostRule:
        for k in kinds:
            COST_RULES[k] = fn
        return fn

    return deco


def op_cost(layer: Layer, batch: int, dtype_bytes: int) -> OpCost:
    """Cost of `layer` at `batch`, with backward stages dropped where the graph needs none.

    A layer off every path to the loss has no backward; a layer whose inputs carry no gradient
    (e.g. the first layer) has no backward-data; a layer sharing another's parameters owns none.
    """
    c = COST_RULES[layer.op](layer, batch, dtype_bytes)
    changes: dict = {}
    if not layer.in_backward:
        changes.update(backward_data=(), backward_weight=(), saved_bytes=0.0)
    elif not layer.needs_input_grad:
        changes["backward_data"] = ()
    if layer.grad_consumers > 1 and layer.in_backward:
        # autograd sums the gradients arriving from several consumers: (k-1) elementwise adds
        k = layer.grad_consumers
        n = c.output_bytes
        acc = Work("memory", flops=(k - 1) * n / dtype_bytes, bytes_read=2 * (k - 1) * n,
                   bytes_written=(k - 1) * n, kernels=k - 1)
        changes["backward_data"] = changes.get("backward_data", c.backward_data) + (acc,)
    if layer.spec.share_params_with is not None and c.params:
        changes["params"] = 0
        changes["extra"] = {**c.extra, "param_tensors": 0}
    return replace(c, **changes) if changes else c


_COST_CACHE_SIZE = 16  # (batch, dtype) entries kept per graph


def graph_costs(graph, batch: int, dtype_bytes: int) -> tuple[OpCost, ...]:
    """Costs of every layer of `graph`, memoised on the graph (graphs are immutable once built)."""
    cache = graph.__dict__.setdefault("_cost_cache", {})
    key = (batch, dtype_bytes)
    hit = cache.get(key)
    if hit is None:
        if len(cache) >= _COST_CACHE_SIZE:
            cache.pop(next(iter(cache)))
        hit = cache[key] = tuple(op_cost(l, batch, dtype_bytes) for l in graph.layers)
    return hit


def numel(shape: tuple[int, ...]) -> int:
    """Number of elements of a per-sample shape."""
    n = 1
    for d in shape:
        n *= d
    return n
