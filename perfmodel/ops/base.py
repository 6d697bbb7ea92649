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
class GemmShape:
    """A GEMM as the kernel sees it: `batch` independent products of [m, k] x [k, n]."""

    m: int
    n: int
    k: int
    batch: int = 1


@dataclass(frozen=True, slots=True)
class ConvShape:
    """A convolution's dimensions (the forward's; backward passes run on the same tensors).

    Sizes are per-sample spatial tuples; `kernel`, `stride`, `padding` (per side; "same" padding of an
    even kernel rounded down) and `dilation` have one entry per spatial dim.
    """

    batch: int
    c_in: int
    c_out: int
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    groups: int = 1
    transposed: bool = False
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()


# A Work without a key (optimizer updates, weight casts, bucket copies) is keyed by its family: it uses the
# family's curve, never a kernel class's (an in-place update is not an elementwise op with a fresh output).
FAMILY_DEFAULT_KEY = {"matrix": "matrix", "conv": "conv", "memory": "memory"}


@dataclass(frozen=True, slots=True)
class Work:
    """One group of identical kernels: total FLOPs and bytes over `kernels` launches of `family`.

    `efficiency_key` names the kernel class whose efficiency applies ("/"-separated, most specific
    last, e.g. "conv/depthwise"; profiles map keys to curves with a fallback to the family's curve);
    empty means the family's default key. `shape` gives the GEMM or convolution dimensions of one
    kernel where the work is one, for kernel models. `executed` is the work the CPU library's kernel executes per
    model FLOP (1 = every vector lane useful; oneDNN's grouped convolutions with few channels per group leave
    lanes empty: ops.conv.grouped_path); CPU rows divide their rate by it, FLOP counts stay the model's.
    """

    family: str
    flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    kernels: int = 1
    efficiency_key: str = ""
    shape: GemmShape | ConvShape | None = None
    allocs: tuple[float, ...] = ()
    executed: float = 1.0

    def __post_init__(self) -> None:
        if not self.efficiency_key:
            object.__setattr__(self, "efficiency_key", FAMILY_DEFAULT_KEY.get(self.family, self.family))

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    def split(self, parts: int) -> "Work":
        """This work shared by `parts` ranks: FLOPs, bytes and buffers / parts, same kernels, key and shape."""
        return replace(self, flops=self.flops / parts, bytes_read=self.bytes_read / parts,
                       bytes_written=self.bytes_written / parts, allocs=tuple(a / parts for a in self.allocs))

    def buffers(self) -> tuple[float, ...]:
        """Bytes of each buffer one kernel allocates (allocs, else one buffer of bytes_written / kernels)."""
        return self.allocs or (self.bytes_written / max(1, self.kernels),)


def fresh_allocs(buffers, threshold: float, scale: float = 1.0, below: float = float("inf")) -> float:
    """Bytes of the buffers (each x scale) of at least `threshold` and under `below` bytes. Above glibc's mmap
    threshold a buffer is mapped afresh on every call and its pages are faulted in and zeroed by the kernel that
    first writes them; below it, a buffer of a training step is heap memory last touched long ago (cold)."""
    return sum(b * scale for b in buffers if threshold <= b * scale < below)


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

# Tensor-parallel roles an op kind may declare (Megatron-style sharding, see parallel/tensor.py):
# "linear": a GEMM with weights, column-parallel on a whole input, row-parallel on a split one;
# "heads": attention split by heads; "vocab": an embedding table split by rows (large tables only);
# "elementwise": one-input pointwise op that stays split on a split input; "replicated": anything else.
TP_ROLES = ("linear", "heads", "vocab", "elementwise", "replicated")
# What an op kind does at inference (serving): "run" its forward, "skip" it (losses: no labels), or
# "alias" its input (identity in eval mode, e.g. dropout).
INFERENCE_MODES = ("run", "skip", "alias")


@dataclass(frozen=True, slots=True)
class OpKind:
    """What the model knows about one op kind beyond its cost: tensor-parallel role and inference mode."""

    name: str
    tp_role: str = "replicated"
    inference: str = "run"


OP_KINDS: dict[str, OpKind] = {}


def cost_rule(*kinds: str, tp: str = "replicated", inference: str = "run"):
    """Register the cost rule of one or more op kinds, with their tensor-parallel role and inference mode."""
    if tp not in TP_ROLES:
        raise ValueError(f"tp role must be one of {TP_ROLES}, got {tp!r}")
    if inference not in INFERENCE_MODES:
        raise ValueError(f"inference must be one of {INFERENCE_MODES}, got {inference!r}")

    def deco(fn: CostRule) -> CostRule:
        for k in kinds:
            COST_RULES[k] = fn
            OP_KINDS[k] = OpKind(k, tp, inference)
        return fn

    return deco


def tp_role(kind: str) -> str:
    """Tensor-parallel role declared by op kind `kind` ("replicated" for unknown kinds)."""
    info = OP_KINDS.get(kind)
    return info.tp_role if info is not None else "replicated"


def inference_mode(kind: str) -> str:
    """Inference mode declared by op kind `kind` ("run", "skip" or "alias")."""
    info = OP_KINDS.get(kind)
    return info.inference if info is not None else "run"


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
                   bytes_written=(k - 1) * n, kernels=k - 1, efficiency_key="elementwise/add")
        changes["backward_data"] = changes.get("backward_data", c.backward_data) + (acc,)
    if layer.spec.share_params_with is not None and c.params:
        changes["params"] = 0
        changes["extra"] = {**c.extra, "param_tensors": 0}
    return replace(c, **changes) if changes else c


def inference_cost(layer: Layer, batch: int, dtype_bytes: int) -> OpCost | None:
    """Cost of `layer` at inference: its forward only; None when its kind is skipped or aliases its input."""
    if inference_mode(layer.op) != "run":
        return None
    c = COST_RULES[layer.op](layer, batch, dtype_bytes)
    return replace(c, backward_data=(), backward_weight=(), saved_bytes=0.0)


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


THIN_GEMM_DIM = 16  # a GEMM with an output side this narrow is memory bound ("/thin" kernel class)


def gemm_key(prefix: str, m: int, n: int) -> str:
    """Efficiency key of a GEMM with an m x n output: `prefix`, or `prefix`/thin when a side is <= THIN_GEMM_DIM."""
    return f"{prefix}/thin" if min(m, n) <= THIN_GEMM_DIM else prefix


def gemm(prefix: str, m: int, n: int, k: int, batch: int = 1, **work) -> Work:
    """A matrix-family Work item for `batch` GEMMs [m, k] x [k, n], keyed by `gemm_key(prefix, m, n)`."""
    return Work("matrix", efficiency_key=gemm_key(prefix, m, n), shape=GemmShape(m, n, k, batch), **work)


def numel(shape: tuple[int, ...]) -> int:
    """Number of elements of a per-sample shape."""
    n = 1
    for d in shape:
        n *= d
    return n
