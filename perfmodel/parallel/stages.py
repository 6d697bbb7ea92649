"""Pipeline stages of one rank: partition, per-stage times and sizes, activation recomputation, memory.

Recomputation ("full") follows perfmodel.recompute's "auto" segments: every segment but the last is
checkpointed, so its layers run their forward again during backward (Megatron-LM's full
recomputation: one extra forward of every transformer layer per micro-batch). "selective" (Megatron's
selective recomputation) runs only the attention core's forward again (Selective) and does not keep its
saved bytes. With activation offload (parallel/offload.py) the kept activations live in host memory (with full
recomputation: the checkpointed segments' inputs, offload_bytes). Memory per device is
that of the fullest stage: fp32 master weights, gradients and optimizer state (ZeRO-1: the optimizer
state sharded over the data-parallel replicas), the AMP low-precision weight copy, activations kept
for backward times the micro-batches in flight, the two largest per-layer buffers, the runtime reserve.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..engine.layers import cached
from ..engine.rates import fused_attention
from ..ops import Work
from ..engine.worktime import work_times
from ..hardware.traits import device_traits
from ..optimizers import optimizer_work
from .data_parallel import DDP_BUCKET_COPY_PASSES, GRAD_BYTES, make_buckets, sync_schedule
from ..graph.layer_graph import LayerGraph
from ..memory import MAX_BATCH, WORKSPACE_BUFFERS, largest_batch, memory_terms
from ..recompute import RecomputeLayout, checkpoint_parts, kept_activations, recompute_layout
from ..recompute import segments as recompute_segments
from ..result import MemoryFootprint
from ..ops import DTYPE_BYTES
from .offload import device_activations, exposed_copies
from .pipeline import best_partition, cut_cross_bytes, inflight_microbatches
from .sharding import pipelined_terms, shard_terms
from .rank import RankLayers, attention_core

RECOMPUTE_CHOICES = ("none", "full")
RECOMPUTE_PARTS = ("roof_compute", "roof_memory", "overhead")  # time = their sum (engine.worktime.stage_times)


@dataclass(frozen=True)
class Selective:
    """Megatron selective recomputation on one rank (Korthikanti et al. 2022): per layer, the attention core's
    forward (ops.attention.CORE_KEYS: scores, softmax, dropout, probs x V) run again in backward, in seconds per
    micro-batch (`time`, rank.attention_core's forward). Its saved bytes (core_saved) are not kept but for the
    one layer being back-propagated. No tensor-parallel collective is recomputed."""

    layers: np.ndarray
    time: np.ndarray


Recompute = RecomputeLayout | Selective


def core_saved(r: RankLayers) -> np.ndarray:
    """Per layer: saved bytes of the attention core on this rank (ops.attention extra core_saved_bytes, split like
    the layer's work)."""
    core = np.array([c.extra.get("core_saved_bytes", 0.0) for c in r.costs], dtype=float)
    if r.scale is not None:
        core = core * r.scale
    return np.minimum(core, r.saved)


def selective_info(graph: LayerGraph, r: RankLayers) -> Selective | None:
    """Selective recomputation of rank `r` (rank.attention_core's forward); None without an attention core, and
    None with fused attention (its backward already recomputes the core and its forward keeps none of it)."""
    if fused_attention(r.device):
        return None
    core = attention_core(graph, r)
    if core is None:
        return None
    return Selective(core["forward"] > 0, core["forward"])


def recompute_for(graph: LayerGraph, r: RankLayers, mode: str) -> Recompute | None:
    """The recomputation of `mode` ("none", "selective", "full") on rank `r`; None when nothing is recomputed."""
    if mode == "full":
        return recompute_info(graph)
    if mode == "selective":
        return selective_info(graph, r)
    return None


def recomputed_parts(stg: "Staged", a: int, e: int) -> float:
    """Seconds of recomputed forward work of layers [a, e) per micro-batch (the breakdown's `recompute`)."""
    rc, r = stg.recompute, stg.ranks
    if rc is None:
        return 0.0
    if isinstance(rc, Selective):
        return float(rc.time[a:e].sum())
    mask = rc.layers[a:e]
    return sum(float(r.st[k][a:e, 0][mask].sum()) for k in RECOMPUTE_PARTS)


def recompute_info(graph: LayerGraph) -> Recompute | None:
    """Full recomputation of `graph` ("auto" segments, memoised); None when nothing is recomputed (< 2 segments)."""
    def build():
        if len(recompute_segments(graph, "auto")) < 2:
            return None
        lay = recompute_layout(graph, "auto")
        return lay if lay.layers.any() else None

    return cached(graph, "_engine_recompute", ("full",), lambda: (build(),))[0]


def source_indices(graph: LayerGraph) -> tuple[tuple[int, ...], ...]:
    """Per layer: the indices of the layers it reads (memoised)."""
    def build():
        by_name = {l.name: l.index for l in graph.layers}
        return tuple(tuple(by_name[s] for s in l.input_names) for l in graph.layers)

    return cached(graph, "_engine_sources", (), build)


@dataclass(frozen=True)
class Staged:
    """One rank's layers cut into pp stages: per-layer and per-stage times (s) and sizes."""

    ranks: RankLayers
    recompute: Recompute | None
    pp: int
    ranges: tuple[tuple[int, int], ...]
    f_l: np.ndarray  # forward per layer, tensor-parallel collectives included
    b_l: np.ndarray  # backward per layer, collectives and recomputed forward included
    tpf_l: np.ndarray
    tpb_l: np.ndarray
    F: tuple[float, ...]  # per stage and micro-batch, AMP weight cast included
    B: tuple[float, ...]
    st_params: tuple[int, ...]
    st_tensors: tuple[int, ...]
    cast_share: tuple[float, ...]
    cross: tuple[float, ...]  # activation bytes crossing each stage boundary
    cpf_l: np.ndarray | None = None  # exposed context-parallel K/V ring per layer (parallel/context.py), forward
    cpb_l: np.ndarray | None = None  # and backward (recomputed forward included)
    offload: tuple[tuple[float, float], ...] | None = None  # per stage: exposed (forward, backward) offload copies
    epf_l: np.ndarray | None = None  # expert-parallel all-to-alls per layer (parallel/experts.py), forward
    epb_l: np.ndarray | None = None  # and backward (recomputed forward included)
    tp_slow_l: np.ndarray | None = None  # per layer: compute slowdown inside tpf_l + tpb_l (tp_overlap, overlap.py)
    tp_hidden_l: np.ndarray | None = None  # per layer: tensor-parallel seconds hidden behind the GEMMs (the same)

    @property
    def stage_layers(self) -> tuple[int, ...]:
        return tuple(e - a for a, e in self.ranges)


def _cross_bytes(ranges, output: np.ndarray, src_idx) -> list[float]:
    """Bytes crossing each stage boundary: outputs of earlier stages read by later ones (each once)."""
    pp = len(ranges)
    if pp == 1:
        return []
    n = len(output)
    so = np.empty(n, dtype=np.int64)
    for s, (a, e) in enumerate(ranges):
        so[a:e] = s
    last_use = so.copy()
    for j, srcs in enumerate(src_idx):
        for i in srcs:
            if so[j] > last_use[i]:
                last_use[i] = so[j]
    diff = np.zeros(pp + 1)
    np.add.at(diff, so, np.where(last_use > so, output, 0.0))
    np.add.at(diff, last_use, -np.where(last_use > so, output, 0.0))
    return [float(x) for x in np.cumsum(diff)[: pp - 1]]


def _step_times(ranks: RankLayers, optimizer: str, ddp_copies: bool, params, tensors) -> np.ndarray:
    """Optimizer step (+ DDP's bucket copies, data_parallel.ddp_copy_time) of stages of these sizes, vectorised."""
    style = device_traits(ranks.device).optimizer_kernels
    pt = [(int(p), int(t)) for p, t in zip(params, tensors)]
    out = work_times(tuple(optimizer_work(optimizer, p, t, style=style) for p, t in pt), ranks.rates,
                     "optimizer")["time"]
    if ddp_copies:
        works = tuple(Work("memory", flops=float(p), bytes_read=float(p * GRAD_BYTES * DDP_BUCKET_COPY_PASSES),
                           bytes_written=float(p * GRAD_BYTES * DDP_BUCKET_COPY_PASSES),
                           kernels=DDP_BUCKET_COPY_PASSES * max(1, t)) for p, t in pt)
        out = out + np.where(np.array([p for p, _ in pt]) > 0, work_times(works, ranks.rates)["time"], 0.0)
    return out


def _tail_fns(ranks: RankLayers, b_l: np.ndarray, optimizer: str | None, ddp_copies: bool, sync=None):
    """(head, tail) for pipeline.best_partition: the optimizer step (+ DDP copies) of stage 0 = [0, k) for every
    k (by parameter share), and the glue's exposed tail of a cut (iteration._tail: each stage's gradient
    all-reduce past its backward when `sync` = (allreduce_fn, bucket_bytes, overlap), copies, optimizer step)."""
    if optimizer is None:
        return None, None
    if sync is not None and sync[0](float(ranks.total_params) * GRAD_BYTES) == 0:
        sync = None  # no gradient all-reduce (dp = 1)
    bl = b_l.tolist()
    gb = ranks.grad_sync_bytes.tolist()
    cpar = np.concatenate(([0], np.cumsum(ranks.params))).astype(np.int64)
    cten = np.concatenate(([0], np.cumsum(ranks.tensors))).astype(np.int64)
    known: dict[tuple[int, int], float] = {}

    def stage_tail(a: int, e: int) -> float:
        """Exposed all-reduce + copies + optimizer step of stage [a, e) after its last backward."""
        v = 0.0
        if sync is not None and e > a:
            fn, bucket_bytes, overlap = sync
            B = float(sum(bl[a:e]))
            v = sync_schedule(make_buckets(bl[a:e], gb[a:e], bucket_bytes), B, fn, overlap).end_s - B
        return v

    # stage 0's step for every first cut, spread by parameters (a guide for the search; tail() is exact)
    head = float(_step_times(ranks, optimizer, ddp_copies, cpar[-1:], cten[-1:])[0]) * cpar / max(1, int(cpar[-1]))

    synced_: dict[tuple[int, int], float] = {}

    def tail(edges, timing, limit: float = np.inf) -> float:
        """The largest stage tail; stops early (returning a value >= limit) once one reaches `limit`."""
        T = timing.total_s
        todo = [(edges[s], edges[s + 1]) for s in range(len(edges) - 1) if (edges[s], edges[s + 1]) not in known]
        if todo:
            steps = _step_times(ranks, optimizer, ddp_copies, [cpar[e] - cpar[a] for a, e in todo],
                                [cten[e] - cten[a] for a, e in todo])
            for (a, e), st in zip(todo, steps):
                known[(a, e)] = float(st)
        base = [timing.last_backward_end_s[s] - T + known[(edges[s], edges[s + 1])] for s in range(len(edges) - 1)]
        worst = max(base)
        if worst >= limit:
            return worst
        for s in sorted(range(len(base)), key=lambda i: -base[i]):  # the exposed all-reduce only adds
            ae = (edges[s], edges[s + 1])
            if ae not in synced_:
                synced_[ae] = stage_tail(*ae)
            worst = max(worst, base[s] + synced_[ae])
            if worst >= limit:
                break
        return worst

    return head, tail


def _cut(graph: LayerGraph, ranks: RankLayers, f_l, b_l, pp: int, m: int, links, schedule: str,
         optimizer: str | None = None, ddp_copies: bool = False, k_acc: int = 1, sync=None):
    """Cut points of the least predicted iteration (the AMP cast is spread over the layers by parameters)."""
    total = ranks.total_params
    cast_l = np.zeros(len(f_l))
    if total:
        cast_l = ranks.cast.time_s * np.asarray(ranks.params, dtype=float) / total
    elif len(cast_l):
        cast_l[0] = ranks.cast.time_s
    cross = cut_cross_bytes(ranks.output, source_indices(graph))
    X = []
    for s in range(pp - 1):
        bw, lat = links[s] if links else (float("inf"), 0.0)
        X.append(np.where(cross > 0, lat + cross / bw, 0.0))
    head, tail = _tail_fns(ranks, b_l, optimizer, ddp_copies, sync)
    return best_partition(f_l + cast_l, b_l, X, max(1, m), schedule if schedule in ("1f1b", "gpipe") else "1f1b",
                          k_acc=k_acc, tail=tail, head=head)


def staged(graph: LayerGraph, ranks: RankLayers, tp_f: np.ndarray, tp_b: np.ndarray, rc: Recompute | None,
           pp: int, m: int = 1, links: tuple[tuple[float, float], ...] | None = None,
           schedule: str = "1f1b", optimizer: str | None = None, ddp_copies: bool = False,
           k_acc: int = 1, sync=None, cp_comm: tuple[np.ndarray, np.ndarray] | None = None,
           ep_comm: tuple[np.ndarray, np.ndarray] | None = None) -> Staged:
    """Partition the rank's layers into pp stages minimising the predicted pipeline time of m micro-batches
    (pipeline.best_partition: per-layer forward + backward with memory traffic, the AMP cast, and the activations
    sent across each boundary on `links`, (bandwidth B/s, latency s) per boundary; None: no transfer cost; with
    `optimizer`, each stage's optimizer step (DDP copies, and with `sync` = (allreduce_fn, bucket_bytes, overlap)
    its exposed gradient all-reduce) after its last backward, for k_acc pipelines). `cp_comm`: per-layer exposed
    context-parallel ring seconds (forward, backward), context.cp_comm; `ep_comm`: per-layer expert-parallel
    all-to-all seconds (forward, backward), experts.expert_comm."""
    cpf, cpb = cp_comm if cp_comm is not None else (None, None)
    epf, epb = ep_comm if ep_comm is not None else (None, None)
    f_l = ranks.fwd + tp_f + (cpf if cpf is not None else 0.0) + (epf if epf is not None else 0.0)
    b_l = ranks.bwd + tp_b + (cpb if cpb is not None else 0.0) + (epb if epb is not None else 0.0)
    tpb = tp_b
    if isinstance(rc, Selective):
        b_l = b_l + rc.time  # the attention core's forward again (no collective)
    elif rc is not None:
        b_l = b_l + np.where(rc.layers, f_l, 0.0)  # forward again, tensor-parallel and cp collectives included
        tpb = tp_b + np.where(rc.layers, tp_f, 0.0)
        if cpf is not None:
            cpb = cpb + np.where(rc.layers, cpf, 0.0)
        if epf is not None:
            epb = epb + np.where(rc.layers, epf, 0.0)
    n = len(f_l)
    ranges = _cut(graph, ranks, f_l, b_l, pp, m, links, schedule, optimizer, ddp_copies, k_acc, sync) \
        if pp > 1 else ((0, n),)
    cf, cb = np.concatenate(([0.0], np.cumsum(f_l))), np.concatenate(([0.0], np.cumsum(b_l)))
    cpar = np.concatenate(([0], np.cumsum(ranks.params)))
    cten = np.concatenate(([0], np.cumsum(ranks.tensors)))
    total = ranks.total_params
    st_params = tuple(int(cpar[e] - cpar[a]) for a, e in ranges)
    share = tuple((p / total if total else (1.0 if s == 0 else 0.0)) for s, p in enumerate(st_params))
    cast = ranks.cast.time_s
    F = tuple(float(cf[e] - cf[a]) + cast * share[s] for s, (a, e) in enumerate(ranges))
    B = tuple(float(cb[e] - cb[a]) for a, e in ranges)
    cross = tuple(_cross_bytes(ranges, ranks.output, source_indices(graph)))
    return Staged(ranks, rc, pp, ranges, f_l, b_l, tp_f, tpb, F, B, st_params,
                  tuple(int(cten[e] - cten[a]) for a, e in ranges), share, cross, cpf, cpb, epf_l=epf, epb_l=epb)


def kept_per_layer(r: RankLayers, rc: Recompute | None) -> np.ndarray:
    """Per layer: activation bytes kept for backward per micro-batch without full recomputation (selective: the
    attention core is not kept)."""
    return r.saved - core_saved(r) if isinstance(rc, Selective) else r.saved


def offload_bytes(stg: Staged) -> list[float]:
    """Per stage: activation bytes one micro-batch sends to the host with offload (parallel/offload.py): the tensors
    kept for backward (kept_per_layer); with full recomputation, as Megatron-LM offloads them, the checkpointed
    segments' inputs and the saved tensors of the layers outside checkpointed segments (recompute.checkpoint_parts)."""
    r, rc = stg.ranks, stg.recompute
    if isinstance(rc, RecomputeLayout):
        parts = (checkpoint_parts(r.saved, r.output, rc, a, e) for a, e in stg.ranges)
        return [float(sum(sizes)) + plain for sizes, plain, _ in parts]
    kept = kept_per_layer(r, rc)
    return [float(kept[a:e].sum()) for a, e in stg.ranges]


def offloaded(stg: Staged, bandwidth_Bps: float, latency_s: float) -> Staged:
    """`stg` with its kept activations offloaded to the host (parallel/offload.py): F and B per stage grow by the
    exposed copies (B with the recomputed forward of full recomputation), recorded in `offload`."""
    exp = exposed_copies(stg.F, stg.B, offload_bytes(stg), bandwidth_Bps, latency_s)
    return replace(stg, F=tuple(f + x[0] for f, x in zip(stg.F, exp)), B=tuple(b + x[1] for b, x in zip(stg.B, exp)),
                   offload=exp)


def _activations(r: RankLayers, rc: Recompute | None, a: int, e: int, inflight: int, offload: bool = False
                 ) -> float:
    """Activation bytes a stage keeps: saved tensors x micro-batches in flight; with selective recomputation
    without the attention cores but one; with full recomputation perfmodel.recompute.kept_activations
    (checkpointed inputs per micro-batch plus one re-materialised segment)."""
    inputs = float(r.output[a:e][r.is_input[a:e]].sum())
    if offload and isinstance(rc, RecomputeLayout):  # checkpoints in transit, and what one backward re-materialises
        sizes, plain, big = checkpoint_parts(r.saved, r.output, rc, a, e)
        return device_activations(np.asarray(sizes, dtype=float), inputs, inflight) + max(plain, big)
    if offload:
        return device_activations(kept_per_layer(r, rc)[a:e], inputs, inflight)
    if isinstance(rc, Selective):  # the core of one layer is re-materialised during its backward
        core = core_saved(r)[a:e]
        return (float(r.saved[a:e].sum() - core.sum()) + inputs) * inflight + float(core.max(initial=0.0))
    if rc is None:
        return (float(r.saved[a:e].sum()) + inputs) * inflight
    return kept_activations(r.saved, r.output, inputs, rc, a, e, inflight)[0]


def stage_memory(stg: Staged, optimizer: str, schedule: str, m: int, zero_dp: float | tuple[float, ...] = 1,
                 ranks: RankLayers | None = None, zero: int = 1, virtual: int = 1, offload: bool = False,
                 unsharded: np.ndarray | None = None) -> list[dict[str, float]]:
    """Memory terms (bytes) of every stage; `zero_dp` > 1 (or one figure per stage) shards the optimizer state
    over that many replicas,
    with `zero` >= 2 also gradients, 3 also parameters (sharding.shard_terms; the full parameters of the two
    largest layers, current and prefetched, are gathered at once in the compute dtype; with a pipeline
    sharding.pipelined_terms: the stage's parameters gathered for the whole step, its gradients unsharded). `virtual` > 1
    (interleaved 1F1B) multiplies the micro-batches in flight by 1 + (pp - 1)/(pp v), Korthikanti's first-stage
    factor, on every stage (an upper bound for the later ones). `offload`: kept activations live on the host
    (offload.device_activations). `unsharded`: per layer, parameters no rank shares (experts when dp = ep), which
    stage 3 never gathers.

    `ranks`: the same rank at another micro-batch (same stage cut), for the slope of footprint().
    """
    r = stg.ranks if ranks is None else ranks
    out = []
    for s, (a, e) in enumerate(stg.ranges):
        inflight = inflight_microbatches(schedule, stg.pp, m, s) if stg.pp > 1 else 1
        if virtual > 1:
            inflight = inflight * (1 + (stg.pp - 1) / (stg.pp * virtual))
        outw = np.sort(r.output[a:e] + r.workspace[a:e])[::-1]
        acts = _activations(r, stg.recompute, a, e, inflight, offload)
        zd = zero_dp[s] if isinstance(zero_dp, tuple) else zero_dp
        terms = memory_terms(stg.st_params[s], r.dtype, optimizer, acts,
                             float(outw[:WORKSPACE_BUFFERS].sum()), r.device.runtime_reserved_bytes,
                             zd if zero < 2 else 1)
        gatherable = r.params[a:e] if unsharded is None else r.params[a:e] - unsharded[a:e]
        if zero >= 3 and stg.pp > 1:  # FSDP + PP: the stage's parameters stay gathered, its gradients unsharded
            terms = pipelined_terms(terms, zd, float(gatherable.sum()) * DTYPE_BYTES[r.dtype])
        elif zero >= 2:
            gathered = float(np.sort(gatherable)[::-1][:2].sum()) * DTYPE_BYTES[r.dtype]
            terms = shard_terms(terms, zero, zd, gathered)
        out.append(terms)
    return out


def fullest(terms: list[dict[str, float]]) -> tuple[int, float]:
    """(stage, total bytes) of the stage that needs most memory."""
    totals = [sum(t.values()) for t in terms]
    s = max(range(len(totals)), key=lambda i: totals[i])
    return s, totals[s]


def footprint(terms: dict[str, float], terms2: dict[str, float], mb: int, mb2: int, m: int,
              capacity: float) -> MemoryFootprint:
    """The footprint of one stage at micro-batch `mb`, and the largest batch per replica that fits.

    Activations and workspace are affine in the micro-batch (per-channel statistics are a constant
    part), so the slope comes from the same stage at a second micro-batch `mb2`.
    """
    total = sum(terms.values())
    var = terms["activations_bytes"] + terms["workspace_bytes"]
    var2 = terms2["activations_bytes"] + terms2["workspace_bytes"]
    per_sample = (var - var2) / (mb - mb2)
    fixed = total - per_sample * mb
    max_mb = largest_batch(fixed, per_sample, capacity)
    return MemoryFootprint(**terms, total_bytes=total, capacity_bytes=capacity, fits=total <= capacity,
                           max_batch=min(MAX_BATCH, max_mb * m),
                           bytes_per_sample=per_sample / m)


__all__ = ["RECOMPUTE_CHOICES", "Recompute", "Selective", "Staged", "core_saved", "footprint", "fullest",
           "kept_per_layer", "offload_bytes", "offloaded", "recompute_for", "recompute_info", "recomputed_parts",
           "selective_info", "stage_memory", "staged", "source_indices"]
