"""evaluate(): one training iteration of a graph on a device, node or cluster under a TrainingSetup.

The one path of predict, sweep and plan search: a single device is the plan dp = tp = pp = 1. Steps:
resolve the system and place the plan; per-layer arrays of one tensor-parallel rank at the
micro-batch (perfmodel.parallel.rank); pipeline stages with recomputation (perfmodel.parallel.stages);
gradient synchronisation and the iteration glue with stragglers, sync modes, parameter servers and
data flow (perfmodel.parallel.iteration); memory of the fullest stage. perfmodel.prediction turns the
Evaluation into a Prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..dataflow import input_bytes_per_sample as graph_input_bytes
from ..engine import memo
from ..errors import InputError
from ..graph.layer_graph import LayerGraph
from ..hardware.loader import list_hardware, load_hardware
from ..hardware.topology import System, resolve_system
from ..hardware.traits import device_traits
from ..result import MemoryFootprint
from .data_parallel import replica_batch
from .iteration import GradientSync, Iteration, Synced, busiest_input, gradient_sync, iteration, synced
from .plan import Placement, Plan, make_plan, place
from .rank import RankLayers, rank_layers, tp_comm
from .sharding import zero_stage, zero_sync
from ..ops import DTYPE_BYTES
from .stages import Staged, footprint, fullest, recompute_info, stage_memory, staged
from ..units import fmt_bytes

CONV_RNN_OPS = ("conv2d", "conv1d", "conv_transpose2d", "lstm", "gru", "rnn")


@dataclass(frozen=True)
class Evaluation:
    """Everything one evaluated iteration is made of (perfmodel.prediction assembles the Prediction)."""

    graph: LayerGraph
    setup: Any
    system: System
    placement: Placement
    plan: Plan
    sync: str  # effective sync mode
    replica_batch: int  # samples per replica per micro-step
    microbatch: int
    ranks: RankLayers
    staged: Staged
    gsync: GradientSync
    synced: Synced
    it: Iteration
    memory: MemoryFootprint
    threads: int | None
    cpu_share: float
    warnings: tuple[str, ...]


def _effective_sync(setup, plan: Plan, placement: Placement, warnings: list[str]) -> str:
    sync = setup.sync
    if sync != "sync" and (plan.tp > 1 or plan.pp > 1):
        raise InputError(f"sync={sync!r} models data-parallel workers only; use tp=1 and pp=1 "
                         f"(got tp={plan.tp}, pp={plan.pp})")
    if sync != "sync" and plan.dp == 1:
        warnings.append(f"sync={sync!r} with a single worker is plain synchronous training")
        return "sync"
    if sync == "mixed" and placement.nodes == 1:
        warnings.append("sync='mixed' on one node: synchronous inside the node, nothing asynchronous between nodes")
        return "sync"
    return sync


def cpu_process_share(dev, per: int, threads: int | None, measured: float | None = None,
                      memory_speed: float | None = None):
    """`per` processes of `threads` threads each on one CPU: (device as one process sees it, speed factor, threads).

    Compute: a lone process's speed times the node's measured `process_speed`, or (unmeasured) its own
    cores, time-shared when per x threads exceeds the cores. Memory-bound work: a lone process's times
    the measured `memory_speed`, or (unmeasured) 1/per of the memory bandwidth.
    """
    cores = dev.cores or 1
    t = threads if threads is not None else max(1, cores // per)
    f = measured if measured is not None else min(1.0, cores / (per * t))
    upd: dict = {"peak_flops": {k: v * f for k, v in dev.peak_flops.items()}}
    if memory_speed is None:
        upd["memory_bandwidth_Bps"] = dev.memory_bandwidth_Bps / per
    else:
        upd["memory_bandwidth_Bps"] = dev.memory_bandwidth_Bps * memory_speed
        ts = dev.thread_scaling
        if ts.per_core_bandwidth_Bps:
            upd["thread_scaling"] = ts.model_copy(update={"per_core_bandwidth_Bps": ts.per_core_bandwidth_Bps * memory_speed})
        eff = dev.efficiency
        if eff.elementwise:
            upd["efficiency"] = eff.model_copy(update={"elementwise": {k: v * memory_speed for k, v in eff.elementwise.items()}})
    return dev.model_copy(update=upd), f, t


def _run_device(system: System, per: int, threads: int | None, warnings: list[str]):
    """The device as one worker process sees it (CPU nodes: processes share the cores), memoised per system."""
    dev = system.device
    if not (device_traits(dev).thread_model == "cores" and per > 1):  # worker processes share the cores
        return dev, 1.0, threads
    key = (per, threads)
    memo = system.__dict__.setdefault("_cpu_share", {})
    if key not in memo:
        memo[key] = cpu_process_share(dev, per, threads, system.node.process_speed, system.node.memory_speed)
    dev_run, share, threads = memo[key]
    mem_speed = system.node.memory_speed
    warnings.append(f"{per} worker processes x {threads} thread(s) share the CPU of a node: each gets "
                    + (f"1/{per} of its memory bandwidth" if mem_speed is None else
                       f"{mem_speed:.2f} x a lone process's speed on memory-bound work")
                    + (f" and computes at {share:.2f} x a lone process's speed" if share < 1 else ""))
    return dev_run, share, threads


def _largest_builtin_node() -> int:
    """The most devices any built-in node profile holds (memoised)."""
    return memo.on(_largest_builtin_node, ("nodes",), lambda: max(
        (n.devices for n in list_hardware("node")), default=1))


def _assumed_node(system: System, n: int) -> str:
    """The topology a bare device with n > 1 devices is given, and whether any real node is that large."""
    text = (f"assumed topology: {n} x {system.device.name} in one node over {system.fabric_type} "
            f"({system.fabric_bandwidth_Bps / 1e9:.1f} GB/s per device); give a node or cluster profile "
            f"(see `perfmodel hardware`) for a real machine")
    big = _largest_builtin_node()
    if n > big:
        text += f"; no built-in node holds {n} devices (the largest holds {big}): this machine is implausible"
    return text


def stage_footprint(graph: LayerGraph, stg: Staged, setup, schedule: str, m: int, dp: int) -> MemoryFootprint:
    """Footprint of the fullest stage, with the largest batch per replica from a second micro-batch's slope."""
    r = stg.ranks
    stage = zero_stage(setup.zero, setup.sharding)
    zero_dp = dp if stage >= 1 else 1
    terms = stage_memory(stg, setup.optimizer, schedule, m, zero_dp, zero=stage, virtual=setup.virtual_stages)
    s, _ = fullest(terms)
    mb2 = 2 if r.batch == 1 else 1
    r2 = rank_layers(graph, r.device, mb2, r.dtype, r.threads, r.tp, r.sp)
    terms2 = stage_memory(stg, setup.optimizer, schedule, m, zero_dp, ranks=r2, zero=stage,
                          virtual=setup.virtual_stages)
    return footprint(terms[s], terms2[s], r.batch, mb2, m, r.device.memory_bytes)


def _zero_glue(setup, stg: Staged, gs: GradientSync, pp: int, sync: str, micro_steps: int):
    """(gradient sync, extra exposed seconds) of ZeRO-2/3 / FSDP full (parallel/sharding.zero_sync); pp = 1 only."""
    stage = zero_stage(setup.zero, setup.sharding)
    if stage < 2:
        return gs, 0.0, stage
    if pp > 1 or sync != "sync":
        raise InputError(f"ZeRO stage {stage} (zero={setup.zero}, sharding={setup.sharding!r}) with pp={pp}, "
                         f"sync={sync!r} is not modelled yet (pp=1, sync='sync' is)")
    fn, extra = zero_sync(stage, gs.fn, stg.ranks.params * DTYPE_BYTES[setup.dtype], stg.f_l, micro_steps)
    return replace(gs, fn=fn), extra, stage


def _check_virtual(v: int, pp: int, schedule: str) -> None:
    """Interleaved 1F1B (virtual_stages > 1) needs a 1F1B pipeline (pp > 1)."""
    if v > 1 and (pp < 2 or schedule != "1f1b"):
        raise InputError(f"virtual_stages={v} needs a 1F1B pipeline (pp > 1), got pp={pp}, schedule={schedule!r}")


def evaluate(graph: LayerGraph, hw: Any, setup) -> Evaluation:
    """One iteration of `graph` on `hw` (device, node or cluster profile) under `setup` (a TrainingSetup)."""
    warnings: list[str] = []
    pl_ = make_plan(setup.plan, setup.devices)
    system = memo.on(hw, ("system", pl_.devices, setup.p2p),
                     lambda: resolve_system(hw, devices=pl_.devices).with_p2p(setup.p2p))
    placement = memo.on(system, ("place", pl_, setup.nodes), lambda: place(pl_, system, setup.nodes))
    if getattr(hw, "kind", None) == "device" and pl_.devices > 1:
        warnings.append(_assumed_node(system, pl_.devices))
    dp, tp, pp = pl_.dp, pl_.tp, pl_.pp
    sync = _effective_sync(setup, pl_, placement, warnings)
    k_acc = setup.grad_accumulation
    b = replica_batch(setup.batch_or_default, dp, k_acc, setup.scaling)
    m = pl_.m
    if pp == 1 and (pl_.microbatches or 1) > 1:
        warnings.append("microbatches is ignored without a pipeline (pp=1); use grad_accumulation to split a step")
    if b % m:
        raise InputError(f"the batch per replica ({b}) must be divisible by the {m} micro-batches")
    mb = b // m
    per = placement.devices_per_node
    dev_run, cpu_share, threads = _run_device(system, per, setup.threads, warnings)
    ranks = rank_layers(graph, dev_run, mb, setup.dtype, threads, tp, setup.sequence_parallel)
    tier = placement.tp_tier
    tpf, tpb = memo.on(ranks, ("tp_comm", tier.bandwidth_Bps, tier.latency_s),
                       lambda: tp_comm(ranks, tier.bandwidth_Bps, tier.latency_s))
    if tp > 1 and memo.on(graph, ("has_conv_rnn",), lambda: any(l.op in CONV_RNN_OPS for l in graph.layers)):
        warnings.append("tensor parallelism splits dense, attention and embedding layers only; "
                        "convolutions and recurrent layers are replicated on every tensor-parallel rank")
    rc = None
    if setup.recompute == "full":
        rc = recompute_info(graph)
        if rc is None:
            warnings.append("recompute='full': the network has fewer than two segments, nothing is recomputed")
    links = tuple((t.bandwidth_Bps, t.latency_s) for t in placement.pp_tiers) if pp > 1 else ()
    gs = memo.on(placement, ("gsync", sync, setup.allreduce, setup.ps_servers, setup.ps_colocated),
                 lambda: gradient_sync(placement, system, sync, setup.allreduce, setup.ps_servers,
                                       setup.ps_colocated))
    copies = dp > 1 and sync != "async"
    cut = (m, links, pl_.schedule, setup.optimizer, copies, k_acc, setup.bucket_bytes, setup.overlap)
    stg = memo.on(ranks, ("staged", rc is not None, pp) + (cut if pp > 1 else ()),
                  lambda: staged(graph, ranks, tpf, tpb, rc, pp, m, links, pl_.schedule, setup.optimizer, copies,
                                 k_acc, (gs.fn, setup.bucket_bytes, setup.overlap)),
                  refs=(tpf, gs) if pp > 1 else (tpf,))
    gs, z_extra, z_stage = _zero_glue(setup, stg, gs, pp, sync, m * k_acc)
    _check_virtual(setup.virtual_stages, pp, pl_.schedule)
    syn = memo.on(stg, ("synced", setup.optimizer, setup.bucket_bytes, setup.overlap, sync, z_stage),
                  lambda: synced(stg, placement, gs.fn, setup.optimizer, setup.bucket_bytes, setup.overlap,
                                 ddp_copies=dp > 1 and sync != "async"), refs=(placement, gs))
    it = iteration(stg, syn, gs, m=m, k_acc=k_acc, schedule=pl_.schedule, sync=sync,
                   straggler_cv=setup.straggler_cv, workers=placement.nodes if sync == "mixed" else dp,
                   straggler_ranks={"sync": pl_.devices, "mixed": placement.dp_ranks_per_node}.get(sync, 1),
                   overlap=setup.overlap, flow_args=memo.on(placement, (
                       "flow", setup.dtype, setup.input_bytes_per_sample, setup.storage, setup.raid0,
                       setup.dataset_size, setup.prefetch, b * k_acc),
                       lambda: _flow_args(graph, system, placement, setup, b * k_acc), refs=(graph,)),
                   virtual=setup.virtual_stages)
    if z_extra:
        it = replace(it, total_s=it.total_s + z_extra, parts={**it.parts, "data_comm": it.parts["data_comm"] + z_extra})
    mem = memo.on(stg, ("footprint", setup.optimizer, z_stage, z_stage >= 1 and dp, pl_.schedule, m,
                        setup.virtual_stages),
                  lambda: stage_footprint(graph, stg, setup, pl_.schedule, m, dp))
    if not mem.fits:
        warnings.append(f"does not fit: needs {fmt_bytes(mem.total_bytes)} of {fmt_bytes(mem.capacity_bytes)} "
                        f"per device; largest batch per replica that fits: {mem.max_batch}")
    dev = system.device
    if device_traits(dev).thread_model == "cores" and threads and threads > (dev.cores or 1):
        warnings.append(f"{threads} threads on {dev.cores} physical cores: hyper-threads add no speed "
                        f"(penalty {dev.thread_scaling.hyperthread_penalty} per extra thread per core)")
    return Evaluation(graph, setup, system, placement, pl_, sync, b, mb, ranks, stg, gs, syn, it, mem,
                      ranks.threads, cpu_share, tuple(warnings))


def _flow_args(graph: LayerGraph, system: System, placement: Placement, setup, samples_iter: int) -> dict[str, Any]:
    """Keyword arguments of dataflow.data_flow for this setup (all but the step's compute time)."""
    dev_bps = graph_input_bytes(graph, setup.dtype)
    store_bps = setup.input_bytes_per_sample if setup.input_bytes_per_sample is not None else dev_bps
    st_obj = system.storage
    if setup.storage is not None:
        st_obj = load_hardware(setup.storage, kind="storage")
    if setup.raid0 is not None:
        if st_obj is None:
            raise InputError("raid0 needs a storage profile (storage=...) or a node with one")
        st_obj = st_obj.raid0(setup.raid0)
    node_samples, group_bytes, group_bw = busiest_input(system, placement, samples_iter, dev_bps)
    return dict(node_samples=node_samples, group_bytes=group_bytes, group_link_Bps=group_bw,
                bytes_per_sample=store_bps, storage=st_obj, dataset_bytes=setup.dataset_size,
                host_memory_bytes=system.host_memory_bytes, prefetch=setup.prefetch)
