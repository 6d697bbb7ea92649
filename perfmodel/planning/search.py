"""Plan search: the fastest (or cheapest) data x tensor x pipeline plan that fits in device memory.

`plan_search(network, hardware, devices=N, global_batch=B)` enumerates, prunes and ranks candidate
plans; it has no model of its own: every candidate is timed by the one path of predict
(perfmodel.parallel: rank_layers -> staged -> stage_memory -> synced -> iteration), and each returned
PlanRow carries `setup`, the predict() keywords that reproduce its time exactly.

Search space (every dimension can be narrowed by an argument; perfmodel.planning.space):
- tp: powers of two up to the devices per node, dividing the devices used per node and every
  attention layer's heads; pp: divisors of the number of repeated blocks (or powers of two up to
  half the parameterised layers without blocks), dividing N / tp; dp = N / (tp pp), and the global
  batch must split evenly: B = dp x microbatch x microbatches;
- micro-batch sizes: powers of two dividing B / dp, plus B / dp itself;
- activation recomputation "none" or "full" (perfmodel.parallel.stages); dtype: the best low- and
  full-precision types the device supports; schedule: 1F1B and GPipe when pp > 1;
- objective "cost": also N/2, N/4, ... devices.
Without a pipeline (pp = 1), "microbatches" are gradient-accumulation steps (predict's
grad_accumulation); with a pipeline they are the pipeline's micro-batches.

How it stays fast: per-layer arrays are memoised per (micro-batch, dtype, tp), stages per
(recompute, pp); static memory (weights, gradients, optimizer state over tp x pp) prunes before
anything is timed, and the exact memory of the fullest stage is checked before synchronisation and
the iteration glue are computed. ZeRO-1 (`zero=1`) shards the optimizer state over the dp replicas
(memory only: reduce-scatter + all-gather move the same bytes as the all-reduce on a ring).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..graph.io import load_network
from ..graph.layer_graph import LayerGraph
from ..hardware.loader import load_hardware
from ..hardware.topology import System, resolve_system
from ..ops import DTYPE_BYTES
from ..ops.base import graph_costs
from ..optimizers import MASTER_BYTES, OPTIMIZER_NAMES, optimizer_state_bytes
from ..engine.layers import LOWP
from ..parallel.collectives import allreduce_choices
from ..parallel.iteration import gradient_sync, iteration, synced
from ..parallel.plan import Plan, place
from ..parallel.predict import _flow_args, _run_device
from ..parallel.rank import rank_layers, tp_comm
from ..parallel.stages import RECOMPUTE_CHOICES, fullest, recompute_info, stage_memory, staged
from ..parallel.tensor import tensor_parallel_layout
from ..prediction.setup import make_setup
from .explain import PART_WORDS, PLAN_PARTS, TIE_REL, explain  # noqa: F401  (re-exported)
from .space import (COST_DEVICE_HALVINGS, FULL_PRECISION_PREFERENCE, LOW_PRECISION_PREFERENCE,  # noqa: F401
                    _check_list, _device_counts, block_count, default_dtypes, hardware_with_device,
                    microbatch_options, pp_options, tp_options)
from . import price_per_device_hour

OBJECTIVES = ("time", "cost")
SCHEDULE_CHOICES = ("1f1b", "gpipe")
DEFAULT_OPTIMIZER = "adam"  # mixed-precision Adam: what large models are trained with
DEFAULT_BATCH_PER_DEVICE = 32  # default global batch = 32 x devices (predict's default batch per replica)

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
    setup: dict[str, Any] = Field(default_factory=dict, description="predict() keywords reproducing this plan")

    def label(self) -> str:
        s = f"dp={self.dp} tp={self.tp} pp={self.pp} mb={self.microbatch}x{self.microbatches}"
        s += f" {self.dtype} recompute={self.recompute}"
        if self.schedule:
            s += f" {self.schedule}"
        return s

    def predict_options(self) -> dict[str, Any]:
        """Keyword arguments for perfmodel.predict that reproduce this plan: `setup` without the optimizer."""
        return {k: v for k, v in self.setup.items() if k != "optimizer"}


class PlanResult(_Frozen):
    """The outcome of a plan search: ranked plans and why the best one wins."""

    network: str
    hardware: str
    devices: int
    global_batch: int
    objective: str
    optimizer: str
    allreduce: str
    zero: int = Field(description="ZeRO stage (0, or 1: optimizer state sharded over dp)")
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
# the search

@dataclass
class _Search:
    """What one search shares: the graph and system, the options every plan keeps, limits and memo tables."""

    graph: LayerGraph
    system: System
    base: Any  # TrainingSetup with the options every candidate shares
    shared: dict[str, Any]  # its non-default options (but the optimizer), copied into every PlanRow.setup
    limit: float
    price: float | None
    params_full: int
    tokens_per_sample: int | None
    memo: dict = field(default_factory=dict)

    def get(self, key: tuple, build):
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = build()
        return hit


def _split_params(S: _Search, tp: int) -> int:
    """Parameters per tensor-parallel rank (the split flags do not depend on the batch)."""
    def build():
        c1 = graph_costs(S.graph, 1, 4)
        if tp == 1:
            return S.params_full
        lay = tensor_parallel_layout(S.graph, c1, tp)
        return sum(-(-c.params // tp) if x.split else c.params for c, x in zip(c1, lay))

    return S.get(("split_params", tp), build)


def _static_bytes(S: _Search, tp: int, pp: int, dp: int, dtype: str) -> float:
    """A lower bound of the fullest stage's memory: 1/pp of the rank's weights, gradients and optimizer state."""
    sp = _split_params(S, tp) / pp
    opt_b = optimizer_state_bytes(S.base.optimizer, 1) * sp
    if S.base.zero >= 1 and dp > 1:
        opt_b /= dp
    return sp * (2 * MASTER_BYTES + (DTYPE_BYTES[dtype] if dtype in LOWP else 0)) + opt_b + \
        S.system.device.runtime_reserved_bytes


def _placed(S: _Search, tp: int, pp: int, dp: int):
    """Placement and gradient synchronisation (all-reduce times memoised per bucket size) of one plan shape."""
    def build():
        pl = place(Plan(dp=dp, tp=tp, pp=pp), S.system)
        gs = gradient_sync(pl, S.system, "sync", S.base.allreduce)
        return pl, replace(gs, fn=lru_cache(maxsize=None)(gs.fn))

    return S.get(("placed", tp, pp, dp), build)


def _stage_cut(S: _Search, pl, mb: int, dtype: str, tp: int, pp: int, recompute: str, m: int = 1,
               schedule: str = "1f1b", dp: int = 1):
    """The staged rank of one (micro-batch, dtype, tp, pp, recompute, micro-batches, stage links), through the
    one path's levels."""
    links = tuple((t.bandwidth_Bps, t.latency_s) for t in pl.pp_tiers) if pp > 1 else ()

    def build():
        dev, _, threads = _run_device(S.system, pl.devices_per_node, None, [])
        ranks = rank_layers(S.graph, dev, mb, dtype, threads, tp)
        tpf, tpb = tp_comm(ranks, pl.tp_tier.bandwidth_Bps, pl.tp_tier.latency_s)
        rc = recompute_info(S.graph) if recompute == "full" else None
        _, gs = _placed(S, tp, pp, dp)
        return staged(S.graph, ranks, tpf, tpb, rc, pp, m, links, schedule, S.base.optimizer, dp > 1, 1,
                      (gs.fn, S.base.bucket_bytes, S.base.overlap))

    key = ("staged", pl.devices_per_node, mb, dtype, tp, pp, recompute) + \
        ((m, links, schedule, dp) if pp > 1 else ())
    return S.get(key, build)


def _candidate(S: _Search, n_dev: int, tp: int, pp: int, dp: int, mb: int, dtype: str, recompute: str,
               schedule: str | None, global_batch: int, counts: dict[str, int]) -> dict | None:
    """One plan timed by the one path (None when its fullest stage does not fit in the memory limit)."""
    pl, gs = _placed(S, tp, pp, dp)
    m_total = global_batch // dp // mb
    m, k_acc = (m_total, 1) if pp > 1 else (1, m_total)
    sch = schedule or "1f1b"
    stg = _stage_cut(S, pl, mb, dtype, tp, pp, recompute, m, sch, dp)
    zero_dp = dp if S.base.zero >= 1 else 1
    terms = stage_memory(stg, S.base.optimizer, sch, m, zero_dp)
    s, mem_total = fullest(terms)
    if mem_total > S.limit:
        counts["dropped"] += 1
        return None
    b = S.base
    syn = S.get(("synced", id(stg), tp, pp, dp), lambda: synced(stg, pl, gs.fn, b.optimizer, b.bucket_bytes,
                                                                 b.overlap, ddp_copies=dp > 1))
    flow = S.get(("flow", tp, pp, dp, dtype), lambda: _flow_args(
        S.graph, S.system, pl, b.model_copy(update={"dtype": dtype}), global_batch // dp))
    it = iteration(stg, syn, gs, m=m, k_acc=k_acc, schedule=sch, sync="sync", straggler_cv=b.straggler_cv,
                   workers=dp, straggler_ranks=n_dev, overlap=b.overlap, flow_args=flow)
    total = it.total_s
    mflops = S.get(("mflops", mb, dtype), lambda: sum(
        c.flops("forward") + c.flops("backward_data") + c.flops("backward_weight") for c in stg.ranks.costs)) \
        * m * k_acc * dp
    peak = S.system.device.peak(dtype)
    return dict(
        devices=n_dev, nodes=pl.nodes, dp=dp, tp=tp, pp=pp, microbatch=mb, microbatches=m_total,
        recompute=recompute, dtype=dtype, schedule=schedule, global_batch=global_batch,
        iteration_time_s=total, throughput_samples_per_s=global_batch / total if total > 0 else 0.0,
        breakdown=dict(it.parts), memory_bytes=mem_total, memory=terms[s], memory_limit_bytes=S.limit, fits=True,
        model_flops=mflops, mfu=mflops / (total * n_dev * peak) if total > 0 else 0.0,
        mfu_6nd=(6.0 * S.params_full * S.tokens_per_sample * global_batch / (total * n_dev * peak))
        if S.tokens_per_sample and total > 0 else None,
        tflops_per_device=mflops / total / n_dev / 1e12 if total > 0 else 0.0,
        cost_per_iteration=(S.price * n_dev * total / 3600.0) if S.price is not None else None,
        bubble_fraction=it.timing.bubble_fraction, stage_layers=stg.stage_layers,
        setup=_setup_of(S, n_dev, tp, pp, dp, mb, m_total, dtype, recompute, schedule))


def _setup_of(S: _Search, n_dev: int, tp: int, pp: int, dp: int, mb: int, m_total: int, dtype: str,
              recompute: str, schedule: str | None) -> dict[str, Any]:
    """predict() keywords of one plan: batch per replica, plan, dtype, recompute and the shared options."""
    plan: dict[str, Any] = {"dp": dp, "tp": tp, "pp": pp}
    out: dict[str, Any] = {"devices": n_dev, "dtype": dtype, "optimizer": S.base.optimizer}
    if pp > 1:
        plan.update(microbatches=m_total, schedule=schedule)
        out["batch"] = mb * m_total
    else:
        out["batch"] = mb
        if m_total > 1:
            out["grad_accumulation"] = m_total
    out["plan"] = plan
    if recompute != "none":
        out["recompute"] = recompute
    out.update(S.shared)
    return out


def _check(devices, objective, optimizer, allreduce, top, straggler_cv, zero) -> None:
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise InputError(f"devices must be a positive integer, got {devices!r}")
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if optimizer not in OPTIMIZER_NAMES:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, got {optimizer!r}")
    choices = allreduce_choices()
    if allreduce not in choices or allreduce == "ps":
        raise InputError(f"allreduce must be one of {', '.join(a for a in choices if a != 'ps')}, "
                         f"got {allreduce!r}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise InputError(f"top must be a positive integer (or None for all), got {top!r}")
    if straggler_cv < 0:
        raise InputError(f"straggler_cv must be >= 0, got {straggler_cv}")
    if zero not in (0, 1):
        raise InputError(f"zero={zero!r}: the plan search models ZeRO stages 0 and 1")


def _prepare(network, hardware, device, devices, global_batch, dtypes, memory_limit):
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
    dtypes = default_dtypes(dev) if dtypes is None else list(dtypes)
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
    return graph, hw, system, global_batch, dtypes, limit


def _enumerate(S: _Search, counts_for: list[int], global_batch: int, tp, pp, microbatch, rc_opts, schedules,
               dtypes, counts: dict[str, int]) -> list[dict]:
    """Every candidate of the space, pruned by static memory, timed when its fullest stage fits."""
    k_node = S.system.devices_per_node
    n_layers = len(S.graph.layers)
    pp_all = [p for p in pp_options(S.graph) if p <= n_layers] if pp is None else list(pp)
    rows: list[dict] = []
    for n_dev in counts_for:
        per_node = min(n_dev, k_node)
        combos = [(t, p, n_dev // (t * p)) for t in tp_options(S.graph, per_node) if tp is None or t in tp
                  for p in pp_all if not ((n_dev // t) % p or n_dev % t or global_batch % (n_dev // (t * p)))]
        for mb, dt in _mb_dtype_order(combos, global_batch, dtypes, microbatch):
            for (t, p, d) in combos:
                per_rep = global_batch // d
                if per_rep % mb or (microbatch is None and mb not in microbatch_options(per_rep)):
                    continue
                scheds = list(schedules) if p > 1 else [None]
                n_cand = len(scheds) * len(rc_opts)
                counts["candidates"] += n_cand
                if _static_bytes(S, t, p, d, dt) > S.limit:
                    counts["pruned"] += n_cand
                    continue
                for r in rc_opts:
                    for sch in scheds:
                        row = _candidate(S, n_dev, t, p, d, mb, dt, r, sch, global_batch, counts)
                        if row is not None:
                            rows.append(row)
    return rows


def plan_search(network, hardware, *, devices: int, global_batch: int | None = None, objective: str = "time",
                memory_limit: float | None = None, top: int | None = 5, optimizer: str = DEFAULT_OPTIMIZER,
                dtypes: Sequence[str] | None = None, recompute: Sequence[str] = RECOMPUTE_CHOICES,
                schedules: Sequence[str] = SCHEDULE_CHOICES, tp: Sequence[int] | None = None,
                pp: Sequence[int] | None = None, microbatch: Sequence[int] | None = None,
                allreduce: str = "ring", overlap: bool = True, bucket_bytes: float | None = None,
                straggler_cv: float = 0.0, zero: int = 0, price_per_hour: float | None = None,
                device: str | None = None) -> PlanResult:
    """Search data/tensor/pipeline degrees, micro-batching, recomputation, dtype and schedule (module doc).

    network, hardware: names, files or loaded objects (hardware: a device, node or cluster).
    devices: devices to use (objective "cost" may also use N/2, N/4, ...). global_batch: samples per
    iteration (default 32 x devices). memory_limit: bytes per device a plan may use (default: the
    device's memory). top: plans kept (None: all that fit). tp / pp / microbatch / dtypes /
    recompute / schedules: restrict the search. zero: 1 shards optimizer state over dp.
    price_per_hour: USD per device-hour (default: the profile's or the example price table, see
    perfmodel.planning). device: replace the node's device profile (e.g. "a100-sxm4-80gb").
    """
    t0 = _time.perf_counter()
    _check(devices, objective, optimizer, allreduce, top, straggler_cv, zero)
    recompute = _check_list("recompute", recompute, RECOMPUTE_CHOICES)
    schedules = _check_list("schedules", schedules, SCHEDULE_CHOICES)
    graph, hw, system, global_batch, dtypes, limit = _prepare(network, hardware, device, devices, global_batch,
                                                              dtypes, memory_limit)

    price, price_src = price_per_device_hour(hw, price_per_hour)
    base = make_setup(optimizer=optimizer, allreduce=allreduce, overlap=overlap, bucket_bytes=bucket_bytes,
                      straggler_cv=straggler_cv, zero=zero)
    attn = [l for l in graph.layers if l.op == "attention"]
    shared = {k: v for k, v in base.changed().items() if k != "optimizer"}
    S = _Search(graph, system, base, shared, limit, price, sum(c.params for c in graph_costs(graph, 1, 4)),
                attn[0].input_shapes[0][0] if attn else None)
    rc_opts = [r for r in recompute if r == "none" or recompute_info(graph) is not None]
    counts = {"candidates": 0, "pruned": 0, "dropped": 0}
    rows = _enumerate(S, _device_counts(devices, objective, system.devices_per_node, system.max_devices),
                      global_batch, tp, pp, microbatch, rc_opts, schedules, dtypes, counts)

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
    dropped = counts["dropped"] + counts["pruned"]
    return PlanResult(
        network=graph.name, hardware=system.name, devices=devices, global_batch=global_batch, objective=objective,
        optimizer=optimizer, allreduce=allreduce, zero=zero, price_per_device_hour=price, price_source=price_src,
        plans=ranked if top is None else ranked[:top], why=explain(ranked, objective, price is not None, len(rows),
                                                                   dropped),
        candidates=counts["candidates"], pruned_static_memory=counts["pruned"], dropped_memory=counts["dropped"],
        fitting=len(rows), search_time_s=_time.perf_counter() - t0,
        assumptions=_assumptions(base, limit, dtypes, objective, price is not None))


def _assumptions(base, limit: float, dtypes, objective: str, priced: bool) -> dict[str, Any]:
    return {
        "optimizer": base.optimizer, "allreduce": base.allreduce, "overlap": base.overlap,
        "straggler_cv": base.straggler_cv, "zero": base.zero, "memory_limit_bytes": limit,
        "recompute_rule": "perfmodel.recompute 'auto' segments, all but the last checkpointed",
        "dtypes": list(dtypes),
        "tp_rule": "powers of two up to the devices per node, dividing the attention heads",
        "pp_rule": "divisors of the number of repeated blocks (or powers of two without blocks)",
        "microbatch_rule": "powers of two dividing the samples per replica, and that number itself",
        "mfu": "model FLOPs (forward + backward, no recomputation) / (time x devices x peak of the dtype)",
        "mfu_6nd": "6 x parameters x tokens / (time x devices x peak), for networks with attention",
        "device_counts": "N only" if objective == "time" else "N, N/2, N/4, ... (whole nodes)",
        "cost": "price per device-hour x devices x iteration time" if priced else
                "no price known: objective 'cost' ranks by device-seconds per iteration",
        "model": "every plan is timed by predict's one path (perfmodel.parallel.evaluate's levels)",
    }


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
