"""Sharded data parallelism: ZeRO stages 1-3 (Rajbhandari et al. 2020) and PyTorch FSDP (full / hybrid).

Memory per rank (the ZeRO paper's accounting, Psi parameters, Nd data-parallel ranks, mixed-precision
Adam: 2 Psi fp16 parameters, 2 Psi fp16 gradients, K Psi optimizer state with K = 12: fp32 master
weights, momentum and variance):

- stage 0 (plain data parallel): (2 + 2 + K) Psi
- stage 1 (P_os, optimizer state sharded): (2 + 2) Psi + K Psi / Nd
- stage 2 (P_os+g, gradients too):          2 Psi + (2 + K) Psi / Nd
- stage 3 (P_os+g+p, parameters too):       (2 + 2 + K) Psi / Nd
FSDP "full" is stage 3 over all dp ranks; "hybrid" (HYBRID_SHARD) is stage 3 inside a shard group, the g
data-parallel ranks of one node, and plain replication across the r = dp / g nodes: state per rank
(2 + 2 + K) Psi / g. Its collectives (hybrid_collectives): parameter all-gathers inside the node (ring over g
ranks on the node's fabric); per gradient bucket a reduce-scatter inside the node, a ring all-reduce of the
1/g shard across the r nodes (the g ranks of a node share its network bandwidth) and the next all-gather inside
the node: the volume of a hierarchical all-reduce (collectives.hierarchical_allreduce), whatever --allreduce says.

Communication per step per rank (ZeRO paper section 7): stages 0-2 move 2 Psi (reduce-scatter of the
gradients + all-gather of the updated parameters, the volume of one all-reduce); stage 3 all-gathers the
parameters again in backward: 3 Psi, 1.5x. Each collective is priced by parallel/collectives.collective_time.

With a pipeline (pp > 1), stage 3 / FSDP runs as torchtitan runs FSDP2 with torch.distributed.pipelining: no
reshard after forward (torchtitan's default with PP, to avoid per-micro-batch all-gathers), and the pipeline
schedule turns gradient sync and reshard-after-backward off for every backward but a stage's last. So per step and
stage: its parameters are all-gathered once, lazily at its first forward (unit by unit with prefetch: on the
pipeline's fill path the stages' exposed gathers add up), they stay gathered in the compute dtype until its last
backward, its unsharded fp32 gradients accumulate over the micro-batches, and after its last backward every unit
reduce-scatters its gradients, exposed (before the optimizer step). Memory (pipelined_terms): master weights and
optimizer state sharded, the stage's gathered parameters and full gradients on top (pipelined_zero3 for time).

Overlap (FSDP forward/backward prefetch): one communication stream next to the compute stream; a unit's
compute waits for its parameter all-gather, the all-gather of the next unit is issued before the unit
computes (prefetch), a gradient reduce-scatter is issued once the unit's backward has finished. Exposed
communication = makespan - compute - slowdown. Compute that runs while a gather is in flight takes (1 + s) times
as long (parallel/overlap.py's law, s = the stack's compute_slowdown, via overlap.slowed_lag); those slowdown
seconds are compute time (GatherOverlap.slowdown_s), the gather seconds behind compute are hidden_s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pydantic import BaseModel, ConfigDict

from ..errors import InputError
from . import collectives as C
from .collectives import collective_time
from .overlap import slowed_lag

SHARDING_STAGE = {"none": 0, "full": 3, "hybrid": 3}


@dataclass(frozen=True)
class GatherOverlap:
    """Seconds per iteration of prefetched parameter all-gathers run beside compute: the gather seconds hidden
    behind it and the compute slowdown they cause (overlap law, parallel/overlap.py: compute time, not comm)."""

    hidden_s: float = 0.0
    slowdown_s: float = 0.0

    def scaled(self, k: float) -> "GatherOverlap":
        return GatherOverlap(self.hidden_s * k, self.slowdown_s * k)

    def plus(self, other: "GatherOverlap") -> "GatherOverlap":
        return GatherOverlap(self.hidden_s + other.hidden_s, self.slowdown_s + other.slowdown_s)


class ShardedBytes(BaseModel):
    """Bytes per rank of parameters, gradients and optimizer state."""

    model_config = ConfigDict(frozen=True)
    params_bytes: float
    gradients_bytes: float
    optimizer_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.params_bytes + self.gradients_bytes + self.optimizer_bytes


def _check(stage: int, dp: int) -> None:
    if stage not in (0, 1, 2, 3):
        raise InputError(f"ZeRO stage must be 0, 1, 2 or 3, got {stage}")
    if dp < 1:
        raise InputError(f"data-parallel degree must be >= 1, got {dp}")


def zero_bytes_per_rank(params: float, stage: int, dp: int, param_bytes: float = 2.0, grad_bytes: float = 2.0,
                        optimizer_bytes_per_param: float = 12.0) -> ShardedBytes:
    """Model-state bytes per rank in the ZeRO paper's accounting (defaults: fp16 + Adam, K = 12)."""
    _check(stage, dp)
    return ShardedBytes(
        params_bytes=params * param_bytes / (dp if stage >= 3 else 1),
        gradients_bytes=params * grad_bytes / (dp if stage >= 2 else 1),
        optimizer_bytes=params * optimizer_bytes_per_param / (dp if stage >= 1 else 1))


def shard_terms(terms: dict[str, float], stage: int, dp: int, gathered_bytes: float = 0.0) -> dict[str, float]:
    """perfmodel's memory terms (memory.memory_terms) with the ZeRO stage applied over `dp` ranks.

    Stage >= 1 divides optimizer_bytes, >= 2 gradients_bytes, 3 weights_bytes by dp; stage 3 adds
    `gathered_bytes` (the full parameters of the units gathered at once, e.g. current + prefetched) to
    the weights. Stage 0 returns the terms unchanged.
    """
    _check(stage, dp)
    out = dict(terms)
    if stage >= 1:
        out["optimizer_bytes"] = terms["optimizer_bytes"] / dp
    if stage >= 2:
        out["gradients_bytes"] = terms["gradients_bytes"] / dp
    if stage >= 3:
        out["weights_bytes"] = terms["weights_bytes"] / dp + (gathered_bytes if dp > 1 else 0.0)
    return out


def pipelined_terms(terms: dict[str, float], dp: int, gathered_bytes: float) -> dict[str, float]:
    """Memory terms of one pipeline stage under stage 3 / FSDP with pp > 1 (module docstring): optimizer state and
    master weights (with the AMP copy) sharded over `dp` as shard_terms does, plus `gathered_bytes` (the stage's
    whole parameters in the compute dtype, gathered for the whole step), and the gradients unsharded (fp32,
    accumulated over the micro-batches until the reduce-scatter after the last backward)."""
    out = shard_terms(terms, 3, dp, gathered_bytes)
    out["gradients_bytes"] = terms["gradients_bytes"]
    return out


def pipelined_zero3(gather_fn, scatter_fn, gather_bytes: Sequence[float], scatter_bytes: Sequence[float],
                    forward_s: Sequence[float], ranges: Sequence[tuple[int, int]], overlap: bool = True,
                    slowdown: float = 0.0) -> tuple[float, tuple[float, ...], GatherOverlap]:
    """(exposed all-gather seconds per step, per-stage seconds of the reduce-scatters after its last backward, the
    gathers' hidden seconds and compute slowdown) of stage 3 / FSDP with a pipeline (module docstring). Per layer
    with parameters (a unit): gather_fn(its parameter bytes in the compute dtype) and scatter_fn(its gradient
    bytes); each stage gathers once, during its first micro-batch's forward with prefetch (forward_gathers, compute
    beside a gather `slowdown` slower; overlap=False: all exposed), the stages' exposed gathers and slowdowns adding
    up on the fill path; its reduce-scatters run one after another once its last backward ends (exposed)."""
    extra, after, ov = 0.0, [], GatherOverlap()
    for a, e in ranges:
        gathers = [float(gather_fn(float(n))) if n > 0 else 0.0 for n in gather_bytes[a:e]]
        if overlap:
            exposed, slow = forward_gathers(gathers, forward_s[a:e], slowdown)
            ov = ov.plus(GatherOverlap(float(sum(gathers)) - exposed, slow))
        else:
            exposed = float(sum(gathers))
        extra += exposed
        after.append(float(sum(scatter_fn(float(n)) for n in scatter_bytes[a:e] if n > 0)))
    return extra, tuple(after), ov


def shard_groups(sharding: str, dp: int, ranks_per_node: int) -> tuple[int, int]:
    """(ranks a state is sharded over, replicas of each shard) for FSDP's none/full/hybrid."""
    if sharding not in SHARDING_STAGE:
        raise InputError(f"sharding must be one of {', '.join(SHARDING_STAGE)}, got {sharding!r}")
    if sharding == "none":
        return 1, dp
    if sharding == "full":
        return dp, 1
    group = min(dp, max(1, ranks_per_node))
    if dp % group:
        raise InputError(f"hybrid sharding needs dp ({dp}) to be a multiple of the ranks per node ({group})")
    return group, dp // group


def zero_comm_bytes(param_bytes_total: float, grad_bytes_total: float, stage: int) -> list[tuple[str, float]]:
    """The collectives of one step per rank as (collective, full message bytes): the ZeRO paper's volumes."""
    _check(stage, 1)
    if stage == 0:
        return [("all-reduce", grad_bytes_total)]
    gathers = 2 if stage == 3 else 1
    return [("reduce-scatter", grad_bytes_total)] + [("all-gather", param_bytes_total)] * gathers


def zero_comm_s(param_bytes_total: float, grad_bytes_total: float, stage: int, tiers, algorithm: str | None = None
                ) -> float:
    """Seconds of all of one step's ZeRO collectives over `tiers` (no overlap)."""
    return sum(collective_time(c, n, tiers, algorithm) for c, n in zero_comm_bytes(param_bytes_total,
                                                                                    grad_bytes_total, stage))


def forward_exposed_s(gather_s: Sequence[float], compute_s: Sequence[float]) -> float:
    """Exposed all-gather time of a forward pass with prefetch: unit i+1 gathers while unit i computes (compute
    not slowed: forward_gathers with slowdown 0)."""
    return forward_gathers(gather_s, compute_s)[0]


def forward_gathers(gather_s: Sequence[float], compute_s: Sequence[float], slowdown: float = 0.0
                    ) -> tuple[float, float]:
    """(exposed all-gather seconds, compute slowdown seconds) of a forward pass with prefetch: the gathers run
    back to back on one stream from time 0 (unit i+1 gathers while unit i computes), unit i computes once its
    gather is done and unit i-1 has finished; compute while the stream is busy (until sum(gather_s)) takes
    (1 + slowdown) times as long (overlap.slowed_lag). exposed = end - sum(compute) - slowdown seconds."""
    if len(gather_s) != len(compute_s):
        raise InputError("need one all-gather time per unit")
    busy_until = float(sum(gather_s))
    comm_free = comp_free = lag = 0.0
    for g, c in zip(gather_s, compute_s):
        comm_free += g
        start = max(comp_free, comm_free)
        unit_lag = slowed_lag(start, 0.0, float(c), busy_until, slowdown) - start  # this unit's slowdown
        lag += unit_lag
        comp_free = start + c + unit_lag
    return comp_free - float(sum(compute_s)) - lag, lag


def backward_exposed_s(gather_s: Sequence[float], scatter_s: Sequence[float], compute_s: Sequence[float]) -> float:
    """Exposed communication of a backward pass (units in backward order) on one communication stream.

    Stream order (FSDP BACKWARD_PRE): AG_0, AG_1, RS_0, AG_2, RS_1, ..., RS_{n-1}; unit i computes after
    AG_i and unit i-1; RS_i starts after unit i computes. Returns (end of last RS) - sum(compute)."""
    n = len(compute_s)
    if len(gather_s) != n or len(scatter_s) != n:
        raise InputError("need one all-gather and one reduce-scatter time per unit")
    if n == 0:
        return 0.0
    ag_done = [0.0] * n
    stream = ag_done[0] = gather_s[0]
    comp = 0.0
    for i in range(n):
        if i + 1 < n:  # prefetch the next unit's parameters before this unit's reduce-scatter
            stream = ag_done[i + 1] = stream + gather_s[i + 1]
        comp = max(comp, ag_done[i]) + compute_s[i]
        stream = max(stream, comp) + scatter_s[i]
    return stream - float(sum(compute_s))


def zero_stage(zero: int, sharding: str) -> int:
    """The ZeRO stage a setup asks for: `zero`, or 3 for FSDP full sharding."""
    return max(zero, 3 if sharding == "full" else 0)


def shard_degree(zero: int, sharding: str, dp: int, dp_ranks_per_node: int) -> tuple[int, int]:
    """(ZeRO stage, ranks the model state is sharded over) of a setup: hybrid is stage 3 over the data-parallel
    ranks of a node (shard_groups), full / zero >= 1 over all dp ranks, stage 0 over one."""
    if sharding == "hybrid":
        return 3, shard_groups("hybrid", dp, dp_ranks_per_node)[0]
    stage = zero_stage(zero, sharding)
    return stage, dp if stage >= 1 else 1


def hybrid_collectives(pl) -> tuple:
    """(bucket_fn, gather_fn, scatter_fn, seconds per tier of one step's collectives(total param bytes)) of hybrid
    sharding on a placement (plan.Placement): g = dp ranks per node share a shard, r = dp nodes replicate it.
    scatter_fn(n): a gradient reduce-scatter inside the node and the all-reduce of its 1/g shard across nodes."""
    g, r, intra = pl.dp_ranks_per_node, pl.dp_nodes, pl.intra
    net = pl.net_bandwidth_Bps / pl.dp_groups_per_node if pl.net_bandwidth_Bps else 0.0

    def bucket(n: float) -> float:
        return C.hierarchical_allreduce(n, g, r, intra.bandwidth_Bps, intra.latency_s, net, pl.net_latency_s) \
            if n > 0 else 0.0

    def gather(n: float) -> float:
        return C.all_gather(n, g, intra.bandwidth_Bps, intra.latency_s)

    def across(n: float) -> float:
        return C.ring_allreduce(n / g, r, net / g, pl.net_latency_s) if r > 1 else 0.0

    def in_node_scatter(n: float) -> float:
        return C.reduce_scatter(n, g, intra.bandwidth_Bps, intra.latency_s)

    def scatter(n: float) -> float:
        return in_node_scatter(n) + across(n) if n > 0 else 0.0

    def per_tier(n: float) -> dict[str, float]:
        """Unoverlapped seconds per tier of one step (n = parameter bytes in the compute dtype): in the node two
        all-gathers and one reduce-scatter of n; across nodes one all-reduce of n / g per rank."""
        return {"in_node_s": 2 * gather(n) + in_node_scatter(n), "across_nodes_s": across(n)}

    return bucket, gather, scatter, per_tier


def zero_sync(stage: int, allreduce_fn, layer_param_bytes: Sequence[float], forward_s: Sequence[float],
              micro_steps: int, gather_fn=None, overlap: bool = True, backend=None, slowdown: float = 0.0
              ) -> tuple:
    """(gradient-bucket sync fn, extra exposed seconds per iteration, GatherOverlap of the prefetched forward
    gathers) of ZeRO stage `stage` (pp = 1).

    A reduce-scatter or all-gather of n bytes costs allreduce_fn(n) / 2 (exact for ring). Stage <= 1: the
    DDP all-reduce buckets unchanged. Stage 2: buckets reduce-scatter during backward; the all-gather of the
    updated parameters (sum of layer_param_bytes) after the optimizer step is exposed. Stage 3: per bucket
    an all-gather of the parameters plus a reduce-scatter of the gradients (one all-reduce's volume) overlapped
    with backward (the bucket schedule slows backward, data_parallel.sync_schedule); forward all-gathers per layer
    with prefetch (forward_gathers: compute beside them `slowdown` slower), once per micro-step.
    `gather_fn` (hybrid sharding: inside the node) prices an all-gather instead of allreduce_fn / 2.
    overlap=False (communication cannot run behind compute, e.g. gloo on a CPU whose cores all compute): nothing
    is prefetched, every all-gather is exposed; flat stage 3 then communicates per unit (layer with parameters)
    as FSDP does, not per bucket: in backward each unit all-gathers its parameters and reduce-scatters its
    gradients, all exposed, so the bucket fn is 0 and the extra seconds are (2 sum(gathers) + sum(scatters))
    per micro-step. `backend` (a flat group: collectives.dp_backend_fns): (all-gather fn, reduce-scatter fn) as the
    collective library runs them (gloo: reduce-scatter = a whole all-reduce plus copies), instead of
    allreduce_fn / 2 each; a stage-3 bucket then costs one of each."""
    none = GatherOverlap()
    if stage <= 1:
        return allreduce_fn, 0.0, none

    def half(n: float) -> float:
        return allreduce_fn(n) / 2 if n > 0 else 0.0

    ag, rs = backend or (half, half)
    gather = gather_fn or ag
    if stage == 2:
        return rs, float(gather(float(sum(layer_param_bytes)))), none
    gathers = [gather(float(b)) for b in layer_param_bytes]
    if overlap:
        bucket = allreduce_fn if backend is None else (lambda n: ag(n) + rs(n))
        exposed, slow = forward_gathers(gathers, forward_s, slowdown)
        ov = GatherOverlap(float(sum(gathers)) - exposed, slow).scaled(micro_steps)
        return bucket, exposed * micro_steps, ov
    if gather_fn is not None:  # hybrid: the bucket sync (hierarchical) is exposed anyway; forward gathers in full
        return allreduce_fn, float(sum(gathers)) * micro_steps, none
    scatters = [rs(float(b)) for b in layer_param_bytes]
    return (lambda n: 0.0), float(2 * sum(gathers) + sum(scatters)) * micro_steps, none
