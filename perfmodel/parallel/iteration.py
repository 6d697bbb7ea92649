"""The one iteration glue: critical path, exposed communication, bubble, stragglers, sync modes, parameter
servers and data flow, from a staged rank (perfmodel.parallel.stages) on a placement.

The critical path of one iteration, per device of the slowest pipeline stage:
    k x [ m micro-batches through the pipeline (stage compute incl. tensor-parallel collectives and
          recomputation, bubble, exposed activation transfers) ]
  + the tail: the gradient all-reduces left after backward (buckets overlapped with the last
    backward, or not), DDP's bucket copies, then the optimizer step
  + stragglers (synchronous: waiting for the slowest of N devices)
  + exposed storage IO and host-to-device copies (what prefetching cannot hide)

What overlaps what is data (parallel/overlap.py, the device's software stack): the buckets run beside the last
backward, which runs (1 + s) times as long while one is in flight; pipeline sends run beside the steady-state
compute (slowing it the same way) or, not overlapped, add to it; tensor-parallel collectives pipelined with their
GEMMs (tp_overlap) arrive in the staged rank as exposed + slowdown seconds. Every slowdown second is `compute`.

k is gradient accumulation, m the micro-batches (1 without a pipeline). Asynchronous training has no
all-reduce: each worker pushes its gradient to parameter servers and pulls parameters, and the
iteration (one update per worker) is limited by the workers or by the servers' bandwidth. Mixed is
synchronous inside a node and asynchronous between nodes.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, replace
from typing import Any, Callable
from math import gcd

from ..dataflow import DataFlow, data_flow
from ..engine import memo
from ..engine.layers import StageTime, stage_time
from ..hardware.topology import System
from ..hardware.traits import device_traits
from ..optimizers import optimizer_work
from . import collectives as C
from .data_parallel import GRAD_BYTES, SyncSchedule, ddp_copy_time, make_buckets, sync_schedule
from .interleaved import interleaved_timing
from .overlap import OverlapUse, overlap_use, p2p_overlapped
from .pipeline import PipelineTiming, schedule_time
from .plan import Placement, dp_allreduce_fn
from .stages import Staged, recomputed_parts
from .sync_modes import async_throughput, ps_push_overlap, slow_worker_delay, straggler_delay

# parts of an iteration (they add up to its time); a Prediction shows the *_comm parts as "communication"
PARTS = ("compute", "memory", "overhead", "recompute", "tensor_comm", "expert_comm", "pipeline_comm", "data_comm",
         "bubble", "straggler", "host_to_device", "io", "context_comm", "offload")


@dataclass(frozen=True)
class GradientSync:
    """How gradients are synchronised: seconds(n_bytes) per bucket, a description, parameter-server figures."""

    fn: Callable[[float], float]
    info: dict[str, Any]
    ps: dict[str, Any] | None  # async / mixed: worker and server bandwidths, servers, one_way(n)


def gradient_sync(pl: Placement, system: System, sync: str, allreduce: str, ps_servers: int | None = None,
                  ps_colocated: bool = False) -> GradientSync:
    """Synchronous all-reduce, or (async/mixed) pushes to parameter servers with the node's or PCIe bandwidth."""
    fn, info = dp_allreduce_fn(pl, system, allreduce, ps_servers, ps_colocated)
    if sync == "sync":
        return GradientSync(fn, info, None)
    if sync == "mixed":
        w_bw = srv_bw_one = pl.net_bandwidth_Bps  # a node pushes its all-reduced gradient through all its NICs
    elif pl.nodes > 1:  # every device pushes its own through the node's NIC; async pushes of one node seldom
        w_bw = pl.net_bandwidth_Bps  # collide, and collisions at the servers' links are queued (sync_modes)
        srv_bw_one = pl.net_bandwidth_Bps
    else:  # one node: the server is the host; devices push through their share of the PCIe uplinks
        w_bw = min(l.effective_bandwidth_Bps / len(g) for l, g in zip(system.host_links, system.groups))
        srv_bw_one = sum(l.effective_bandwidth_Bps for l in system.host_links)
    lat = pl.net_latency_s if pl.nodes > 1 else max(l.latency_s for l in system.host_links)
    servers = ps_servers or (pl.nodes if ps_colocated and pl.nodes > 1 else 1)
    srv_total = servers * srv_bw_one

    def one_way(n: float) -> float:
        return max(n / w_bw, n / srv_total) + lat if n > 0 else 0.0

    ps = dict(w_bw=w_bw, srv_bw_one=srv_bw_one, servers=servers, srv_total=srv_total, one_way=one_way)
    if sync == "mixed":  # synchronous all-reduce among the devices of a node, then the node's push
        node_pl = replace(pl, plan=pl.plan.model_copy(update={"dp": pl.dp_ranks_per_node}), dp_nodes=1,
                          net_bandwidth_Bps=0.0)
        intra, info = dp_allreduce_fn(node_pl, system, "ring" if allreduce in ("ps", "hierarchical") else allreduce)
        return GradientSync(lambda n: intra(n) + one_way(n), info, ps)
    return GradientSync(one_way, {"algorithm": "ps", "ranks": pl.plan.dp}, ps)


@dataclass(frozen=True)
class Synced:
    """Per stage: gradient synchronisation schedule, optimizer step, DDP copies; per boundary: transfer time."""

    sched: tuple[SyncSchedule, ...]
    opt: tuple[StageTime, ...]
    copy: tuple[StageTime, ...]
    xfer: tuple[float, ...]
    after: tuple[float, ...] = ()  # per stage: communication after the optimizer step (ZeRO-2's parameter all-gather)


def synced(stg: Staged, pl: Placement, allreduce_fn: Callable[[float], float], optimizer: str,
           bucket_bytes: float | None, overlap: bool, ddp_copies: bool, opt_shard: int = 1) -> Synced:
    """Bucketed gradient all-reduces overlapped with each stage's backward, the optimizer and DDP copies per stage.

    opt_shard: ranks the optimizer state is sharded over (ZeRO >= 1): each rank updates 1/opt_shard of the
    parameters (in as many tensors: FSDP shards every tensor). The buckets overlap backward when `overlap` and the
    device's overlap facts say so (overlap.overlap_use: dp_buckets), slowing it by the facts' compute_slowdown."""
    r = stg.ranks
    use = overlap_use(r.device, overlap)
    slow = use.slowdown if use.dp_buckets else 0.0
    style = device_traits(r.device).optimizer_kernels
    opt = memo.on(stg, ("opt", optimizer, opt_shard), lambda: tuple(
        stage_time((optimizer_work(optimizer, int(math.ceil(p / opt_shard)), t, style=style),), r.rates,
                   "optimizer")
        for p, t in zip(stg.st_params, stg.st_tensors)))
    buckets = memo.on(stg, ("buckets", bucket_bytes), lambda: _buckets(stg, bucket_bytes))
    sched = tuple(sync_schedule(bk, stg.B[s], allreduce_fn, use.dp_buckets, slow) for s, bk in enumerate(buckets))
    xfer = tuple(C.point_to_point(stg.cross[s], 2, pl.pp_tiers[s].bandwidth_Bps, pl.pp_tiers[s].latency_s)
                 for s in range(stg.pp - 1))
    copy = memo.on(stg, ("ddp_copy", ddp_copies), lambda: tuple(
        ddp_copy_time(p, t, r.rates) if ddp_copies else StageTime() for p, t in zip(stg.st_params, stg.st_tensors)))
    return Synced(sched, opt, copy, xfer)


def _buckets(stg: Staged, bucket_bytes: float | None) -> tuple:
    """DDP's gradient buckets of every stage (per-layer backward times and gradient bytes)."""
    bl = stg.b_l.tolist()
    gb = stg.ranks.grad_sync_bytes.tolist()
    return tuple(make_buckets(bl[a:e], gb[a:e], bucket_bytes) for a, e in stg.ranges)


@dataclass(frozen=True)
class Iteration:
    """One iteration's time, its parts (PARTS, adding up to total_s) and what the glue found on the way."""

    total_s: float
    parts: dict[str, float]
    timing: PipelineTiming
    crit: int  # the pipeline's critical stage
    s_star: int  # the stage whose tail ends last
    comm_s: float  # gradient communication of that stage
    hidden_comm_s: float  # gradient buckets, tensor-parallel collectives and FSDP gathers hidden behind compute
    tp_comm_s: float  # tensor-parallel collectives on the critical path
    device_work_s: float
    flow: DataFlow
    async_info: dict[str, Any]
    staleness: float | None
    overlap: dict[str, Any] | None = None  # the overlap classes used, seconds hidden and compute slowdown (overlap.py)


def _tail(stg: Staged, syn: Synced, timing: PipelineTiming, k_acc: int):
    pipe_T = timing.total_s
    base = (k_acc - 1) * pipe_T
    end = [base + timing.last_backward_end_s[s] - stg.B[s] + syn.sched[s].end_s + syn.copy[s].time_s
           + syn.opt[s].time_s + (syn.after[s] if syn.after else 0.0) for s in range(stg.pp)]
    s_star = max(range(stg.pp), key=lambda s: end[s])
    tail = end[s_star] - k_acc * pipe_T
    opt_part = min(syn.opt[s_star].time_s, max(0.0, tail))
    copy_part = min(syn.copy[s_star].time_s, max(0.0, tail - opt_part))
    rest = max(0.0, tail - opt_part - copy_part)
    slow_part = min(syn.sched[s_star].slowdown_s, rest)  # backward slowed by its bucket all-reduces
    return s_star, opt_part, copy_part, slow_part, rest - slow_part


def _add_parts(bd: dict[str, float], st: StageTime, scale: float) -> None:
    bd["compute"] += st.roof_compute_s * scale
    bd["memory"] += st.roof_memory_s * scale
    bd["overhead"] += st.overhead_s * scale


def core_parts(stg: Staged, syn: Synced, m: int, k_acc: int, schedule: str, virtual: int = 1,
               use: OverlapUse | None = None):
    """Parts of the synchronous critical path before stragglers and data flow, with the pipeline timing
    (`virtual` > 1: interleaved 1F1B, parallel/interleaved.py) and the overlap seconds (`use`: overlap.py; pipeline
    sends beside the steady state slow the stage's compute, or, not overlapped, add to it)."""
    B, p2p_hid, p2p_block = stg.B, [0.0] * stg.pp, [0.0] * stg.pp
    if stg.pp > 1 and use is not None:
        if use.pp_p2p:
            p2p_hid = p2p_overlapped(stg.F, stg.B, syn.xfer, m, virtual)
        elif m > 1:  # blocking sends and receives: one activation and one gradient per boundary per micro-batch
            p2p_block = [virtual * ((syn.xfer[s - 1] if s else 0.0) + (syn.xfer[s] if s < stg.pp - 1 else 0.0))
                         for s in range(stg.pp)]
        B = tuple(b + use.slowdown * x + y for b, x, y in zip(B, p2p_hid, p2p_block))
    if virtual > 1:
        timing = interleaved_timing(stg.F, B, syn.xfer, m, virtual)
    else:
        timing = schedule_time(stg.F, B, syn.xfer, m, schedule)
    s_star, opt_part, copy_part, dp_slow, sync_exposed = _tail(stg, syn, timing, k_acc)
    crit = timing.critical_stage
    a, e = stg.ranges[crit]
    reps = k_acc * m
    r = stg.ranks
    bd = dict.fromkeys(PARTS, 0.0)
    share = stg.cast_share[crit]
    for key, arr in (("compute", "roof_compute"), ("memory", "roof_memory"), ("overhead", "overhead")):
        bd[key] = float(r.st[arr][a:e].sum()) * reps
    _add_parts(bd, r.cast, share * reps)
    bd["recompute"] = recomputed_parts(stg, a, e) * reps
    ot, ct = syn.opt[s_star], syn.copy[s_star]
    _add_parts(bd, ot, opt_part / ot.time_s if ot.time_s > 0 else 0.0)
    _add_parts(bd, ct, copy_part / ct.time_s if ct.time_s > 0 else 0.0)
    tp_crit = float(stg.tpf_l[a:e].sum() + stg.tpb_l[a:e].sum())
    tp_slow = float(stg.tp_slow_l[a:e].sum()) if stg.tp_slow_l is not None else 0.0
    bd["tensor_comm"] = (tp_crit - tp_slow) * reps
    sd = use.slowdown if use is not None else 0.0
    slow = {"dp_buckets": dp_slow, "tp_comm": tp_slow * reps, "pp_p2p": sd * p2p_hid[crit] * reps}
    bd["compute"] += sum(slow.values())  # compute slowed by communication beside it is compute time
    cp_crit = 0.0
    if stg.cpf_l is not None:  # context-parallel K/V ring (parallel/context.py): communication, not device work
        cp_crit = float(stg.cpf_l[a:e].sum() + stg.cpb_l[a:e].sum())
        bd["context_comm"] = cp_crit * reps
    ep_crit = 0.0
    if stg.epf_l is not None:  # expert-parallel all-to-alls (parallel/experts.py): communication, not device work
        ep_crit = float(stg.epf_l[a:e].sum() + stg.epb_l[a:e].sum())
        bd["expert_comm"] = ep_crit * reps
    if stg.offload is not None:  # exposed activation copies to and from the host (parallel/offload.py)
        bd["offload"] = sum(stg.offload[crit]) * reps
    bd["pipeline_comm"] = k_acc * timing.exposed_transfer_s + p2p_block[crit] * reps
    bd["data_comm"] = sync_exposed
    bd["bubble"] = k_acc * timing.bubble_s
    comm_crit = tp_crit - tp_slow + cp_crit + ep_crit + p2p_block[crit]
    work = reps * (stg.F[crit] + B[crit] - comm_crit) + syn.opt[crit].time_s + syn.copy[crit].time_s
    return bd, timing, crit, s_star, tp_crit - tp_slow, work, (slow, p2p_hid[crit] * reps)


def overlap_report(use: OverlapUse, stg: Staged, syn: Synced, s_star: int, crit: int, reps: int,
                   slow: dict[str, float], pp_hidden: float = 0.0) -> dict[str, Any]:
    """What overlapped in one iteration: the classes in use, the compute slowdown s and its source, per class the
    communication seconds hidden on the critical path and the compute slowdown seconds (parts of `compute`)."""
    a, e = stg.ranges[crit]
    tp_hidden = float(stg.tp_hidden_l[a:e].sum()) * reps if stg.tp_hidden_l is not None else 0.0
    hidden = {"dp_buckets": syn.sched[s_star].hidden_s if use.dp_buckets else 0.0, "tp_comm": tp_hidden,
              "pp_p2p": pp_hidden, "fsdp_prefetch": 0.0}  # with_gathers adds FSDP's forward gathers
    return {"classes": use.classes(), "compute_slowdown": use.slowdown, "source": use.source,
            "hidden_s": hidden, "slowdown_s": {**slow, "fsdp_prefetch": 0.0}, "total_slowdown_s": sum(slow.values())}


def with_gathers(it: Iteration, exposed_s: float, hidden_s: float, slowdown_s: float) -> Iteration:
    """The iteration with ZeRO-3 / FSDP's parameter all-gathers outside the bucket schedule added
    (sharding.zero_sync / pipelined_zero3): `exposed_s` of them is data_comm; `slowdown_s`, the compute beside the
    prefetched gathers running (1 + s) times as long, is compute; `hidden_s` joins the hidden communication and,
    with the slowdown, the fsdp_prefetch entries of the overlap report."""
    if not (exposed_s or hidden_s or slowdown_s):
        return it
    parts = {**it.parts, "data_comm": it.parts["data_comm"] + exposed_s, "compute": it.parts["compute"] + slowdown_s}
    rep = it.overlap
    if rep is not None:
        rep = {**rep, "hidden_s": {**rep["hidden_s"], "fsdp_prefetch": hidden_s},
               "slowdown_s": {**rep["slowdown_s"], "fsdp_prefetch": slowdown_s},
               "total_slowdown_s": rep["total_slowdown_s"] + slowdown_s}
    return replace(it, total_s=it.total_s + exposed_s + slowdown_s, parts=parts,
                   hidden_comm_s=it.hidden_comm_s + hidden_s, overlap=rep)


def iteration(stg: Staged, syn: Synced, gs: GradientSync, *, m: int, k_acc: int, schedule: str, sync: str,
              straggler_cv: float, workers: int, straggler_ranks: int, overlap: bool,
              flow_args: dict[str, Any], virtual: int = 1, slow_worker_factor: float = 1.0,
              tp_overlap: bool = False) -> Iteration:
    """The iteration time and its parts. `workers`: asynchronous workers (dp, or nodes when mixed);
    `straggler_ranks`: devices a synchronous step waits for; `flow_args`: data_flow's keywords but compute_s;
    `overlap`, `tp_overlap`: the setup's switches (overlap.overlap_use)."""
    use = overlap_use(stg.ranks.device, overlap, tp_overlap)
    bd, timing, crit, s_star, tp_crit, work, (slow, pp_hidden) = core_parts(stg, syn, m, k_acc, schedule, virtual, use)
    comm = syn.sched[s_star].comm_s
    hidden = max(0.0, comm - bd["data_comm"]) if use.dp_buckets else 0.0
    straggler = straggler_delay(work, straggler_cv, straggler_ranks)
    slow_extra = slow_worker_delay(work, slow_worker_factor, workers)  # one worker k x slower (sync_modes)
    if sync == "sync":  # every step waits for the slowest: the slow worker or the normal spread's maximum
        straggler = max(straggler, slow_extra - min(slow_extra, _ps_overlap(gs.info, stg)))
    bd["straggler"] = straggler
    core = sum(bd.values())
    async_info: dict[str, Any] = {}
    staleness = None
    if sync == "sync":
        it_core = core
    else:
        grad_bytes = stg.ranks.total_params * GRAD_BYTES
        pull = gs.ps["one_way"](grad_bytes)
        worker_step = core + pull
        thr = async_throughput(workers, worker_step, grad_bytes, gs.ps["srv_total"], slow_extra)
        it_core = workers / thr["updates_per_s"]
        bd["data_comm"] += it_core - worker_step + pull
        staleness = thr["staleness"]
        async_info = {"workers": workers, "ps_servers": gs.ps["servers"], "push_s": comm, "pull_s": pull,
                      "worker_step_s": worker_step, "server_bandwidth_Bps": gs.ps["srv_total"],
                      "worker_bandwidth_Bps": gs.ps["w_bw"], "bound": thr["bound"],
                      "updates_per_s": thr["updates_per_s"]}
    df = data_flow(compute_s=it_core, **flow_args)
    bd["io"] = df.exposed_io_s
    bd["host_to_device"] = df.exposed_host_to_device_s
    report = overlap_report(use, stg, syn, s_star, crit, k_acc * m, slow, pp_hidden)
    hidden += report["hidden_s"]["tp_comm"]
    return Iteration(sum(bd.values()), bd, timing, crit, s_star, comm, hidden, tp_crit * k_acc * m, work, df,
                     async_info, staleness, report)


def _ps_overlap(info: dict[str, Any], stg: Staged) -> float:
    """Synchronous dedicated parameter servers across nodes: the others' pushes done while a slow worker computes."""
    if info.get("algorithm") != "ps" or info.get("ps_where") != "network" or info.get("ps_colocated"):
        return 0.0
    bw = info["network_bandwidth_Bps"]
    return ps_push_overlap(stg.ranks.total_params * GRAD_BYTES, info["ps_workers"], info["ps_servers"], bw, bw)


def busiest_input(system: System, pl: Placement, samples_iter: float, bytes_per_sample: float):
    """(samples the busiest node reads, input bytes over the busiest PCIe uplink, its bandwidth) per iteration.

    Ranks are filled tensor-innermost, then context-parallel rank, then pipeline stage, then replica; only
    first-stage ranks read input (every cp rank copies its replica's whole samples, as Megatron's loader does).
    """
    copies_input = not device_traits(system.device).host_memory_is_device_memory
    per = pl.devices_per_node
    tp, pp = pl.plan.tp * pl.plan.cp, pl.plan.pp
    best = (0.0, 1.0)
    node_samples = 0.0
    for node in range(min(pl.nodes, _distinct_nodes(per, tp, pp))):
        group_bytes: dict[int, float] = {}
        replicas = set()
        for local in range(per):
            rk = node * per + local
            if (rk // tp) % pp != 0:
                continue
            replicas.add(rk // (tp * pp))
            if copies_input:
                g = system.group_of(local)
                group_bytes[g] = group_bytes.get(g, 0.0) + samples_iter * bytes_per_sample
        node_samples = max(node_samples, len(replicas) * samples_iter)
        for g, byt in group_bytes.items():
            bw = system.host_links[g].effective_bandwidth_Bps
            if byt / bw > best[0] / best[1]:
                best = (byt, bw)
    return node_samples, best[0], best[1]


def _distinct_nodes(per: int, tp: int, pp: int) -> int:
    """Nodes after which the rank pattern of a node repeats (its ranks' (tp, stage) layout is periodic)."""
    period = tp * pp

    return max(1, period // gcd(period, per))
