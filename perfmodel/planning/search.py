"""Plan search: the fastest (or cheapest) data x tensor x pipeline plan that fits in device memory.

`plan_search(network, hardware, devices=N, global_batch=B)` enumerates, prunes and times candidate
plans and returns a `PlanResult`: the ranked plans, each with a breakdown whose parts add up to its
iteration time, its memory per device, model-FLOPs utilisation and (when priced) cost, plus a
sentence on why the best plan beats the runner-up.

Search space (every dimension can be narrowed by an argument):
- tp: powers of two up to the devices per node (tensor parallelism stays inside a node, on the
  fastest link), dividing the devices used per node, and dividing every attention layer's heads;
- pp: divisors of the number of repeated blocks (transformer layers: layer names `h.<i>.*`, as
  perfmodel.recompute groups them), or powers of two up to half the parameterised layers for networks
  without repeated blocks; pp must divide N / tp;
- dp = N / (tp pp), and the global batch must split evenly: B = dp x microbatch x microbatches;
- micro-batch sizes: powers of two dividing B / dp, plus B / dp itself (one micro-batch);
- activation recomputation: "none" or "full" (checkpoint every segment of perfmodel.recompute's
  "auto" rule but the last, i.e. every transformer layer: one extra forward of those layers per
  micro-batch, Megatron-LM's full recomputation);
- dtype: the best low-precision (bf16, else fp16) and full-precision (tf32, else fp32) compute type
  the device supports;
- schedule: 1F1B and GPipe when pp > 1 (same time; GPipe keeps all micro-batches' activations).
- objective "cost": plans may also use N/2, N/4, ... devices (at a fixed device count cost is
  proportional to time, so the only way to save money is to use fewer devices more efficiently).

Without a pipeline (pp = 1), "microbatches" are gradient-accumulation steps (predict's
grad_accumulation); with a pipeline they are the pipeline's micro-batches.

How it stays fast (GPT-3 175B on 1024 GPUs in a few seconds):
1. per-layer op costs (perfmodel.ops graph_costs) are computed once per (micro-batch, dtype);
2. their per-layer, per-stage times are computed with a numpy version of perfmodel.compute.work_time
   over all Work items at once (`stage_times`, tested equal to perfmodel.step.stage_time), once per
   (micro-batch, dtype, tp), with the Megatron split of perfmodel.parallel.tensor (split layers'
   FLOPs, bytes and parameters / tp, plus their activation all-reduces on the tensor-parallel tier);
3. static memory (weights, gradients, optimizer state over tp x pp) prunes (tp, pp, dtype) before
   anything is timed, and each candidate's exact memory is checked right after its pipeline
   partition, before its schedule and gradient synchronisation are timed;
4. everything that does not depend on the micro-batch count or the schedule (partition, buckets,
   gradient all-reduce schedule, optimizer time) is computed once and shared.

The glue of one plan's iteration time mirrors perfmodel.parallel.predict.predict_parallel (synchronous
training) and calls the same functions for every formula (collectives, partition, schedule_time,
make_buckets, sync_schedule, tensor_parallel_layout, inflight_microbatches, data_flow,
straggler_delay); tests/test_plan_search.py checks that both agree on every plan of a brute-force
enumeration. predict() has no activation recomputation and no ZeRO, so plans with recompute="full" or
zero1=True are modelled here only (see `_recompute_info` and `zero1`). Known gap: the vectorised
per-layer times ignore the calibrated-CPU extras of a profile (Efficiency.elementwise and
stage_factors), so for a calibrated CPU profile they differ slightly from predict(); datasheet GPU
profiles, which have neither, agree exactly.

ZeRO-1 (`zero1=True`, off by default): optimizer state is sharded over the dp replicas (memory only;
the reduce-scatter + all-gather that replaces the all-reduce moves the same bytes on a ring, so the
time is left unchanged, and the smaller optimizer step is not credited).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .compute import Rates, device_rates
from .engine.worktime import WorkTable, curve_at, stage_times, work_table  # noqa: F401  (curve_at: tests)
from .dataflow import data_flow, input_bytes_per_sample
from .errors import InputError
from .graph.io import load_network
from .graph.layer_graph import LayerGraph
from .hardware.loader import load_hardware
from .hardware.topology import System, resolve_system
from .ops import DTYPE_BYTES, STAGES, OpCost
from .ops.base import graph_costs
from .optimizers import MASTER_BYTES, OPTIMIZER_NAMES, optimizer_state_bytes, optimizer_work
from .parallel import collectives as C
from .parallel.data_parallel import GRAD_BYTES, ddp_copy_time, make_buckets, sync_schedule
from .parallel.pipeline import inflight_microbatches, partition, schedule_time
from .parallel.plan import ALLREDUCE_CHOICES, Placement, Plan, dp_allreduce_fn, place
from .parallel.sync_modes import straggler_delay
from .parallel.tensor import tensor_parallel_layout
from .recompute import segments as recompute_segments
from .step import AMP_WEIGHT_CAST, LOWP, StageTime, stage_time

OBJECTIVES = ("time", "cost")
RECOMPUTE_CHOICES = ("none", "full")
SCHEDULE_CHOICES = ("1f1b", "gpipe")
DEFAULT_OPTIMIZER = "adam"  # mixed-precision Adam: what large models are trained with
DEFAULT_BATCH_PER_DEVICE = 32  # default global batch = 32 x devices (predict's default batch per replica)
LOW_PRECISION_PREFERENCE = ("bf16", "fp16")
FULL_PRECISION_PREFERENCE = ("tf32", "fp32")
# objective="cost": also try N/2, N/4, ... devices, at most this many halvings
COST_DEVICE_HALVINGS = 6
# two plans whose times differ by less than this fraction tie; the one with less memory ranks first
TIE_REL = 1e-9
# breakdown parts of a plan (they add up to iteration_time_s): predict's parts with "communication"
# split per parallel dimension and the recomputed forward shown on its own
PLAN_PARTS = ("compute", "memory", "overhead", "recompute", "tensor_comm", "pipeline_comm", "data_comm",
              "bubble", "straggler", "host_to_device", "io")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanRow(_Frozen):
    """One evaluated plan: its degrees and knobs, time with breakdown, memory per device, MFU, cost."""

    rank: int = 0
    devices: int
    nodes: int
    dp: int
    tp: int
    pp: int
    microbatch: int = Field(description="samples per micro-batch per replica")
    microbatches: int = Field(description="micro-batches per replica per iteration (gradient accumulation when pp=1)")
    recompute: str
    dtype: str
    schedule: str | None = Field(description="1f1b or gpipe; None without a pipeline")
    global_batch: int
    iteration_time_s: float
    throughput_samples_per_s: float
    breakdown: dict[str, float] = Field(description="parts adding up to iteration_time_s (PLAN_PARTS)")
    memory_bytes: float = Field(description="per device, on the fullest pipeline stage")
    memory: dict[str, float] = Field(description="weights, gradients, optimizer, activations, workspace, reserved")
    memory_limit_bytes: float
    fits: bool
    model_flops: float = Field(description="forward + backward FLOPs of the iteration, without recomputation")
    mfu: float = Field(description="model FLOPs / (time x devices x peak of the dtype)")
    mfu_6nd: float | None = Field(default=None, description="6 x params x tokens / (time x devices x peak); transformers")
    tflops_per_device: float = Field(description="model FLOP/s per device, in TFLOP/s")
    cost_per_iteration: float | None = None
    bubble_fraction: float = 0.0
    stage_layers: tuple[int, ...] = Field(default=(), description="layers per pipeline stage")

    def label(self) -> str:
        s = f"dp={self.dp} tp={self.tp} pp={self.pp} mb={self.microbatch}x{self.microbatches}"
        s += f" {self.dtype} recompute={self.recompute}"
        if self.schedule:
            s += f" {self.schedule}"
        return s

    def predict_options(self) -> dict[str, Any]:
        """Keyword arguments for perfmodel.predict that describe the same plan (recompute=none only)."""
        plan = {"dp": self.dp, "tp": self.tp, "pp": self.pp}
        opts: dict[str, Any] = {"dtype": self.dtype, "devices": self.devices}
        if self.pp > 1:
            plan.update(microbatches=self.microbatches, schedule=self.schedule)
            opts["batch"] = self.microbatch * self.microbatches
        else:
            opts["batch"] = self.microbatch
            if self.microbatches > 1:
                opts["grad_accumulation"] = self.microbatches
        opts["plan"] = plan
        return opts


class PlanResult(_Frozen):
    """The outcome of a plan search: ranked plans and why the best one wins."""

    network: str
    hardware: str
    devices: int
    global_batch: int
    objective: str
    optimizer: str
    allreduce: str
    zero1: bool
    price_per_device_hour: float | None
    price_source: str
    plans: tuple[PlanRow, ...]
    why: str
    candidates: int = Field(description="plans enumerated")
    pruned_static_memory: int = Field(description="dropped by weights/gradients/optimizer state alone, before timing")
    dropped_memory: int = Field(description="dropped by the exact memory check after partitioning")
    fitting: int = Field(description="plans that fit and were timed")
    search_time_s: float
    assumptions: dict[str, Any] = Field(default_factory=dict)

    @property
    def best(self) -> PlanRow:
        if not self.plans:
            raise InputError("no plan fits in device memory")
        return self.plans[0]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# vectorised per-layer stage times (equal to perfmodel.step.stage_time per layer and stage)

# ---------------------------------------------------------------------------------------------
# cached levels of the search


@dataclass
class _Base:
    """Op costs at one (micro-batch, dtype), unsplit."""

    mb: int
    dtype: str
    costs: tuple[OpCost, ...]
    table: WorkTable
    rates: Rates
    model_flops_mb: float  # forward + backward FLOPs of one micro-batch (whole model)
    input_bps: float  # input bytes per sample on the device


@dataclass
class _Sharded:
    """Per-layer times and sizes on one tensor-parallel rank at one (micro-batch, dtype, tp)."""

    base: _Base
    tp: int
    f: np.ndarray  # forward time incl. tp collectives, per layer
    b: np.ndarray  # backward time incl. tp collectives, per layer (without recomputation)
    tp_f: np.ndarray
    tp_b: np.ndarray
    parts: dict[str, np.ndarray]  # [n, 3] roof_compute / roof_memory / overhead per stage
    fparts: dict[str, np.ndarray]  # forward-only parts per layer
    params: np.ndarray
    tensors: np.ndarray
    saved: np.ndarray
    output: np.ndarray
    workspace: np.ndarray
    total_params: int
    cast: StageTime


@dataclass
class _Recompute:
    """Which layers run their forward twice and the segments for the memory of recomputation."""

    layers: np.ndarray  # bool per layer
    segment_of: np.ndarray  # int per layer: checkpointed segment index, -1 if not checkpointed
    sources: list[list[int]]  # per checkpointed layer on the backward path: its non-input sources


@dataclass
class _Search:
    graph: LayerGraph
    optimizer: str
    allreduce: str
    overlap: bool
    bucket_bytes: float | None
    straggler_cv: float
    zero1: bool
    rc: _Recompute | None = None
    bases: dict = field(default_factory=dict)
    shards: dict = field(default_factory=dict)
    split_params: dict = field(default_factory=dict)


def _base(S: _Search, mb: int, dtype: str, device) -> _Base:
    key = (mb, dtype)
    hit = S.bases.get(key)
    if hit is None:
        costs = graph_costs(S.graph, mb, DTYPE_BYTES[dtype])
        fl = sum(c.flops("forward") + c.flops("backward_data") + c.flops("backward_weight") for c in costs)
        hit = S.bases[key] = _Base(mb, dtype, costs, work_table(costs), device_rates(device, dtype), fl,
                                   input_bytes_per_sample(S.graph, dtype))
    return hit


def _param_tensors(c: OpCost) -> int:
    return int(c.extra.get("param_tensors", 2 if c.params else 0))


def _sharded(S: _Search, base: _Base, tp: int, tier_bw: float, tier_lat: float, device) -> _Sharded:
    key = (base.mb, base.dtype, tp)
    hit = S.shards.get(key)
    if hit is not None:
        return hit
    g = S.graph
    n = len(g.layers)
    costs = base.costs
    layout = tensor_parallel_layout(g, costs, tp)
    split = np.array([t.split for t in layout], dtype=bool)
    scale = np.where(split, 1.0 / tp, 1.0) if tp > 1 else None
    st = stage_times(base.table, base.rates, scale)
    tp_f = np.zeros(n)
    tp_b = np.zeros(n)
    if tp > 1:
        ar = lru_cache(maxsize=None)(lambda x: C.ring_allreduce(x, tp, tier_bw, tier_lat))
        ag = lru_cache(maxsize=None)(lambda x: C.all_gather(x, tp, tier_bw, tier_lat))
        for i, t in enumerate(layout):
            tp_f[i] = ar(t.fwd_allreduce_bytes) + ag(t.fwd_allgather_bytes)
            tp_b[i] = ar(t.bwd_allreduce_bytes)
    tm = st["time"]
    f = tm[:, 0] + tp_f
    b = tm[:, 1] + tm[:, 2] + tp_b
    params = np.array([c.params for c in costs], dtype=np.int64)
    saved = np.array([c.saved_bytes for c in costs], dtype=float)
    output = np.array([c.output_bytes for c in costs], dtype=float)
    workspace = np.array([c.workspace_bytes for c in costs], dtype=float)
    if tp > 1:
        params = np.where(split, -(-params // tp), params)
        saved = np.where(split, saved / tp, saved)
        out_split = np.array([t.split and t.role in ("column", "elementwise") for t in layout], dtype=bool)
        output = np.where(out_split, output / tp, output)
        workspace = np.where(split, workspace / tp, workspace)
    tensors = np.array([_param_tensors(c) for c in costs], dtype=np.int64)
    total = int(params.sum())
    bb = DTYPE_BYTES[base.dtype]
    if AMP_WEIGHT_CAST and base.dtype in LOWP and total:
        from .ops.base import Work

        cast = stage_time((Work("memory", flops=0.0, bytes_read=4.0 * total, bytes_written=float(bb * total),
                                kernels=max(1, int(tensors.sum()))),), base.rates)
    else:
        cast = StageTime()
    parts = {k: st[k] for k in ("roof_compute", "roof_memory", "overhead")}
    fparts = {k: v[:, 0] for k, v in parts.items()}
    hit = S.shards[key] = _Sharded(base, tp, f, b, tp_f, tp_b, parts, fparts, params, tensors, saved, output,
                                   workspace, total, cast)
    return hit


def _recompute_info(graph: LayerGraph) -> _Recompute | None:
    """Recomputation as perfmodel.recompute defines it: every segment but the last is checkpointed.

    Returns None when there is nothing to recompute (fewer than two segments).
    """
    segs = recompute_segments(graph, "auto")
    if len(segs) < 2:
        return None
    n = len(graph.layers)
    seg_of = np.full(n, -1, dtype=np.int64)
    is_input = [l.op == "input" for l in graph.layers]
    for si, s in enumerate(segs[:-1]):
        for i in s:
            seg_of[i] = si
    layers = np.array([seg_of[i] >= 0 and graph.layers[i].in_backward and not is_input[i] for i in range(n)])
    if not layers.any():
        return None
    by_name = {l.name: l.index for l in graph.layers}
    sources: list[list[int]] = [[] for _ in range(n)]
    for l in graph.layers:
        if seg_of[l.index] < 0 or not l.in_backward:
            continue
        sources[l.index] = [by_name[src] for src in l.input_names if not is_input[by_name[src]]]
    return _Recompute(layers, seg_of, sources)


# ---------------------------------------------------------------------------------------------
# one staged candidate: (micro-batch, dtype, tp, recompute, pp) on a placement


@dataclass
class _Staged:
    sh: _Sharded
    recompute: bool
    pp: int
    ranges: tuple[tuple[int, int], ...]
    f_l: np.ndarray
    b_l: np.ndarray
    tpf_l: np.ndarray
    tpb_l: np.ndarray
    F: list[float]
    B: list[float]
    st_params: list[int]
    st_tensors: list[int]
    cast_share: list[float]
    cross: list[float]
    stage_layers: tuple[int, ...]


def _stage_of(ranges, n: int) -> np.ndarray:
    so = np.empty(n, dtype=np.int64)
    for s, (a, e) in enumerate(ranges):
        so[a:e] = s
    return so


def _cross_bytes(graph: LayerGraph, ranges, output: np.ndarray, src_idx: list[list[int]]) -> list[float]:
    """Bytes crossing each stage boundary: outputs of earlier stages read by later ones (each once)."""
    pp = len(ranges)
    if pp == 1:
        return []
    so = _stage_of(ranges, len(graph.layers))
    last_use = np.full(len(graph.layers), -1, dtype=np.int64)
    for j, srcs in enumerate(src_idx):
        for i in srcs:
            if so[j] > last_use[i]:
                last_use[i] = so[j]
    diff = np.zeros(pp + 1)
    for i in range(len(graph.layers)):
        if last_use[i] > so[i]:
            diff[so[i]] += output[i]
            diff[last_use[i]] -= output[i]
    return [float(x) for x in np.cumsum(diff)[: pp - 1]]


def _staged(sh: _Sharded, rc: _Recompute | None, pp: int, graph: LayerGraph, src_idx) -> _Staged:
    f_l = sh.f
    tpf = sh.tp_f
    tpb = sh.tp_b
    if rc is not None:
        extra = np.where(rc.layers, sh.f, 0.0)  # forward again, tensor-parallel all-reduces included
        b_l = sh.b + extra
        tpb = sh.tp_b + np.where(rc.layers, sh.tp_f, 0.0)
    else:
        b_l = sh.b
    n = len(f_l)
    fl, bl = f_l.tolist(), b_l.tolist()
    ranges = partition([x + y for x, y in zip(fl, bl)], pp) if pp > 1 else ((0, n),)
    total_params = sh.total_params
    pl = sh.params.tolist()
    tl = sh.tensors.tolist()
    st_params = [sum(pl[a:e]) for a, e in ranges]
    st_tensors = [sum(tl[a:e]) for a, e in ranges]
    cast_share = [(p / total_params if total_params else (1.0 if s == 0 else 0.0)) for s, p in enumerate(st_params)]
    F = [sum(fl[a:e]) + sh.cast.time_s * cast_share[s] for s, (a, e) in enumerate(ranges)]
    B = [sum(bl[a:e]) for a, e in ranges]
    cross = _cross_bytes(graph, ranges, sh.output, src_idx)
    return _Staged(sh, rc is not None, pp, ranges, f_l, b_l, tpf, tpb, F, B, st_params, st_tensors, cast_share,
                   cross, tuple(e - a for a, e in ranges))


def _memory(S: _Search, stg: _Staged, rc: _Recompute | None, schedule: str, m: int, dp: int, device,
            is_input: np.ndarray) -> tuple[float, dict[str, float]]:
    """Per-device memory of the fullest stage (as predict_parallel's _memory), with recomputation and ZeRO-1."""
    sh = stg.sh
    b = DTYPE_BYTES[sh.base.dtype]
    lowp = sh.base.dtype in LOWP
    best = None
    for s, (a, e) in enumerate(stg.ranges):
        p = stg.st_params[s]
        inflight = inflight_microbatches(schedule, stg.pp, m, s) if stg.pp > 1 else 1
        inputs = float(sh.output[a:e][is_input[a:e]].sum())
        saved = sh.saved[a:e]
        if rc is None:
            acts = (float(saved.sum()) + inputs) * inflight
        else:
            # kept per in-flight micro-batch: network inputs, checkpointed segments' inputs, and the
            # saved tensors of layers that are not recomputed; once: the largest checkpointed segment
            # of this stage (re-materialised during its backward), or the non-recomputed layers'
            # saved tensors if larger (with one micro-batch in flight only one of them is alive)
            segs = rc.segment_of[a:e]
            ck = segs >= 0
            plain = float(saved[~ck].sum())
            kept: set[int] = set()
            for i in range(a, e):  # inputs of each checkpointed segment's part on this stage
                for j in rc.sources[i]:
                    if rc.segment_of[j] != rc.segment_of[i] or j < a:
                        kept.add(j)
            ckpt = float(sum(sh.output[j] for j in kept))
            if ck.any():
                seg_saved = np.bincount(segs[ck] - segs[ck].min(), weights=saved[ck])
                big = float(seg_saved.max())
            else:
                big = 0.0
            acts = (inputs + ckpt) * inflight + plain * (inflight - 1) + max(plain, big)
        outw = np.sort(sh.output[a:e] + sh.workspace[a:e])[::-1]
        ws = float(outw[:2].sum())
        opt_state = optimizer_state_bytes(S.optimizer, p)
        if S.zero1 and dp > 1:
            opt_state /= dp
        t = {
            "weights_bytes": float(p * MASTER_BYTES + (p * b if lowp else 0)),
            "gradients_bytes": float(p * MASTER_BYTES),
            "optimizer_bytes": opt_state,
            "activations_bytes": float(acts),
            "workspace_bytes": ws,
            "reserved_bytes": float(device.runtime_reserved_bytes),
        }
        total = sum(t.values())
        if best is None or total > best[0]:
            best = (total, t)
    assert best is not None
    return best


@dataclass
class _Synced:
    """Gradient synchronisation and optimizer per stage of one staged candidate on one placement."""

    sched: list
    opt: list[StageTime]
    xfer: list[float]
    copy: list[StageTime]  # DDP's bucket copy passes (none without data-parallel peers)


def _synced(S: _Search, stg: _Staged, pl: Placement, ar_fn, device) -> _Synced:
    sh = stg.sh
    if stg.pp == 1:
        opt = [stage_time((optimizer_work(S.optimizer, sh.total_params, int(sh.tensors.sum()),
                                          gpu=not device.is_cpu),), sh.base.rates)]
    else:
        opt = [stage_time((optimizer_work(S.optimizer, p, t, gpu=not device.is_cpu),), sh.base.rates)
               for p, t in zip(stg.st_params, stg.st_tensors)]
    bl = stg.b_l.tolist()
    gb_all = (sh.params * GRAD_BYTES).astype(float).tolist()
    sched = []
    for s, (a, e) in enumerate(stg.ranges):
        bk = make_buckets(bl[a:e], gb_all[a:e], S.bucket_bytes)
        sched.append(sync_schedule(bk, stg.B[s], ar_fn, S.overlap))
    xfer = [C.point_to_point(stg.cross[s], 2, pl.pp_tiers[s].bandwidth_Bps, pl.pp_tiers[s].latency_s)
            for s in range(stg.pp - 1)]
    if stg.pp == 1:
        st = [(sh.total_params, int(sh.tensors.sum()))]
    else:
        st = list(zip(stg.st_params, stg.st_tensors))
    copy = [ddp_copy_time(p, t, sh.base.rates) if pl.plan.dp > 1 else StageTime() for p, t in st]
    return _Synced(sched, opt, xfer, copy)


def _iteration(S: _Search, stg: _Staged, syn: _Synced, m: int, k_acc: int, schedule: str, n_dev: int,
               flow: tuple[float, float, float], system: System) -> tuple[float, dict[str, float], float]:
    """Iteration time, breakdown (PLAN_PARTS) and bubble fraction: the glue of predict_parallel."""
    sh = stg.sh
    pp = stg.pp
    timing = schedule_time(stg.F, stg.B, syn.xfer, m, schedule)
    pipe_T = timing.total_s
    start_last_bwd = [timing.last_backward_end_s[s] - stg.B[s] for s in range(pp)]
    base = (k_acc - 1) * pipe_T
    stage_end = [base + start_last_bwd[s] + syn.sched[s].end_s + syn.copy[s].time_s + syn.opt[s].time_s
                 for s in range(pp)]
    core_end = max(stage_end)
    s_star = max(range(pp), key=lambda s: stage_end[s])
    tail = core_end - k_acc * pipe_T
    opt_part = min(syn.opt[s_star].time_s, max(0.0, tail))
    copy_part = min(syn.copy[s_star].time_s, max(0.0, tail - opt_part))
    sync_exposed = max(0.0, tail - opt_part - copy_part)

    crit = timing.critical_stage
    a, e = stg.ranges[crit]
    reps = k_acc * m
    bd = dict.fromkeys(PLAN_PARTS, 0.0)
    names = (("compute", "roof_compute"), ("memory", "roof_memory"), ("overhead", "overhead"))
    cs = stg.cast_share[crit]
    cast_parts = {"compute": sh.cast.roof_compute_s, "memory": sh.cast.roof_memory_s, "overhead": sh.cast.overhead_s}
    for key, arr in names:
        bd[key] = (float(sh.parts[arr][a:e].sum()) + cast_parts[key] * cs) * reps
    if stg.recompute:
        rc_mask = S.rc.layers[a:e]
        bd["recompute"] = sum(float(sh.fparts[arr][a:e][rc_mask].sum()) for _, arr in names) * reps
    ot = syn.opt[s_star]
    scale = opt_part / ot.time_s if ot.time_s > 0 else 0.0
    bd["compute"] += ot.roof_compute_s * scale
    bd["memory"] += ot.roof_memory_s * scale
    bd["overhead"] += ot.overhead_s * scale
    ct = syn.copy[s_star]
    cscale = copy_part / ct.time_s if ct.time_s > 0 else 0.0
    bd["compute"] += ct.roof_compute_s * cscale
    bd["memory"] += ct.roof_memory_s * cscale
    bd["overhead"] += ct.overhead_s * cscale
    tp_crit = float(stg.tpf_l[a:e].sum() + stg.tpb_l[a:e].sum())
    bd["tensor_comm"] = tp_crit * reps
    bd["pipeline_comm"] = k_acc * timing.exposed_transfer_s
    bd["data_comm"] = sync_exposed
    bd["bubble"] = k_acc * timing.bubble_s
    device_work = reps * (stg.F[crit] + stg.B[crit] - tp_crit) + syn.opt[crit].time_s + syn.copy[crit].time_s
    core = sum(bd.values())
    straggler = straggler_delay(device_work, S.straggler_cv, n_dev)
    bd["straggler"] = straggler
    node_samples, group_bytes, group_bw = flow
    df = data_flow(compute_s=core + straggler, node_samples=node_samples, group_bytes=group_bytes,
                   group_link_Bps=group_bw, bytes_per_sample=sh.base.input_bps, storage=system.storage,
                   dataset_bytes=None, host_memory_bytes=system.host_memory_bytes, prefetch=True)
    bd["io"] = df.exposed_io_s
    bd["host_to_device"] = df.exposed_host_to_device_s
    total = sum(bd.values())
    return total, bd, timing.bubble_fraction


def _flow(system: System, pl: Placement, samples_iter: int, input_bps: float) -> tuple[float, float, float]:
    """Busiest node's samples and busiest PCIe group's input bytes per iteration (as predict_parallel)."""
    dev = system.device
    per = pl.devices_per_node
    tp, pp = pl.plan.tp, pl.plan.pp
    best_group = (0.0, 1.0)
    node_samples = 0.0
    for node in range(pl.nodes):
        group_bytes: dict[int, float] = {}
        replicas = set()
        for local in range(per):
            r = node * per + local
            if (r // tp) % pp != 0:
                continue
            replicas.add(r // (tp * pp))
            if not dev.is_cpu:
                g = system.group_of(local)
                group_bytes[g] = group_bytes.get(g, 0.0) + samples_iter * input_bps
        node_samples = max(node_samples, len(replicas) * samples_iter)
        for g, byt in group_bytes.items():
            bw = system.host_links[g].effective_bandwidth_Bps
            if byt / bw > best_group[0] / best_group[1]:
                best_group = (byt, bw)
    return node_samples, best_group[0], best_group[1]


# ---------------------------------------------------------------------------------------------
# enumeration


def _pow2_upto(n: int) -> list[int]:
    out, x = [], 1
    while x <= n:
        out.append(x)
        x *= 2
    return out


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def block_count(graph: LayerGraph) -> int:
    """Repeated block instances (e.g. transformer layers): segments whose names carry a numeric index."""
    from .recompute import block_segments

    count = 0
    for seg in block_segments(graph):
        parts = graph.layers[seg[0]].name.split(".")
        if any(p.isdigit() for p in parts[:-1]):
            count += 1
    return count


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
# the search


def plan_search(network, hardware, *, devices: int, global_batch: int | None = None, objective: str = "time",
                memory_limit: float | None = None, top: int | None = 5, optimizer: str = DEFAULT_OPTIMIZER,
                dtypes: Sequence[str] | None = None, recompute: Sequence[str] = RECOMPUTE_CHOICES,
                schedules: Sequence[str] = SCHEDULE_CHOICES, tp: Sequence[int] | None = None,
                pp: Sequence[int] | None = None, microbatch: Sequence[int] | None = None,
                allreduce: str = "ring", overlap: bool = True, bucket_bytes: float | None = None,
                straggler_cv: float = 0.0, zero1: bool = False, price_per_hour: float | None = None,
                device: str | None = None) -> PlanResult:
    """Search data/tensor/pipeline degrees, micro-batching, recomputation, dtype and schedule (module doc).

    network, hardware: names, files or loaded objects (hardware: a device, node or cluster).
    devices: devices to use (objective "cost" may also use N/2, N/4, ...). global_batch: samples per
    iteration (default 32 x devices). memory_limit: bytes per device a plan may use (default: the
    device's memory). top: plans kept (None: all that fit). tp / pp / microbatch / dtypes /
    recompute / schedules: restrict the search. price_per_hour: USD per device-hour (default: the
    profile's or the example price table's, see perfmodel.planning). device: replace the node's
    device profile (e.g. "a100-sxm4-80gb").
    """
    t0 = _time.perf_counter()
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise InputError(f"devices must be a positive integer, got {devices!r}")
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if optimizer not in OPTIMIZER_NAMES:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, got {optimizer!r}")
    if allreduce not in ALLREDUCE_CHOICES or allreduce == "ps":
        raise InputError(f"allreduce must be one of {', '.join(a for a in ALLREDUCE_CHOICES if a != 'ps')}, "
                         f"got {allreduce!r}")
    if top is not None and (not isinstance(top, int) or top < 1):
        raise InputError(f"top must be a positive integer (or None for all), got {top!r}")
    if straggler_cv < 0:
        raise InputError(f"straggler_cv must be >= 0, got {straggler_cv}")
    recompute = _check_list("recompute", recompute, RECOMPUTE_CHOICES)
    schedules = _check_list("schedules", schedules, SCHEDULE_CHOICES)
    graph = load_network(network)
    hw = load_hardware(hardware)
    if device is not None:
        hw = hardware_with_device(hw, device)
    system = resolve_system(hw, devices=devices)
    dev = system.device
    if global_batch is None:
        global_batch = DEFAULT_BATCH_PER_DEVICE * devices
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise InputError(f"global_batch must be a positive integer, got {global_batch!r}")
    if dtypes is None:
        dtypes = default_dtypes(dev)
    for d in dtypes:
        if d not in DTYPE_BYTES:
            raise InputError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {d!r}")
        if not dev.supports(d):
            raise InputError(f"device '{dev.name}' has no {d} rate; it supports "
                             f"{', '.join(k for k in dev.peak_flops if k != 'fp64')}")
    limit = float(memory_limit) if memory_limit is not None else float(dev.memory_bytes)
    if limit <= 0:
        raise InputError(f"memory_limit must be > 0 bytes, got {memory_limit!r}")
    if devices > system.max_devices:
        raise InputError(f"{devices} devices asked but '{system.name}' has {system.max_devices}")
    k_node = system.devices_per_node
    if devices > k_node and devices % k_node:
        raise InputError(f"{devices} devices do not fill whole nodes of {k_node}; use a multiple of {k_node}")
    from .planning import price_per_device_hour

    price, price_src = price_per_device_hour(hw, price_per_hour)

    rc_info = _recompute_info(graph) if "full" in recompute else None
    S = _Search(graph, optimizer, allreduce, overlap, bucket_bytes, straggler_cv, zero1, rc_info)
    rc_opts = [r for r in recompute if r == "none" or rc_info is not None]
    by_name = {l.name: l.index for l in graph.layers}
    src_idx = [[by_name[s] for s in l.input_names] for l in graph.layers]
    is_input = np.array([l.op == "input" for l in graph.layers], dtype=bool)
    n_layers = len(graph.layers)

    attn = [l for l in graph.layers if l.op == "attention"]
    tokens_per_sample = attn[0].input_shapes[0][0] if attn else None
    c1 = graph_costs(graph, 1, 4)
    params_full = sum(c.params for c in c1)
    pp_all = [p for p in pp_options(graph) if p <= n_layers] if pp is None else list(pp)

    # parameters per tensor-parallel rank (layout split flags do not depend on the batch)
    def split_params(t: int) -> int:
        hit = S.split_params.get(t)
        if hit is None:
            if t == 1:
                hit = params_full
            else:
                lay = tensor_parallel_layout(graph, c1, t)
                hit = sum(-(-c.params // t) if x.split else c.params for c, x in zip(c1, lay))
            S.split_params[t] = hit
        return hit

    rows: list[dict] = []
    candidates = pruned = dropped = 0
    for n_dev in _device_counts(devices, objective, k_node, system.max_devices):
        per_node = min(n_dev, k_node)
        tps = [t for t in tp_options(graph, per_node) if tp is None or t in tp]
        combos = []  # (tp, pp, dp, placement)
        for t in tps:
            for p in pp_all:
                if (n_dev // t) % p or n_dev % t:
                    continue
                d = n_dev // (t * p)
                if global_batch % d:
                    continue
                combos.append((t, p, d))
        placements: dict[tuple[int, int, int], tuple[Placement, Any]] = {}
        flows: dict = {}
        for mb_dtype_key in _mb_dtype_order(combos, global_batch, dtypes, microbatch):
            mb, dt = mb_dtype_key
            base = None
            for (t, p, d) in combos:
                per_rep = global_batch // d
                if per_rep % mb:
                    continue
                if mb not in microbatch_options(per_rep) and microbatch is None:
                    continue
                m_total = per_rep // mb
                n_sched = [s for s in schedules] if p > 1 else [None]
                n_cand = len(n_sched) * len(rc_opts)
                candidates += n_cand
                # static memory bound: the fullest stage holds at least 1/pp of the rank's parameters
                sp = split_params(t) / p
                opt_b = optimizer_state_bytes(optimizer, 1) * sp
                if zero1 and d > 1:
                    opt_b /= d
                static = sp * (2 * MASTER_BYTES + (DTYPE_BYTES[dt] if dt in LOWP else 0)) + opt_b + \
                    dev.runtime_reserved_bytes
                if static > limit:
                    pruned += n_cand
                    continue
                key = (t, p, d)
                if key not in placements:
                    pl = place(Plan(dp=d, tp=t, pp=p), system)
                    ar_fn, _ = dp_allreduce_fn(pl, system, allreduce)
                    placements[key] = (pl, lru_cache(maxsize=None)(ar_fn))
                pl, ar_fn = placements[key]
                if base is None:
                    base = _base(S, mb, dt, dev)
                sh = _sharded(S, base, t, pl.tp_tier.bandwidth_Bps, pl.tp_tier.latency_s, dev)
                fkey = (key, dt)
                if fkey not in flows:
                    flows[fkey] = _flow(system, pl, per_rep, base.input_bps)
                for r in rc_opts:
                    stg = _staged(sh, rc_info if r == "full" else None, p, graph, src_idx)
                    if p > 1:
                        m, k_acc = m_total, 1
                    else:
                        m, k_acc = 1, m_total
                    syn = None
                    for sch in n_sched:
                        mem_total, mem = _memory(S, stg, rc_info if r == "full" else None, sch or "1f1b", m, d,
                                                 dev, is_input)
                        if mem_total > limit:
                            dropped += 1
                            continue
                        if syn is None:
                            syn = _synced(S, stg, pl, ar_fn, dev)
                        total, bd, bfrac = _iteration(S, stg, syn, m, k_acc, sch or "1f1b", n_dev, flows[fkey],
                                                      system)
                        mflops = base.model_flops_mb * m * k_acc * d
                        peak = dev.peak(dt)
                        rows.append(dict(
                            devices=n_dev, nodes=pl.nodes, dp=d, tp=t, pp=p, microbatch=mb, microbatches=m_total,
                            recompute=r, dtype=dt, schedule=sch, global_batch=global_batch,
                            iteration_time_s=total, throughput_samples_per_s=global_batch / total if total > 0 else 0.0,
                            breakdown=bd, memory_bytes=mem_total, memory=mem, memory_limit_bytes=limit, fits=True,
                            model_flops=mflops, mfu=mflops / (total * n_dev * peak) if total > 0 else 0.0,
                            mfu_6nd=(6.0 * params_full * tokens_per_sample * global_batch / (total * n_dev * peak))
                            if tokens_per_sample and total > 0 else None,
                            tflops_per_device=mflops / total / n_dev / 1e12 if total > 0 else 0.0,
                            cost_per_iteration=(price * n_dev * total / 3600.0) if price is not None else None,
                            bubble_fraction=bfrac, stage_layers=stg.stage_layers,
                        ))

    def sort_key(r):
        if objective == "cost":
            primary = r["cost_per_iteration"] if price is not None else r["devices"] * r["iteration_time_s"]
        else:
            primary = r["iteration_time_s"]
        return (primary, r["memory_bytes"], r["devices"])

    rows.sort(key=sort_key)
    _break_ties(rows, sort_key)
    kept = rows if top is None else rows[:max(top, 2)]  # the runner-up is needed to explain the winner
    ranked = tuple(PlanRow(rank=i + 1, **r) for i, r in enumerate(kept))
    why = explain(ranked, objective, price is not None, len(rows), dropped + pruned)
    plans = ranked if top is None else ranked[:top]
    assumptions = {
        "optimizer": optimizer,
        "allreduce": allreduce,
        "overlap": overlap,
        "straggler_cv": straggler_cv,
        "zero1": zero1,
        "memory_limit_bytes": limit,
        "recompute_rule": "perfmodel.recompute 'auto' segments, all but the last checkpointed",
        "dtypes": list(dtypes),
        "tp_rule": "powers of two up to the devices per node, dividing the attention heads",
        "pp_rule": "divisors of the number of repeated blocks (or powers of two without blocks)",
        "microbatch_rule": "powers of two dividing the samples per replica, and that number itself",
        "mfu": "model FLOPs (forward + backward, no recomputation) / (time x devices x peak of the dtype)",
        "mfu_6nd": "6 x parameters x tokens / (time x devices x peak), for networks with attention",
        "device_counts": "N only" if objective == "time" else "N, N/2, N/4, ... (whole nodes)",
        "cost": "price per device-hour x devices x iteration time" if price is not None else
                "no price known: objective 'cost' ranks by device-seconds per iteration",
    }
    return PlanResult(
        network=graph.name, hardware=system.name, devices=devices, global_batch=global_batch, objective=objective,
        optimizer=optimizer, allreduce=allreduce, zero1=zero1, price_per_device_hour=price, price_source=price_src,
        plans=plans, why=why, candidates=candidates, pruned_static_memory=pruned, dropped_memory=dropped,
        fitting=len(rows), search_time_s=_time.perf_counter() - t0, assumptions=assumptions,
    )


def _mb_dtype_order(combos, global_batch: int, dtypes, microbatch) -> list[tuple[int, str]]:
    """(micro-batch, dtype) pairs to visit, each once (so graph_costs runs once per pair)."""
    mbs: set[int] = set()
    for (_, _, d) in combos:
        per = global_batch // d
        opts = microbatch_options(per) if microbatch is None else [x for x in microbatch if per % x == 0]
        mbs.update(opts)
    return [(mb, dt) for mb in sorted(mbs) for dt in dtypes]


def _break_ties(rows: list[dict], sort_key) -> None:
    """Within TIE_REL of each other, the smaller memory footprint ranks first (already the sort's 2nd key)."""
    i = 0
    while i < len(rows) - 1:
        a, b = sort_key(rows[i])[0], sort_key(rows[i + 1])[0]
        if abs(a - b) <= TIE_REL * max(abs(a), abs(b)) and rows[i + 1]["memory_bytes"] < rows[i]["memory_bytes"]:
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
            i = max(0, i - 1)
        else:
            i += 1


# ---------------------------------------------------------------------------------------------
# one plan, and the explanation


def evaluate_plan(network, hardware, *, dp: int, tp: int = 1, pp: int = 1, microbatch: int, microbatches: int = 1,
                  recompute: str = "none", dtype: str = "fp32", schedule: str | None = "1f1b",
                  optimizer: str = DEFAULT_OPTIMIZER, memory_limit: float | None = None, **options) -> PlanRow | None:
    """The fast evaluator on one plan (None if it does not fit in `memory_limit`)."""
    devices = dp * tp * pp
    res = plan_search(network, hardware, devices=devices, global_batch=dp * microbatch * microbatches,
                      tp=[tp], pp=[pp], microbatch=[microbatch], recompute=[recompute], dtypes=[dtype],
                      schedules=[schedule or "1f1b"], optimizer=optimizer, memory_limit=memory_limit, top=None,
                      **options)
    for r in res.plans:
        if r.devices == devices and r.dp == dp:
            return r
    return None


PART_WORDS = {
    "compute": "compute-bound kernel time", "memory": "memory-bound kernel time", "overhead": "launch overhead",
    "recompute": "recomputed forward", "tensor_comm": "tensor-parallel all-reduces",
    "pipeline_comm": "exposed pipeline transfers", "data_comm": "exposed gradient all-reduce",
    "bubble": "pipeline bubble", "straggler": "straggler wait", "host_to_device": "exposed input copy",
    "io": "exposed storage IO",
}


def _fmt_s(t: float) -> str:
    from .units import fmt_seconds

    return fmt_seconds(t)


def explain(plans: Sequence[PlanRow], objective: str, priced: bool, fitting: int, dropped: int) -> str:
    """Why the best plan beats the runner-up, in one or two sentences."""
    if not plans:
        return f"No plan fits in device memory ({dropped} candidates dropped); add devices, use recomputation or a smaller batch."
    best = plans[0]
    if len(plans) == 1:
        return f"{best.label()} is the only plan that fits ({dropped} candidates did not fit)."
    ru = plans[1]
    diffs = [k for k in ("devices", "dp", "tp", "pp", "microbatch", "microbatches", "recompute", "dtype", "schedule")
             if getattr(best, k) != getattr(ru, k)]
    what = ", ".join(f"{k} {getattr(best, k)} vs {getattr(ru, k)}" for k in diffs) or "the same knobs"
    dt = ru.iteration_time_s - best.iteration_time_s
    if objective == "cost":
        cb = best.cost_per_iteration if priced else best.devices * best.iteration_time_s
        cr = ru.cost_per_iteration if priced else ru.devices * ru.iteration_time_s
        unit = "$" if priced else "device-s "
        head = (f"Best: {best.label()} at {unit}{cb:.4g} per iteration vs the runner-up's {unit}{cr:.4g} "
                f"({what})")
    else:
        head = (f"Best: {best.label()} at {_fmt_s(best.iteration_time_s)} per iteration, "
                f"{dt / ru.iteration_time_s:.1%} faster than the runner-up ({what})")
    if abs(dt) <= TIE_REL * max(best.iteration_time_s, ru.iteration_time_s):
        why = (f"; the times are equal and it needs less memory per device ({best.memory_bytes / 1e9:.1f} GB vs "
               f"{ru.memory_bytes / 1e9:.1f} GB)")
        if "schedule" in diffs:
            why += ", because 1F1B keeps at most pp micro-batches of activations in flight where GPipe keeps all"
        return head + why + "."
    deltas = {k: ru.breakdown.get(k, 0.0) - best.breakdown.get(k, 0.0) for k in PLAN_PARTS}
    gains = sorted(((v, k) for k, v in deltas.items() if v > 0), reverse=True)
    losses = sorted(((-v, k) for k, v in deltas.items() if v < 0), reverse=True)
    parts = []
    if gains:
        parts.append("it saves " + ", ".join(f"{_fmt_s(v)} of {PART_WORDS[k]}" for v, k in gains[:2]))
    if losses:
        parts.append("pays " + ", ".join(f"{_fmt_s(v)} more {PART_WORDS[k]}" for v, k in losses[:1]))
    if objective == "cost" and best.devices != ru.devices:
        parts.append(f"on {best.devices} instead of {ru.devices} devices")
    tail = ("; " + " and ".join(parts)) if parts else ""
    return head + tail + f". {fitting} plans fit, {dropped} did not."
