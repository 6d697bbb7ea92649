"""The plan-search space: which tensor and pipeline degrees, micro-batches, dtypes and device counts to try."""

from __future__ import annotations

from ..engine.layers import cached
from ..errors import InputError
from ..graph.layer_graph import LayerGraph
from ..hardware.loader import load_hardware
from ..prediction.setup import make_setup
from ..recompute import block_segments

LOW_PRECISION_PREFERENCE = ("bf16", "fp16")
FULL_PRECISION_PREFERENCE = ("tf32", "fp32")
# objective="cost": also try N/2, N/4, ... devices, at most this many halvings
COST_DEVICE_HALVINGS = 6


def _pow2_upto(n: int) -> list[int]:
    out, x = [], 1
    while x <= n:
        out.append(x)
        x *= 2
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def block_count(graph: LayerGraph) -> int:
    """Repeated block instances (e.g. transformer layers): segments whose names carry a numeric index (memoised)."""
    def build():
        count = 0
        for seg in block_segments(graph):
            parts = graph.layers[seg[0]].name.split(".")
            if any(p.isdigit() for p in parts[:-1]):
                count += 1
        return count

    return cached(graph, "_plan_block_count", (), build)


def pp_options(graph: LayerGraph) -> list[int]:
    """Pipeline depths worth trying: divisors of the block count, else powers of two up to half the weighted layers."""
    blocks = block_count(graph)
    if blocks >= 2:
        return _divisors(blocks)
    weighted = sum(1 for l in graph.layers if getattr(l.spec, "has_params", False))
    return _pow2_upto(max(1, weighted // 2))


def tp_options(graph: LayerGraph, per_node: int) -> list[int]:
    """Powers of two up to the devices used per node, dividing it and every attention layer's heads."""
    heads = [l.spec.heads for l in graph.layers if l.op == "attention"]
    return [t for t in _pow2_upto(per_node) if per_node % t == 0 and all(h % t == 0 for h in heads)]


def microbatch_options(per_replica: int) -> list[int]:
    """Powers of two dividing the samples per replica, and the samples per replica itself."""
    opts = [x for x in _pow2_upto(per_replica) if per_replica % x == 0]
    if per_replica not in opts:
        opts.append(per_replica)
    return opts


def default_dtypes(device) -> list[str]:
    out = []
    for pref in (LOW_PRECISION_PREFERENCE, FULL_PRECISION_PREFERENCE):
        for d in pref:
            if device.supports(d):
                out.append(d)
                break
    return out or ["fp32"]


def hardware_with_device(hw, device: str):
    """A node or cluster profile with its node's device replaced (e.g. a DGX A100 with 80 GB GPUs)."""
    if isinstance(hw, str):
        hw = load_hardware(hw)
    load_hardware(device, kind="device")  # fail early on a bad name
    kind = getattr(hw, "kind", None)
    if kind == "device":
        return load_hardware(device, kind="device")
    if kind == "node":
        return hw.model_copy(update={"device": device, "name": f"{hw.name}[{device}]"})
    if kind == "cluster":
        node = hw.node if not isinstance(hw.node, str) else load_hardware(hw.node, kind="node")
        node2 = node.model_copy(update={"device": device, "name": f"{node.name}[{device}]"})
        return hw.model_copy(update={"node": node2, "name": f"{hw.name}[{device}]"})
    raise InputError(f"cannot replace the device of a {kind} profile")


def _device_counts(n: int, objective: str, per_node: int, max_devices: int) -> list[int]:
    counts = [n]
    if objective == "cost":
        c = n
        for _ in range(COST_DEVICE_HALVINGS):
            if c % 2:
                break
            c //= 2
            counts.append(c)
    ok = []
    for c in counts:
        if c > max_devices:
            continue
        if c > per_node and c % per_node:
            continue
        ok.append(c)
    return ok


def _check_list(name: str, values, allowed) -> list:
    vals = list(values)
    bad = [v for v in vals if v not in allowed]
    if bad or not vals:
        raise InputError(f"{name} must be a non-empty list of {', '.join(map(str, allowed))}, got {vals!r}")
    return vals


# ---------------------------------------------------------------------------------------------
# the large-model dimensions (issue 14 names): zero, sharding, sequence_parallel, virtual_stages, recompute,
# context_parallel, offload_activations, expert_parallel, tp_overlap

ZERO_STAGES = (0, 1, 2, 3)
SHARDING_CHOICES = ("none", "full", "hybrid")
RECOMPUTE_SEARCH = ("none", "selective", "full")
# default values searched per dimension (None: the space rule decides, virtual_stages: virtual_options)
DIMENSION_DEFAULTS: dict[str, tuple] = {
    "zero": ZERO_STAGES, "sharding": SHARDING_CHOICES, "sequence_parallel": (False, True),
    "recompute": RECOMPUTE_SEARCH, "context_parallel": (1,), "offload_activations": (False, True),
    "expert_parallel": (1,), "tp_overlap": (False, True),
}


def trained_global_batch(graph: LayerGraph) -> int | None:
    """The global batch the network file says the model was trained with (`training.global_batch`), or None."""
    training = getattr(getattr(graph, "file", None), "training", None)
    return getattr(training, "global_batch", None)


def virtual_options(graph: LayerGraph, pp: int, microbatches: int, allowed=None) -> list[int]:
    """Interleaved-1F1B chunks per pipeline rank worth trying: 1, and with pp > 1 every v > 1 dividing the repeated
    blocks per stage (each chunk holds whole blocks) when the micro-batches are a multiple of pp (Megatron's rule)."""
    opts = [1]
    blocks = block_count(graph)
    if pp > 1 and blocks % pp == 0 and microbatches % pp == 0:
        opts += [v for v in _divisors(blocks // pp) if v > 1]
    return opts if allowed is None else [v for v in opts if v in allowed]


def state_modes(zero, sharding) -> list[tuple[int, str]]:
    """(zero, sharding) pairs of the model-state sharding to try: ZeRO stages without FSDP sharding, then FSDP full and
    hybrid (stage 3); FSDP full is ZeRO-3 over all data-parallel ranks, so zero=3 is dropped when 'full' is tried."""
    modes = [(z, "none") for z in zero if "none" in sharding and not (z == 3 and "full" in sharding)]
    return modes + [(0, s) for s in sharding if s != "none"]


def modelled_values(name: str, values) -> tuple[list, str | None]:
    """The values of one setup option the engine models (TrainingSetup.check_modelled), and why the rest are not."""
    kept, why = [], None
    for v in values:
        try:
            make_setup(**{name: v}).check_modelled()
            kept.append(v)
        except InputError as e:
            why = why or str(e)
    return kept, why
