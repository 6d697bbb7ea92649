"""evaluate(): one training iteration of a graph on a device, node or cluster under a TrainingSetup.

The one path of predict, sweep and plan search: a single device is the plan dp = tp = pp = 1. Steps:
resolve the system and place the plan; per-layer arrays of one tensor-parallel rank at the
micro-batch (perfmodel.parallel.rank); pipeline stages with recomputation (perfmodel.parallel.stages);
gradient synchronisation and the iteration glue with stragglers, sync modes, parameter servers and
data flow (perfmodel.parallel.iteration); memory of the fullest stage. perfmodel.prediction turns the
Evaluation into a Prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..dataflow import input_bytes_per_sample as graph_input_bytes
from ..engine import memo
from ..engine.rates import fused_attention, layout_note
from ..errors import InputError
from ..graph.layer_graph import LayerGraph
from ..hardware.loader import list_hardware, load_hardware
from ..hardware.topology import System, resolve_system
from ..hardware.traits import device_traits
from ..result import MemoryFootprint
from .data_parallel import GRAD_BYTES, replica_batch
from .iteration import (GradientSync, Iteration, Synced, busiest_input, gradient_sync, iteration, synced,
                        with_gathers)
from .plan import Placement, Plan, make_plan, place
from . import collectives as C
from . import experts as X
from .rank import RankLayers, rank_layers, tp_comm
from .sharding import GatherOverlap, hybrid_collectives, pipelined_zero3, shard_degree, zero_sync
from ..ops import DTYPE_BYTES
from .context import check_context, cp_comm
from .offload import host_bytes, host_link
from .overlap import check_tp_overlap, mark_tp_overlap, overlap_use, tp_overlap_arrays
from .pipeline import inflight_microbatches
from .stages import Staged, footprint, fullest, offload_bytes, offloaded, recompute_for, stage_memory, staged
from ..units import fmt_bytes

# the `sharding` figure of the per-stage communication after a stage's last backward: ZeRO-2's all-gather of the
# updated parameters after the optimizer step, stage 3 with a pipeline: the gradient reduce-scatters
AFTER_KEY = {2: "after_step_gather_s", 3: "after_backward_scatter_s"}
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
    large: dict[str, Any] = field(default_factory=dict)  # sharding figures of the large-model options


def _effective_sync(setup, plan: Plan, placement: Placement, warnings: list[str]) -> str:
    sync = setup.sync
    if sync != "sync" and (plan.tp > 1 or plan.pp > 1 or plan.cp > 1):
        raise InputError(f"sync={sync!r} models data-parallel workers only; use tp=1, pp=1 and context_parallel=1 "
                         f"(got tp={plan.tp}, pp={plan.pp}, context_parallel={plan.cp})")
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


def stage_shards(stg: Staged, shard: tuple[int, int], ep: int) -> int | tuple[float, ...]:
    """Ranks each stage's model state is sharded over: shard[1] (sharding.shard_degree), or with expert
    parallelism and ZeRO >= 1 per stage experts.state_shards (experts over the dp / ep replicas holding them)."""
    stage, n = shard
    ex = stg.ranks.expert_params
    if stage == 0 or ep == 1 or ex is None:
        return n
    ce = np.concatenate(([0], np.cumsum(ex)))
    return tuple(X.state_shards(float(p), float(ce[e] - ce[a]), n, ep) for p, (a, e) in zip(stg.st_params, stg.ranges))


def stage_footprint(graph: LayerGraph, stg: Staged, setup, schedule: str, m: int, shard: tuple[int, int]
                    ) -> MemoryFootprint:
    """Footprint of the fullest stage, with the largest batch per replica from a second micro-batch's slope;
    `shard`: (ZeRO stage, ranks the model state is sharded over), sharding.shard_degree."""
    r = stg.ranks
    stage, zero_dp = shard[0], stage_shards(stg, shard, setup.expert_parallel)
    alone = r.expert_params if r.expert_params is not None and shard[1] // setup.expert_parallel == 1 else None
    kw = dict(zero=stage, virtual=setup.virtual_stages, offload=setup.offload_activations, unsharded=alone)
    terms = stage_memory(stg, setup.optimizer, schedule, m, zero_dp, **kw)
    s, _ = fullest(terms)
    mb2 = 2 if r.batch == 1 else 1
    r2 = rank_layers(graph, r.device, mb2, r.dtype, r.threads, r.tp, r.sp, r.cp, r.ep)
    terms2 = stage_memory(stg, setup.optimizer, schedule, m, zero_dp, ranks=r2, **kw)
    return footprint(terms[s], terms2[s], r.batch, mb2, m, r.device.memory_bytes)


def _zero_glue(setup, stg: Staged, gs: GradientSync, pl: Placement, sync: str, micro_steps: int, stage: int):
    """(gradient sync, extra exposed seconds, per-stage seconds after the last backward or the optimizer step,
    per-tier seconds or None, sharding.GatherOverlap of the prefetched forward gathers) of ZeRO-2/3 / FSDP full or hybrid (parallel/sharding.zero_sync, hybrid_collectives).
    ZeRO-2 on every stage of a pipeline (its gradients reduce-scattered per bucket, then its updated parameters
    all-gathered); stage 3 with a pipeline as torchtitan's FSDP2 + PP (sharding.pipelined_zero3: one all-gather
    and one reduce-scatter per stage and step, the DDP buckets gone). Expert layers price their collectives over
    the expert-data-parallel group (the rank's `grad_sync_bytes` carry experts.expert_sync_ratio). The stage cut
    (stages.staged) was chosen with the plain all-reduce tails; the sharded collectives are priced on that cut."""
    if stage < 2:
        return gs, 0.0, (), None, GatherOverlap()
    if sync != "sync":
        raise InputError(f"ZeRO stage {stage} (zero={setup.zero}, sharding={setup.sharding!r}) with "
                         f"sync={sync!r} is not modelled (sync='sync' is)")
    r = stg.ranks
    use = overlap_use(r.device, setup.overlap)  # the stack's fsdp_prefetch and compute slowdown (parallel/overlap.py)
    prefetch = use.fsdp_prefetch
    layer_bytes = r.grad_sync_bytes * (DTYPE_BYTES[setup.dtype] / GRAD_BYTES)  # parameters in the compute dtype
    hybrid = hybrid_collectives(pl) if setup.sharding == "hybrid" else None
    bk = None if hybrid else C.dp_backend_fns(r.device.type, gs.info, r.rates)  # the collective library's costs
    if stage == 2:  # each stage all-gathers its own updated parameters after its optimizer step
        fn = zero_sync(2, gs.fn, layer_bytes, stg.f_l, micro_steps, backend=bk)[0]
        after = tuple(zero_sync(2, gs.fn, layer_bytes[a:e], stg.f_l[a:e], micro_steps, backend=bk)[1]
                      for a, e in stg.ranges)
        return replace(gs, fn=fn), 0.0, after, None, GatherOverlap()
    if stg.pp > 1:
        gather, scatter = (hybrid[1], hybrid[2]) if hybrid else (bk or ((lambda n: gs.fn(n) / 2),) * 2)
        extra, after, ov = pipelined_zero3(gather, scatter, layer_bytes, r.grad_sync_bytes, stg.f_l, stg.ranges,
                                           overlap=prefetch, slowdown=use.slowdown)
        return replace(gs, fn=lambda n: 0.0), extra, after, hybrid[3](float(layer_bytes.sum())) if hybrid else None, ov
    if hybrid is None:
        fn, extra, ov = zero_sync(stage, gs.fn, layer_bytes, stg.f_l, micro_steps, overlap=prefetch, backend=bk,
                                  slowdown=use.slowdown)
        return replace(gs, fn=fn), extra, (), None, ov
    bucket, gather, _, per_tier = hybrid
    fn, extra, ov = zero_sync(stage, bucket, layer_bytes, stg.f_l, micro_steps, gather, overlap=prefetch,
                              slowdown=use.slowdown)
    return replace(gs, fn=fn), extra, (), per_tier(float(layer_bytes.sum())), ov


def _opt_shard(ranks: RankLayers, shard: tuple[int, int], ep: int) -> float:
    """Ranks the optimizer step is shared by (iteration.synced's opt_shard): shard[1], with expert parallelism the
    rank's experts.state_shards (one figure for every stage, exact with pp = 1)."""
    if shard[0] == 0 or ep == 1 or ranks.expert_params is None:
        return shard[1]
    return X.state_shards(float(ranks.total_params), float(ranks.expert_params.sum()), shard[1], ep)


def _check_virtual(v: int, pp: int, schedule: str) -> None:
    """Interleaved 1F1B (virtual_stages > 1) needs a 1F1B pipeline (pp > 1)."""
    if v > 1 and (pp < 2 or schedule != "1f1b"):
        raise InputError(f"virtual_stages={v} needs a 1F1B pipeline (pp > 1), got pp={pp}, schedule={schedule!r}")


def _placed(graph: LayerGraph, hw: Any, setup, warnings: list[str]) -> tuple[Plan, System, Placement]:
    """The plan (devices = dp x tp x pp x cp), the resolved system and the placement, memoised."""
    pl_ = make_plan(setup.plan, setup.devices, setup.context_parallel)
    check_context(graph, pl_.cp)
    system = memo.on(hw, ("system", pl_.devices, setup.p2p, setup.memory_format),
                     lambda: resolve_system(hw, devices=pl_.devices).with_p2p(setup.p2p)
                     .with_memory_format(setup.memory_format))
    placement = memo.on(system, ("place", pl_, setup.nodes), lambda: place(pl_, system, setup.nodes))
    if getattr(hw, "kind", None) == "device" and pl_.devices > 1:
        warnings.append(_assumed_node(system, pl_.devices))
    return pl_, system, placement


def _recompute(graph: LayerGraph, ranks: RankLayers, mode: str, warnings: list[str]):
    """stages.recompute_for, with a warning when the mode finds nothing to recompute."""
    rc = recompute_for(graph, ranks, mode)
    if rc is None and mode != "none":
        attention = any(l.op == "attention" for l in graph.layers)
        why = ("the network has fewer than two segments" if mode == "full" else
               "the network has no attention layer" if not attention else
               "the software stack's fused attention already recomputes the attention core in backward and keeps "
               "none of it")
        warnings.append(f"recompute={mode!r}: {why}, nothing is recomputed")
    return rc


def _experts(graph: LayerGraph, setup, pl_: Plan, system: System, placement: Placement, ranks: RankLayers,
             gs: GradientSync, sync: str, z_stage: int):
    """Expert parallelism (parallel/experts.py): the rules, the rank with its expert gradients priced over the
    dp / ep replicas of each expert, and the per-layer all-to-all seconds and their tiers (None with ep = 1)."""
    ep = setup.expert_parallel
    k = placement.dp_ranks_per_node
    X.check_expert_parallel(graph, ep, pl_.dp, k, sharding=setup.sharding, sync=sync, allreduce=setup.allreduce,
                            cp=pl_.cp)
    if ep == 1:
        return ranks, None, {}
    (ep_in, ep_nodes), (edp_in, edp_nodes) = X.ep_layout(ep, pl_.dp, k)
    per = placement.devices_per_node
    a2a, edp = X.group_tiers(system, ep_in, ep_nodes, per), X.group_tiers(system, edp_in, edp_nodes, per)
    expert_bytes = float(ranks.expert_params.sum()) * GRAD_BYTES
    ratio = X.expert_sync_ratio(expert_bytes, gs.fn, lambda n: C.collective_time("all-reduce", n, edp, setup.allreduce))
    ranks = memo.on(ranks, ("ep_sync", ratio), lambda: replace(
        ranks, sync_bytes=X.sync_bytes(ranks.params, ranks.expert_params, ratio, GRAD_BYTES)))
    comm = memo.on(ranks, ("ep_comm", a2a), lambda: X.expert_comm(
        graph, ranks.batch, DTYPE_BYTES[ranks.dtype], ep, a2a, 1.0 / ranks.cp), refs=(graph,))
    info = {"expert_parallel": ep, "ep_group": {"ranks_per_node": ep_in, "nodes": ep_nodes},
            "expert_data_parallel": {"ranks_per_node": edp_in, "nodes": edp_nodes}, "expert_sync_ratio": ratio,
            "expert_params_per_rank": int(ranks.expert_params.sum()), "tiers": [t.name for t in a2a]}
    return ranks, (a2a, comm), info


def _rank_stages(graph: LayerGraph, setup, pl_: Plan, system: System, placement: Placement, ranks: RankLayers,
                 gs: GradientSync, copies: bool, warnings: list[str], ep_comm=None) -> Staged:
    """The rank's layers cut into stages: tensor-, context- and expert-parallel collectives (`ep_comm`: (tiers,
    per-layer all-to-all seconds) from _experts), recomputation, the stage cut, and activation offload (memoised
    on the rank)."""
    tp, pp, cp, m, k_acc = pl_.tp, pl_.pp, pl_.cp, pl_.m, setup.grad_accumulation
    tier = placement.tp_tier
    tpf, tpb = memo.on(ranks, ("tp_comm", tier.bandwidth_Bps, tier.latency_s),
                       lambda: tp_comm(ranks, tier.bandwidth_Bps, tier.latency_s))
    use, tov = overlap_use(ranks.device, setup.overlap, setup.tp_overlap), None
    if use.tp_comm and tp > 1:  # tensor-parallel collectives pipelined with their GEMMs (parallel/overlap.py)
        tov = memo.on(ranks, ("tp_overlap", use.slowdown), lambda: tp_overlap_arrays(ranks, tpf, tpb, use.slowdown),
                      refs=(tpf,))
        tpf, tpb = tov.cost_f, tov.cost_b
    cpc, cpt = None, placement.cp_tier
    if cp > 1:
        cpc = memo.on(ranks, ("cp_comm", cpt.bandwidth_Bps, cpt.latency_s),
                      lambda: cp_comm(graph, ranks, cp, cpt.bandwidth_Bps, cpt.latency_s), refs=(graph,))
    if tp > 1 and memo.on(graph, ("has_conv_rnn",), lambda: any(l.op in CONV_RNN_OPS for l in graph.layers)):
        warnings.append("tensor parallelism splits dense, attention and embedding layers only; "
                        "convolutions and recurrent layers are replicated on every tensor-parallel rank")
    if tp > 1 and memo.on(graph, ("has_moe",), lambda: bool(X.moe_layers(graph))):
        warnings.append("tensor parallelism does not split mixture-of-experts (moe) layers: every tensor-parallel "
                        "rank computes its tokens' experts whole (expert tensor parallelism is not modelled)")
    rc = _recompute(graph, ranks, setup.recompute, warnings)
    links = tuple((t.bandwidth_Bps, t.latency_s) for t in placement.pp_tiers) if pp > 1 else ()
    cut = (m, links, pl_.schedule, setup.optimizer, copies, k_acc, setup.bucket_bytes, setup.overlap)
    stg = memo.on(ranks, ("staged", setup.recompute if rc is not None else "none", pp, cp > 1 and cpt)
                  + (cut if pp > 1 else ()) + ((ep_comm[0],) if ep_comm else ()),
                  lambda: staged(graph, ranks, tpf, tpb, rc, pp, m, links, pl_.schedule, setup.optimizer, copies,
                                 k_acc, (gs.fn, setup.bucket_bytes, setup.overlap), cpc,
                                 ep_comm[1] if ep_comm else None),
                  refs=(tpf, gs) if pp > 1 else (tpf,))
    if tov is not None:
        stg = memo.on(stg, ("tp_overlap",), lambda: mark_tp_overlap(stg, tov))
    if setup.offload_activations:
        bw, lat = host_link(system)
        stg = memo.on(stg, ("offload", bw, lat), lambda: offloaded(stg, bw, lat))
    return stg


def evaluate(graph: LayerGraph, hw: Any, setup) -> Evaluation:
    """One iteration of `graph` on `hw` (device, node or cluster profile) under `setup` (a TrainingSetup)."""
    warnings: list[str] = []
    pl_, system, placement = _placed(graph, hw, setup, warnings)
    dp, pp, grad_ranks = pl_.dp, pl_.pp, pl_.grad_ranks
    sync = _effective_sync(setup, pl_, placement, warnings)
    k_acc = setup.grad_accumulation
    b = replica_batch(setup.batch_or_default, dp, k_acc, setup.scaling)
    m = pl_.m
    if pp == 1 and (pl_.microbatches or 1) > 1:
        warnings.append("microbatches is ignored without a pipeline (pp=1); use grad_accumulation to split a step")
    if b % m:
        raise InputError(f"the batch per replica ({b}) must be divisible by the {m} micro-batches")
    mb = b // m
    dev_run, cpu_share, threads = _run_device(system, placement.devices_per_node, setup.threads, warnings)
    warnings.extend(w for w in (layout_note(dev_run, setup.dtype, setup.memory_format),) if w)
    ranks = rank_layers(graph, dev_run, mb, setup.dtype, threads, pl_.tp, setup.sequence_parallel, pl_.cp,
                        setup.expert_parallel)
    gs = memo.on(placement, ("gsync", sync, setup.allreduce, setup.ps_servers, setup.ps_colocated),
                 lambda: gradient_sync(placement, system, sync, setup.allreduce, setup.ps_servers,
                                       setup.ps_colocated))
    copies = grad_ranks > 1 and sync != "async"
    shard = shard_degree(setup.zero, setup.sharding, grad_ranks, placement.dp_ranks_per_node)
    z_stage = shard[0]
    ranks, ep_comm, ep_info = _experts(graph, setup, pl_, system, placement, ranks, gs, sync, z_stage)
    stg = _rank_stages(graph, setup, pl_, system, placement, ranks, gs, copies, warnings, ep_comm)
    gs, z_extra, z_after, z_tiers, z_ov = _zero_glue(setup, stg, gs, placement, sync, m * k_acc, z_stage)
    _check_virtual(setup.virtual_stages, pp, pl_.schedule)
    check_tp_overlap(setup.tp_overlap, setup.overlap, pl_.tp, setup.sequence_parallel)
    syn = memo.on(stg, ("synced", setup.optimizer, setup.bucket_bytes, setup.overlap, sync, shard,
                        setup.sharding),
                  lambda: synced(stg, placement, gs.fn, setup.optimizer, setup.bucket_bytes, setup.overlap,
                                 ddp_copies=copies, opt_shard=_opt_shard(ranks, shard, setup.expert_parallel)),
                  refs=(placement, gs))
    if z_after:
        syn = replace(syn, after=z_after)
    it = iteration(stg, syn, gs, m=m, k_acc=k_acc, schedule=pl_.schedule, sync=sync,
                   straggler_cv=setup.straggler_cv, slow_worker_factor=setup.slow_worker_factor,
                   workers=placement.nodes if sync == "mixed" else dp,
                   straggler_ranks={"sync": pl_.devices, "mixed": placement.dp_ranks_per_node}.get(sync, 1),
                   overlap=setup.overlap, flow_args=memo.on(placement, (
                       "flow", setup.dtype, setup.input_bytes_per_sample, setup.storage, setup.raid0,
                       setup.dataset_size, setup.prefetch, b * k_acc),
                       lambda: _flow_args(graph, system, placement, setup, b * k_acc), refs=(graph,)),
                   virtual=setup.virtual_stages, tp_overlap=setup.tp_overlap)
    it = with_gathers(it, z_extra, z_ov.hidden_s, z_ov.slowdown_s)
    mem = memo.on(stg, ("footprint", setup.optimizer, shard, pl_.schedule, m, setup.virtual_stages,
                        setup.offload_activations),
                  lambda: stage_footprint(graph, stg, setup, pl_.schedule, m, shard))
    _memory_warnings(mem, stg, system, placement, setup, pl_, threads, warnings)
    ep_shard = {"experts_sharded_over": shard[1] // setup.expert_parallel} if ep_info and z_stage else {}
    large = {"sharding": {"stage": z_stage, "sharded_over": shard[1], **ep_shard, "exposed_gather_s": z_extra,
                          **({AFTER_KEY[z_stage]: list(z_after)} if z_after else {}),
                          **({"per_tier": z_tiers} if z_tiers else {})}, **({"experts": ep_info} if ep_info else {})}
    return Evaluation(graph, setup, system, placement, pl_, sync, b, mb, ranks, stg, gs, syn, it, mem,
                      ranks.threads, cpu_share, tuple(warnings), large)


def _memory_warnings(mem: MemoryFootprint, stg: Staged, system: System, placement: Placement, setup, pl_: Plan,
                     threads: int | None, warnings: list[str]) -> None:
    """Warnings about device memory, host memory filled by offloaded activations, and hyper-threads."""
    if not mem.fits:
        warnings.append(f"does not fit: needs {fmt_bytes(mem.total_bytes)} of {fmt_bytes(mem.capacity_bytes)} "
                        f"per device; largest batch per replica that fits: {mem.max_batch}")
    if setup.offload_activations:
        inflight = [inflight_microbatches(pl_.schedule, stg.pp, pl_.m, s) if stg.pp > 1 else 1
                    for s in range(stg.pp)]
        need = host_bytes(offload_bytes(stg), inflight, placement.devices_per_node)
        if need > system.host_memory_bytes:
            warnings.append(f"offloaded activations need {fmt_bytes(need)} of host memory per node, more than its "
                            f"{fmt_bytes(system.host_memory_bytes)}")
    dev = system.device
    if device_traits(dev).thread_model == "cores" and threads and threads > (dev.cores or 1):
        warnings.append(f"{threads} threads on {dev.cores} physical cores: hyper-threads add no speed "
                        f"(penalty {dev.thread_scaling.hyperthread_penalty} per extra thread per core)")


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
