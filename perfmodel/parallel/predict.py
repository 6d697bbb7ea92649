"""predict_parallel: one training iteration on several devices (data x tensor x pipeline), with sync
modes, stragglers and the data flow, assembled into a Prediction whose breakdown adds up to the total.

The critical path of one iteration, per device of the slowest pipeline stage:

    k x [ m micro-batches through the pipeline (stage compute incl. tensor-parallel all-reduces,
          bubble, exposed activation transfers) ]
  + the tail: the gradient all-reduces left after backward (buckets overlapped with the last
    backward, or not), then the optimizer step
  + stragglers (synchronous: waiting for the slowest of N devices)
  + exposed storage IO and host-to-device copies (what prefetching cannot hide)

k is gradient accumulation, m the micro-batches (1 without a pipeline). Asynchronous training has
no all-reduce: each worker pushes its gradient to parameter servers and pulls parameters, and the
iteration (one update per worker) is limited by the workers or by the servers' bandwidth. Mixed is
synchronous inside a node and asynchronous between nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Any

from ..dataflow import HOST_RAM_CACHE_FRACTION, IO_QUEUE_DEPTH, data_flow
from ..dataflow import input_bytes_per_sample as graph_input_bytes
from ..errors import InputError
from ..graph.layer_graph import LayerGraph
from ..hardware.loader import load_hardware
from ..hardware.topology import resolve_system
from ..memory import MAX_BATCH, largest_batch, memory_footprint
from ..ops import DTYPE_BYTES, STAGES
from ..ops.base import graph_costs
from ..optimizers import MASTER_BYTES, optimizer_state_bytes, optimizer_work
from ..prediction.assemble import assumptions as single_assumptions
from ..prediction.assemble import bottleneck_text, layer_rows
from ..result import BREAKDOWN_PARTS, MemoryFootprint, Prediction
from ..step import LOWP, StageTime, stage_time, step_profile
from . import collectives as C
from .data_parallel import (DDP_BUCKET_BYTES, DDP_BUCKET_COPY_PASSES, DDP_FIRST_BUCKET_BYTES, GRAD_BYTES,
                            ddp_copy_time, make_buckets, replica_batch, sync_schedule)
from .pipeline import inflight_microbatches, partition, schedule_time
from .plan import dp_allreduce_fn, make_plan, place
from .sync_modes import PS_UPDATE_BYTES_FACTOR, SYNC_MODES, async_throughput, expected_max_normal, straggler_delay
from .tensor import sharded_profile


def _param_tensors(c) -> int:
    return int(c.extra.get("param_tensors", 2 if c.params else 0))


def _parts(st: StageTime, scale: float = 1.0) -> dict[str, float]:
    return {"compute": st.roof_compute_s * scale, "memory": st.roof_memory_s * scale, "overhead": st.overhead_s * scale}


def _add(a: dict[str, float], b: dict[str, float]) -> None:
    for k, v in b.items():
        a[k] = a.get(k, 0.0) + v


@dataclass(frozen=True)
class _Sums:
    """Prefix sums over the layers of one step profile (index i: layers [0, i)), computed once per profile."""

    fwd: tuple[float, ...]
    bwd: tuple[float, ...]
    bwd_data: tuple[float, ...]
    bwd_weight: tuple[float, ...]
    parts: dict[str, tuple[float, ...]]  # compute, memory, overhead over all stages
    params: tuple[int, ...]
    tensors: tuple[int, ...]
    grad_bytes: tuple[float, ...]  # per layer (not a prefix sum)
    flops_fwd: float
    flops_bwd: float

    def span(self, arr: tuple, a: int, e: int) -> float:
        return arr[e] - arr[a]


def _sums(prof) -> _Sums:
    """The cached prefix sums of `prof` (StepProfile is immutable, so they never go stale)."""
    hit = prof.__dict__.get("_parallel_sums")
    if hit is not None:
        return hit
    from itertools import accumulate

    def pre(vals):
        return tuple(accumulate(vals, initial=0))

    ts, cs = prof.times, prof.costs
    parts = {
        "compute": pre(t.forward.roof_compute_s + t.backward_data.roof_compute_s + t.backward_weight.roof_compute_s
                       for t in ts),
        "memory": pre(t.forward.roof_memory_s + t.backward_data.roof_memory_s + t.backward_weight.roof_memory_s
                      for t in ts),
        "overhead": pre(t.forward.overhead_s + t.backward_data.overhead_s + t.backward_weight.overhead_s for t in ts),
    }
    out = _Sums(
        fwd=pre(t.forward.time_s for t in ts), bwd=pre(t.backward_data.time_s + t.backward_weight.time_s for t in ts),
        bwd_data=pre(t.backward_data.time_s for t in ts), bwd_weight=pre(t.backward_weight.time_s for t in ts),
        parts=parts, params=pre(c.params for c in cs), tensors=pre(_param_tensors(c) for c in cs),
        grad_bytes=tuple(float(c.params * GRAD_BYTES) for c in cs),
        flops_fwd=sum(c.flops("forward") for c in cs),
        flops_bwd=sum(c.flops("backward_data") + c.flops("backward_weight") for c in cs),
    )
    prof.__dict__["_parallel_sums"] = out
    return out


def predict_parallel(graph: LayerGraph, hw: Any, setup, *, layers: bool = True) -> Prediction:
    """One iteration of `graph` on a device, node or cluster under a TrainingSetup; see the module docstring.

    setup.batch: samples per data-parallel replica per micro-step (weak scaling) or the global batch
    (scaling='strong'). The Prediction's `batch` is the global batch of the iteration.
    """
    batch, dtype, threads, optimizer = setup.batch_or_default, setup.dtype, setup.threads, setup.optimizer
    devices, nodes, plan, sync, allreduce = setup.devices, setup.nodes, setup.plan, setup.sync, setup.allreduce
    overlap, bucket_bytes, straggler_cv = setup.overlap, setup.bucket_bytes, setup.straggler_cv
    dataset_size, storage, prefetch = setup.dataset_size, setup.storage, setup.prefetch
    grad_accumulation, input_bytes_per_sample, scaling = setup.grad_accumulation, setup.input_bytes_per_sample, \
        setup.scaling
    ps_servers, ps_colocated, p2p, raid0 = setup.ps_servers, setup.ps_colocated, setup.p2p, setup.raid0
    warnings: list[str] = []
    pl_ = make_plan(plan, devices)
    n_dev = pl_.devices
    system = resolve_system(hw, devices=n_dev).with_p2p(p2p)
    placement = place(pl_, system, nodes)
    dev = system.device
    dp, tp, pp = pl_.dp, pl_.tp, pl_.pp
    if sync != "sync" and (tp > 1 or pp > 1):
        raise InputError(f"sync={sync!r} models data-parallel workers only; use tp=1 and pp=1 (got tp={tp}, pp={pp})")
    if sync != "sync" and dp == 1:
        warnings.append(f"sync={sync!r} with a single worker is plain synchronous training")
        sync_eff = "sync"
    elif sync == "mixed" and placement.nodes == 1:
        warnings.append("sync='mixed' on one node: synchronous inside the node, nothing asynchronous between nodes")
        sync_eff = "sync"
    else:
        sync_eff = sync
    k_acc = grad_accumulation
    b = replica_batch(batch, dp, k_acc, scaling)
    m = pl_.m
    if pp == 1 and (pl_.microbatches or 1) > 1:
        warnings.append("microbatches is ignored without a pipeline (pp=1); use grad_accumulation to split a step")
    if b % m:
        raise InputError(f"the batch per replica ({b}) must be divisible by the {m} micro-batches")
    mb = b // m

    # ---- CPU nodes: worker processes share the node's cores ---------------------------------------------
    per = placement.devices_per_node
    dev_run, cpu_share = dev, 1.0
    if dev.is_cpu and per > 1:
        dev_run, cpu_share, threads = _cpu_process_share(dev, per, threads, system.node.process_speed,
                                                         system.node.memory_speed)
        mem_speed = system.node.memory_speed
        warnings.append(f"{per} worker processes x {threads} thread(s) share the CPU of a node: each gets "
                        + (f"1/{per} of its memory bandwidth" if mem_speed is None else
                           f"{mem_speed:.2f} x a lone process's speed on memory-bound work")
                        + (f" and computes at {cpu_share:.2f} x a lone process's speed" if cpu_share < 1 else ""))

    # ---- per-layer times of one tensor-parallel rank at the micro-batch ---------------------------
    prof, layout = sharded_profile(graph, dev_run, mb, dtype, threads, optimizer, tp)
    nl = len(graph.layers)
    tpt = placement.tp_tier
    tp_f = [0.0] * nl
    tp_b = [0.0] * nl
    if tp > 1:
        for i, t in enumerate(layout):
            tp_f[i] = (C.ring_allreduce(t.fwd_allreduce_bytes, tp, tpt.bandwidth_Bps, tpt.latency_s)
                       + C.all_gather(t.fwd_allgather_bytes, tp, tpt.bandwidth_Bps, tpt.latency_s))
            tp_b[i] = C.ring_allreduce(t.bwd_allreduce_bytes, tp, tpt.bandwidth_Bps, tpt.latency_s)
        if any(l.op in ("conv2d", "conv1d", "conv_transpose2d", "lstm", "gru", "rnn") for l in graph.layers):
            warnings.append("tensor parallelism splits dense, attention and embedding layers only; "
                            "convolutions and recurrent layers are replicated on every tensor-parallel rank")
    sums = _sums(prof)
    f_l = [t.forward.time_s + tp_f[i] for i, t in enumerate(prof.times)] if tp > 1 else None
    b_l = [t.backward_data.time_s + t.backward_weight.time_s + tp_b[i] for i, t in enumerate(prof.times)] \
        if tp > 1 else [sums.bwd[i + 1] - sums.bwd[i] for i in range(nl)]

    # ---- pipeline stages ---------------------------------------------------------------------------
    if pp > 1:
        if f_l is None:
            f_l = [sums.fwd[i + 1] - sums.fwd[i] for i in range(nl)]
        ranges = partition([f + bb for f, bb in zip(f_l, b_l)], pp)
    else:
        ranges = ((0, nl),)
    stage_of = [0] * nl
    if pp > 1:
        for s, (a, e) in enumerate(ranges):
            for i in range(a, e):
                stage_of[i] = s
    total_params = prof.params
    st_params = [sums.span(sums.params, a, e) for a, e in ranges]
    st_tensors = [sums.span(sums.tensors, a, e) for a, e in ranges]
    cast = prof.cast_time
    cast_share = [(p / total_params if total_params else (1.0 if s == 0 else 0.0)) for s, p in enumerate(st_params)]
    if tp > 1:
        F = [sum(f_l[a:e]) + cast.time_s * cast_share[s] for s, (a, e) in enumerate(ranges)]
        B = [sum(b_l[a:e]) for a, e in ranges]
    else:
        F = [sums.span(sums.fwd, a, e) + cast.time_s * cast_share[s] for s, (a, e) in enumerate(ranges)]
        B = [sums.span(sums.bwd, a, e) for a, e in ranges]
    # activation bytes crossing each boundary (outputs of earlier stages read by later ones)
    idx = {l.name: i for i, l in enumerate(graph.layers)} if pp > 1 else {}
    cross = [0.0] * max(0, pp - 1)
    for s in range(pp - 1):
        sent = set()
        for j, layer in enumerate(graph.layers):
            if stage_of[j] <= s:
                continue
            for src in layer.input_names:
                i = idx[src]
                if stage_of[i] <= s and i not in sent:
                    sent.add(i)
                    cross[s] += prof.costs[i].output_bytes
    xfer = [C.point_to_point(cross[s], 2, placement.pp_tiers[s].bandwidth_Bps, placement.pp_tiers[s].latency_s)
            for s in range(pp - 1)]
    timing = schedule_time(F, B, xfer, m, pl_.schedule)

    # ---- optimizer per stage ----------------------------------------------------------------------------
    if pp == 1:
        opt = [prof.optimizer_time]
    else:
        opt = [stage_time((optimizer_work(optimizer, p, t, gpu=not dev.is_cpu),), prof.rates)
               for p, t in zip(st_params, st_tensors)]

    # ---- data-parallel gradient synchronisation per stage ---------------------------------------------
    ar_fn, ar_info = dp_allreduce_fn(placement, system, allreduce, ps_servers, ps_colocated)
    grad_bytes_total = total_params * GRAD_BYTES  # per tensor-parallel rank, all stages
    ps_cfg: dict[str, Any] = {}
    if sync_eff in ("async", "mixed"):
        # asynchronous workers push gradients (bucket by bucket, as backward produces them) to parameter
        # servers and pull the parameters back after the step; the servers apply the updates
        if sync_eff == "mixed":
            w_bw = placement.net_bandwidth_Bps  # a node pushes its all-reduced gradient through all its NICs
            srv_bw_one = placement.net_bandwidth_Bps
        elif placement.nodes > 1:
            w_bw = placement.net_bandwidth_Bps / placement.devices_per_node  # every device pushes its own
            srv_bw_one = placement.net_bandwidth_Bps
        else:  # one node: the server is the host; devices push through their share of the PCIe uplinks
            w_bw = min(l.effective_bandwidth_Bps / len(g) for l, g in zip(system.host_links, system.groups))
            srv_bw_one = sum(l.effective_bandwidth_Bps for l in system.host_links)
        ps_lat = placement.net_latency_s if placement.nodes > 1 else max(l.latency_s for l in system.host_links)
        # dedicated servers (default one) with a node's network bandwidth each; co-located: one shard per node
        servers = ps_servers or (placement.nodes if ps_colocated and placement.nodes > 1 else 1)
        srv_total = servers * srv_bw_one

        def one_way(n: float) -> float:
            return max(n / w_bw, n / srv_total) + ps_lat if n > 0 else 0.0

        ps_cfg = dict(w_bw=w_bw, srv_bw_one=srv_bw_one, servers=servers, srv_total=srv_total, one_way=one_way)
        if sync_eff == "mixed":
            # synchronous all-reduce among the devices of a node, then the node's push
            from dataclasses import replace as _replace

            node_pl = _replace(placement, plan=pl_.model_copy(update={"dp": placement.dp_ranks_per_node}),
                               dp_nodes=1, net_bandwidth_Bps=0.0)
            intra_fn, ar_info = dp_allreduce_fn(node_pl, system,
                                                "ring" if allreduce in ("ps", "hierarchical") else allreduce)
            ar_fn = (lambda n: intra_fn(n) + one_way(n))
        else:
            ar_fn = one_way
            ar_info = {"algorithm": "ps", "ranks": dp}
    sched = []
    pipe_T = timing.total_s
    for s, (a, e) in enumerate(ranges):
        bk = make_buckets(b_l[a:e], sums.grad_bytes[a:e], bucket_bytes)
        sched.append(sync_schedule(bk, B[s], ar_fn, overlap))
    start_last_bwd = [timing.last_backward_end_s[s] - B[s] for s in range(pp)]
    base = (k_acc - 1) * pipe_T
    # DDP's own memory passes over the gradients (copy into the bucket, scale, copy back); none without peers
    copy = [ddp_copy_time(p, t, prof.rates) if (dp > 1 and sync_eff != "async") else StageTime()
            for p, t in zip(st_params, st_tensors)]
    stage_end = [base + start_last_bwd[s] + sched[s].end_s + copy[s].time_s + opt[s].time_s for s in range(pp)]
    core_end = max(stage_end)
    s_star = max(range(pp), key=lambda s: stage_end[s])
    tail = core_end - k_acc * pipe_T
    opt_part = min(opt[s_star].time_s, max(0.0, tail))
    copy_part = min(copy[s_star].time_s, max(0.0, tail - opt_part))
    sync_exposed = max(0.0, tail - opt_part - copy_part)
    comm_crit = sched[s_star].comm_s
    comm_hidden = max(0.0, comm_crit - sync_exposed) if overlap else 0.0

    # ---- breakdown of the synchronous critical path ---------------------------------------------------
    crit = timing.critical_stage
    a, e = ranges[crit]
    bd = {k: 0.0 for k in BREAKDOWN_PARTS}
    per_mb = {k: sums.span(v, a, e) for k, v in sums.parts.items()}
    _add(per_mb, _parts(cast, cast_share[crit]))
    tp_crit = sum(tp_f[a:e]) + sum(tp_b[a:e])
    reps = k_acc * m
    _add(bd, {k: v * reps for k, v in per_mb.items()})
    ot = opt[s_star]
    scale = opt_part / ot.time_s if ot.time_s > 0 else 0.0
    _add(bd, _parts(ot, scale))
    ct = copy[s_star]
    _add(bd, _parts(ct, copy_part / ct.time_s if ct.time_s > 0 else 0.0))
    bd["communication"] = tp_crit * reps + k_acc * timing.exposed_transfer_s + sync_exposed
    bd["bubble"] = k_acc * timing.bubble_s
    device_work = reps * (F[crit] + B[crit] - tp_crit) + opt[crit].time_s + copy[crit].time_s
    core = sum(bd.values())

    # ---- sync modes --------------------------------------------------------------------------------------
    staleness = None
    async_info: dict[str, Any] = {}
    straggler = 0.0
    if sync_eff == "sync":
        straggler = straggler_delay(device_work, straggler_cv, n_dev)
        bd["straggler"] = straggler
        iteration_core = core + straggler
    else:
        if sync_eff == "mixed":
            workers = placement.nodes
            straggler = straggler_delay(device_work, straggler_cv, placement.dp_ranks_per_node)
            bd["straggler"] = straggler
        else:
            workers = dp
        pull = ps_cfg["one_way"](grad_bytes_total)
        worker_step = core + straggler + pull
        thr = async_throughput(workers, worker_step, grad_bytes_total, ps_cfg["srv_total"])
        iteration_core = workers / thr["updates_per_s"]
        bd["communication"] += iteration_core - worker_step + pull
        staleness = thr["staleness"]
        async_info = {"workers": workers, "ps_servers": ps_cfg["servers"], "ps_colocated": ps_colocated,
                      "push_s": comm_crit, "pull_s": pull, "worker_step_s": worker_step,
                      "server_bandwidth_Bps": ps_cfg["srv_total"], "worker_bandwidth_Bps": ps_cfg["w_bw"],
                      "bound": thr["bound"], "updates_per_s": thr["updates_per_s"],
                      "ps_update_bytes_factor": PS_UPDATE_BYTES_FACTOR}
        sync_exposed = bd["communication"] - tp_crit * reps - k_acc * timing.exposed_transfer_s

    # ---- data flow -------------------------------------------------------------------------------------------
    samples_iter = b * k_acc  # per replica per iteration
    dev_bps = graph_input_bytes(graph, dtype)
    store_bps = input_bytes_per_sample if input_bytes_per_sample is not None else dev_bps
    st_obj = system.storage
    if storage is not None:
        st_obj = load_hardware(storage, kind="storage")
    if raid0 is not None:
        if st_obj is None:
            raise InputError("raid0 needs a storage profile (storage=...) or a node with one")
        st_obj = st_obj.raid0(raid0)
    best_group = (0.0, 1.0)
    node_samples = 0.0
    for node in range(placement.nodes):
        group_bytes: dict[int, float] = {}
        replicas = set()
        for local in range(per):
            r = node * per + local
            s = (r // tp) % pp
            if s != 0:
                continue
            replicas.add(r // (tp * pp))
            if not dev.is_cpu:
                g = system.group_of(local)
                group_bytes[g] = group_bytes.get(g, 0.0) + samples_iter * dev_bps
        node_samples = max(node_samples, len(replicas) * samples_iter)
        for g, byt in group_bytes.items():
            bw = system.host_links[g].effective_bandwidth_Bps
            if byt / bw > best_group[0] / best_group[1]:
                best_group = (byt, bw)
    df = data_flow(compute_s=iteration_core, node_samples=node_samples, group_bytes=best_group[0],
                   group_link_Bps=best_group[1], bytes_per_sample=store_bps, storage=st_obj,
                   dataset_bytes=dataset_size, host_memory_bytes=system.host_memory_bytes, prefetch=prefetch)
    bd["io"] = df.exposed_io_s
    bd["host_to_device"] = df.exposed_host_to_device_s
    total = sum(bd.values())

    # ---- totals, memory, FLOPs ---------------------------------------------------------------------------------
    global_batch = b * k_acc * dp
    throughput = global_batch / total if total > 0 else 0.0
    if tp > 1:
        full_costs = graph_costs(graph, mb, DTYPE_BYTES[dtype])
        fwd_fl = sum(c.flops("forward") for c in full_costs) * reps * dp
        bwd_fl = sum(c.flops("backward_data") + c.flops("backward_weight") for c in full_costs) * reps * dp
        full_params = sum(c.params for c in full_costs)
    else:
        fwd_fl, bwd_fl, full_params = sums.flops_fwd * reps * dp, sums.flops_bwd * reps * dp, prof.params
    opt_fl = optimizer_work(optimizer, full_params, 1, gpu=not dev.is_cpu).flops * dp
    all_fl = fwd_fl + bwd_fl + opt_fl
    peak = dev.peak(dtype) * n_dev
    achieved = all_fl / total if total > 0 else 0.0
    mem = _memory(graph, prof, ranges, pl_, mb, m, dtype, optimizer, dev, st_params)
    if not mem.fits:
        warnings.append(f"does not fit: needs {mem.total_bytes / 1e9:.2f} GB of {mem.capacity_bytes / 1e9:.2f} GB "
                        f"per device; largest batch per replica that fits: {mem.max_batch}")
    if dev.is_cpu and threads and threads > (dev.cores or 1):
        warnings.append(f"{threads} threads on {dev.cores} physical cores: hyper-threads add no speed")

    single_t = step_profile(graph, dev, b if scaling == "weak" else batch, dtype, threads, optimizer).total_s
    if scaling == "weak":
        ideal = n_dev * b / single_t
        eff = throughput / ideal if ideal > 0 else 0.0
    else:
        eff = (single_t / total) / n_dev if total > 0 else 0.0
    if layers:
        rows = layer_rows(prof)
    else:
        top = prof.__dict__.get("_top3")
        if top is None:
            top = prof.__dict__["_top3"] = sorted(range(nl), key=lambda i: prof.times[i].total_s, reverse=True)[:3]
        rows = layer_rows(prof, top)
    stages = {
        "forward": sums.span(sums.fwd, a, e) * reps + cast.time_s * cast_share[crit] * reps,
        "backward_data": sums.span(sums.bwd_data, a, e) * reps,
        "backward_weight": sums.span(sums.bwd_weight, a, e) * reps,
        "optimizer": opt[crit].time_s,
    }
    tiers = {"tensor": tpt.name if tp > 1 else None,
             "pipeline": [t.name for t in placement.pp_tiers] if pp > 1 else None,
             "data": ar_info}
    exposed_comm = bd["communication"]
    par: dict[str, Any] = {
        "plan": {"dp": dp, "tp": tp, "pp": pp, "microbatches": m, "schedule": pl_.schedule,
                 "grad_accumulation": k_acc},
        "devices": n_dev, "nodes": placement.nodes, "devices_per_node": per,
        "per_device_batch": b, "microbatch": mb, "global_batch": global_batch, "scaling": scaling,
        "sync": sync_eff, "algorithm": allreduce if sync_eff == "sync" else ("ps" if sync_eff == "async" else
                                                                           f"{ar_info['algorithm']} in node + ps"),
        "overlap": overlap,
        "exposed_communication_s": exposed_comm,
        "hidden_communication_s": comm_hidden,
        "gradient_sync_s": comm_crit + (async_info.get("pull_s", 0.0) if async_info else 0.0),
        "exposed_gradient_sync_s": sync_exposed,
        "tensor_parallel_comm_s": tp_crit * reps,
        "pipeline_transfer_s": k_acc * timing.exposed_transfer_s,
        "bubble_s": bd["bubble"], "bubble_fraction": timing.bubble_fraction,
        "straggler_s": bd["straggler"], "straggler_cv": straggler_cv,
        "expected_max_normal": expected_max_normal(n_dev if sync_eff == "sync" else max(1, placement.dp_ranks_per_node)),
        "io_s": df.io_s, "exposed_io_s": df.exposed_io_s,
        "host_to_device_s": df.host_to_device_s, "exposed_host_to_device_s": df.exposed_host_to_device_s,
        "dataset_in_ram_fraction": df.ram_hit_fraction, "storage": df.storage, "prefetch": prefetch,
        "gradient_bytes": grad_bytes_total, "bucket_copy_s": copy[s_star].time_s, "buckets": len(sched[s_star].buckets),
        "bucket_bytes": bucket_bytes or DDP_BUCKET_BYTES,
        "stages": [{"layers": [graph.layers[x].name for x in (ra, re_ - 1)], "count": re_ - ra,
                    "forward_s": F[s], "backward_s": B[s], "params": st_params[s]}
                   for s, (ra, re_) in enumerate(ranges)] if pp > 1 else None,
        "tiers": tiers,
        "single_device_time_s": single_t,
        "scaling_efficiency": eff,
        "staleness": staleness,
    }
    if async_info:
        par["async"] = async_info
    hidden = {"communication": par["hidden_communication_s"], "host_to_device": df.hidden_host_to_device_s,
              "io": df.hidden_io_s}
    assum = single_assumptions(prof)
    assum.update({
        "ddp_bucket_bytes": bucket_bytes or DDP_BUCKET_BYTES, "ddp_first_bucket_bytes": DDP_FIRST_BUCKET_BYTES,
        "ddp_bucket_copy_passes": DDP_BUCKET_COPY_PASSES,
        "gradient_bytes_per_param": GRAD_BYTES, "host_ram_cache_fraction": HOST_RAM_CACHE_FRACTION,
        "io_queue_depth": IO_QUEUE_DEPTH, "ps_update_bytes_factor": PS_UPDATE_BYTES_FACTOR,
        "fabric": f"{system.fabric_type}, {system.fabric_bandwidth_Bps / 1e9:.1f} GB/s per device, "
                  f"{system.fabric_latency_s * 1e6:.1f} us",
        "network": (f"{system.nics} x {system.network.name}, {placement.net_bandwidth_Bps / 1e9:.1f} GB/s per node, "
                    f"{system.network_latency_s * 1e6:.1f} us") if placement.nodes > 1 else None,
        "storage_bytes_per_sample": store_bps, "device_input_bytes_per_sample": dev_bps,
        "cpu_process_share": cpu_share,
        "rank_order": "tensor innermost, then pipeline stage, then data-parallel replica; nodes filled in order",
    })
    return Prediction(
        network=graph.name, hardware=system.name, device_type=dev.type, batch=global_batch, dtype=dtype,
        threads=prof.threads, optimizer=optimizer, devices=n_dev, iteration_time_s=total,
        throughput_samples_per_s=throughput, breakdown=bd, stages=stages, hidden=hidden,
        flops={"forward": fwd_fl, "backward": bwd_fl, "optimizer": opt_fl, "total": all_fl},
        achieved_flops=achieved, peak_flops=peak, utilization=achieved / peak if peak else 0.0,
        bottleneck=bottleneck_text(bd, rows, total), memory=mem, layers=rows if layers else (),
        assumptions=assum, parallel=par, warnings=tuple(warnings),
    )


def _cpu_process_share(dev, per: int, threads: int | None, measured: float | None = None,
                       memory_speed: float | None = None):
    """`per` processes of `threads` threads each on one CPU: (device as one process sees it, speed factor, threads).

    Compute: the speed of a lone process times the node's measured `process_speed`, or (without a
    measurement) its own cores, time-shared when per x threads exceeds the cores. Memory-bound work
    (bandwidth, per-core bandwidth and calibrated elementwise rates): a lone process's times the node's
    measured `memory_speed`, or (without a measurement) 1/per of the memory bandwidth.
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
    d = dev.model_copy(update=upd)
    return d, f, t


def _memory(graph, prof, ranges, plan, mb, m, dtype, optimizer, dev, st_params) -> MemoryFootprint:
    """Per-device footprint of the fullest stage (the single-device footprint without tp / pp)."""
    if plan.tp == 1 and plan.pp == 1:
        return memory_footprint(graph, dev, mb, dtype, optimizer, costs=prof.costs)
    b = DTYPE_BYTES[dtype]
    best = None
    for s, (a, e) in enumerate(ranges):
        costs = prof.costs[a:e]
        p = st_params[s]
        inflight = inflight_microbatches(plan.schedule, plan.pp, m, s) if plan.pp > 1 else 1
        acts = sum(c.saved_bytes for c in costs)
        inputs = sum(c.output_bytes for l, c in zip(graph.layers[a:e], costs) if l.op == "input")
        per_layer = sorted((c.output_bytes + c.workspace_bytes for c in costs), reverse=True)
        ws = sum(per_layer[:2])
        t = {
            "weights_bytes": float(p * MASTER_BYTES + (p * b if dtype in LOWP else 0)),
            "gradients_bytes": float(p * MASTER_BYTES),
            "optimizer_bytes": optimizer_state_bytes(optimizer, p),
            "activations_bytes": float((acts + inputs) * inflight),
            "workspace_bytes": float(ws),
        }
        reserved = dev.runtime_reserved_bytes
        total = sum(t.values()) + reserved
        per_sample = (t["activations_bytes"] + t["workspace_bytes"]) / mb
        fixed = total - per_sample * mb
        cap = dev.memory_bytes
        max_mb = largest_batch(fixed, per_sample, cap)
        fp = MemoryFootprint(**t, reserved_bytes=reserved, total_bytes=total, capacity_bytes=cap, fits=total <= cap,
                             max_batch=min(MAX_BATCH, max_mb * m), bytes_per_sample=per_sample / m)
        if best is None or fp.total_bytes > best.total_bytes:
            best = fp
    return best
