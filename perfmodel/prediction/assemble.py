"""Assembly of a Prediction from an Evaluation: per-layer rows, breakdown, stages, FLOPs, bottleneck, assumptions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..dataflow import HOST_RAM_CACHE_FRACTION, IO_QUEUE_DEPTH, input_bytes_per_sample
from ..engine import memo
from ..errors import InputError
from ..hardware.traits import device_traits
from ..engine.layers import stage_time
from ..ops import STAGES
from ..optimizers import optimizer_work
from ..parallel.data_parallel import DDP_BUCKET_BYTES, DDP_BUCKET_COPY_PASSES, DDP_FIRST_BUCKET_BYTES, GRAD_BYTES
from ..parallel.predict import Evaluation
from ..parallel.rank import RankLayers, rank_layers
from ..parallel.sync_modes import PS_UPDATE_BYTES_FACTOR, expected_max_normal
from ..result import BREAKDOWN_PARTS, LayerRow, Prediction

PART_WORDS = {
    "compute": "compute-bound kernels (FLOP/s limited)",
    "memory": "memory-bound kernels (bandwidth limited)",
    "overhead": "per-kernel launch/dispatch overhead (kernels too small)",
    "recompute": "recomputed forward passes (activation recomputation)",
    "communication": "exposed gradient/activation communication",
    "bubble": "pipeline bubbles",
    "straggler": "waiting for stragglers",
    "host_to_device": "host-to-device input transfer",
    "io": "reading the dataset from storage",
    "offload": "activation copies to and from host memory (offload)",
}
# the large-model options of the setup, echoed in Prediction.parallel["setup"] (predict --json)
LARGE_MODEL_FIELDS = ("zero", "sharding", "sequence_parallel", "context_parallel", "virtual_stages", "recompute",
                      "offload_activations", "expert_parallel")


def layer_rows(graph, r: RankLayers, only: list[int] | None = None) -> tuple[LayerRow, ...]:
    """Per-layer rows of one rank (all layers, or the indices in `only`)."""
    idx = list(range(len(r.costs))) if only is None else list(only)
    sel = slice(None) if only is None else idx
    tm, cm, mm, ov = (r.st[k][sel].tolist() for k in ("time", "compute", "memory", "overhead"))
    rows = []
    for j, i in enumerate(idx):
        layer, c = graph.layers[i], r.costs[i]
        longest = max(range(3), key=lambda k: tm[j][k])
        roof = max(cm[j][longest], mm[j][longest])
        bound = "overhead" if ov[j][longest] > roof else ("compute" if cm[j][longest] >= mm[j][longest] else "memory")
        if tm[j][longest] == 0:
            bound = "none"
        scale = (1.0 / r.tp if r.tp > 1 and r.layout[i].split else 1.0) / r.cp  # this rank's share
        rows.append(LayerRow.model_construct(
            name=layer.name, op=layer.op, output_shape=layer.output_shape, params=int(r.params[i]),
            flops={s: c.flops(s) * scale for s in STAGES}, bytes={s: c.bytes(s) * scale for s in STAGES},
            time_s={**{s: tm[j][k] for k, s in enumerate(STAGES)}, "total": tm[j][0] + tm[j][1] + tm[j][2]},
            kernels=sum(c.kernels(s) for s in STAGES), bound=bound, saved_bytes=float(r.saved[i]),
        ))
    return tuple(rows)


def bottleneck_text(breakdown: dict[str, float], rows: tuple[LayerRow, ...], total: float) -> str:
    """One sentence naming the dominant part and the layers that cost most."""
    part = max(breakdown, key=lambda k: breakdown[k])
    share = breakdown[part] / total if total > 0 else 0.0
    top = sorted(rows, key=lambda r: r.time_s["total"], reverse=True)[:3]
    tops = ", ".join(f"{r.name} ({r.op}, {r.time_s['total'] / total:.0%})" for r in top if total > 0)
    return f"{share:.0%} of the step is {PART_WORDS[part]}" + (f"; costliest layers: {tops}" if tops else "")


def assumptions(device, rates, threads: int | None) -> dict[str, Any]:
    """The named parameters of one device this prediction used, with their values."""
    d = device
    a: dict[str, Any] = {
        "efficiency_source": d.efficiency.source,
        "efficiency": d.efficiency.model_dump(mode="json", exclude={"source"}, exclude_none=True),
        "kernel_overhead_s": d.kernel_overhead_s,
        "overhead_overlaps_execution": rates.overhead_overlaps,
        "peak_flops": rates.matrix_flops,
        "memory_bandwidth_Bps": rates.bandwidth_Bps,
        "master_weights": "fp32 parameters, gradients and optimizer state",
        "profile_source": d.source,
    }
    if rates.kernel is not None:  # the kernel model's software stack and the activation layout it runs
        stack = rates.kernel[1]
        a["software_stack"] = stack.name
        a["activation_layout"] = stack.activation_layout
    if device_traits(d).thread_model == "cores":
        a["threads"] = threads or d.cores
        a["thread_speedup"] = rates.thread_factor
        a["thread_scaling"] = d.thread_scaling.model_dump(mode="json")
    return a


def single_device_time(ev: Evaluation, batch: int) -> float:
    """One device, no parallelism, at `batch`: forward + backward + AMP cast + optimizer (the scaling baseline)."""
    return memo.on(ev.graph, ("single_t", batch, ev.ranks.dtype, ev.threads, ev.setup.optimizer),
                   lambda: _single_device_time(ev, batch), refs=(ev.system.device,))


def _single_device_time(ev: Evaluation, batch: int) -> float:
    r = rank_layers(ev.graph, ev.system.device, batch, ev.ranks.dtype, ev.threads, 1)
    opt = stage_time((optimizer_work(ev.setup.optimizer, r.total_params, r.total_tensors,
                                     style=device_traits(r.device).optimizer_kernels),), r.rates, "optimizer")
    return float(r.st["time"].sum()) + r.cast.time_s + opt.time_s


def _rows(ev: Evaluation, layers: bool) -> tuple[LayerRow, ...]:
    """All rows, or the three costliest (for the bottleneck sentence); memoised on the rank's arrays."""
    r = ev.ranks
    if layers:
        return memo.on(r, ("rows",), lambda: layer_rows(ev.graph, r), refs=(ev.graph,))

    def top3():
        top = np.argsort(-r.st["time"].sum(axis=1), kind="stable")[:3]
        return layer_rows(ev.graph, r, [int(i) for i in top])

    return memo.on(r, ("top3",), top3, refs=(ev.graph,))


def _cost_sums(costs) -> tuple[float, float, int]:
    """(forward FLOPs, backward FLOPs, parameters) of per-layer costs, memoised on the cost tuple."""
    return memo.on(costs, ("sums",), lambda: (
        sum(c.flops("forward") for c in costs), sum(c.flops("backward_data") + c.flops("backward_weight")
                                                   for c in costs), sum(c.params for c in costs)))


def _flops(ev: Evaluation, reps: int) -> dict[str, float]:
    r, dp = ev.ranks, ev.plan.dp
    f, b, params = _cost_sums(r.costs)  # unsplit costs of the micro-batch
    fwd, bwd = f * reps * dp, b * reps * dp
    opt = optimizer_work(ev.setup.optimizer, params, 1, style=device_traits(r.device).optimizer_kernels).flops * dp
    return {"forward": fwd, "backward": bwd, "optimizer": opt, "total": fwd + bwd + opt}


def totals(ev: Evaluation) -> dict[str, Any]:
    """The headline numbers of an evaluated iteration: breakdown (BREAKDOWN_PARTS), time, global batch,
    throughput, FLOPs, achieved and peak FLOP/s, utilisation. Shared by Predictions and sweep rows."""
    it, r, s = ev.it, ev.ranks, ev.setup
    p = it.parts
    bd = dict.fromkeys(BREAKDOWN_PARTS, 0.0)
    for k in ("compute", "memory", "overhead", "recompute", "bubble", "straggler", "host_to_device", "io", "offload"):
        bd[k] = p[k]
    bd["communication"] = p["tensor_comm"] + p["pipeline_comm"] + p["data_comm"] + p["context_comm"] + p["expert_comm"]
    total = it.total_s
    if not math.isfinite(total) or total <= 0:
        raise InputError(f"the predicted iteration time is {total!r} s for {ev.graph.name}: the network or "
                         f"hardware figures give no finite, positive work (check layer FLOPs/bytes and peaks)")
    reps = s.grad_accumulation * ev.plan.m
    global_batch = ev.replica_batch * s.grad_accumulation * ev.plan.dp
    fl = _flops(ev, reps)
    peak = ev.system.device.peak(r.dtype) * ev.plan.devices
    achieved = fl["total"] / total
    return {"breakdown": bd, "total": total, "reps": reps, "global_batch": global_batch,
            "throughput": global_batch / total, "flops": fl, "achieved": achieved, "peak": peak,
            "utilization": achieved / peak if peak else 0.0}


def summary_row(ev: Evaluation) -> dict[str, Any]:
    """The result columns of a sweep row (perfmodel.sweeps.RESULT_COLUMNS' model part) without a Prediction."""
    t = totals(ev)
    bd, m = t["breakdown"], ev.memory
    row = {"iteration_time_s": t["total"], "throughput": t["throughput"], "utilization": t["utilization"],
           "achieved_flops": t["achieved"]}
    for k in BREAKDOWN_PARTS:
        row[f"{k}_s"] = bd[k]
    row.update(bottleneck_part=max(bd, key=lambda k: bd[k]), memory_total_bytes=m.total_bytes,
               memory_capacity_bytes=m.capacity_bytes, fits=m.fits, max_batch=m.max_batch,
               global_batch=t["global_batch"], devices=ev.plan.devices, threads=ev.ranks.threads)
    return row


def prediction_from_evaluation(ev: Evaluation, *, layers: bool = True, single: bool = False) -> Prediction:
    """The Prediction of an evaluated iteration; `single`: a lone device with no parallel options (no parallel dict)."""
    it, stg, r, s = ev.it, ev.staged, ev.ranks, ev.setup
    t = totals(ev)
    bd, total, reps, global_batch, throughput = t["breakdown"], t["total"], t["reps"], t["global_batch"], \
        t["throughput"]
    fl, achieved, peak = t["flops"], t["achieved"], t["peak"]
    dev = ev.system.device
    n_dev = ev.plan.devices
    rows = _rows(ev, layers)
    crit = it.crit
    a, e = stg.ranges[crit]
    tm = r.st["time"]
    stages = {"forward": float(tm[a:e, 0].sum()) * reps + r.cast.time_s * stg.cast_share[crit] * reps,
              "backward_data": float(tm[a:e, 1].sum()) * reps, "backward_weight": float(tm[a:e, 2].sum()) * reps,
              "optimizer": ev.synced.opt[crit].time_s}
    assum = assumptions(r.device, r.rates, r.threads)
    if r.heap_s is not None and r.heap_s.any():  # part of the stage times (engine.heap), named for the reader
        assum["heap_refault_s"] = float(r.heap_s[a:e].sum()) * reps
    par = None if single else _parallel_dict(ev, bd, global_batch, throughput, total, assum)
    return Prediction.model_construct(
        network=ev.graph.name, hardware=ev.system.name if not single else dev.name, device_type=dev.type,
        batch=global_batch, dtype=r.dtype, threads=r.threads, optimizer=s.optimizer, devices=n_dev,
        iteration_time_s=total, throughput_samples_per_s=throughput, breakdown=bd, stages=stages,
        hidden={} if single else {"communication": it.hidden_comm_s, "host_to_device": it.flow.hidden_host_to_device_s,
                                  "io": it.flow.hidden_io_s},
        flops=fl, achieved_flops=achieved, peak_flops=peak, utilization=achieved / peak if peak else 0.0,
        bottleneck=bottleneck_text(bd, rows, total), memory=ev.memory, layers=rows if layers else (),
        assumptions=assum, parallel=par, warnings=ev.warnings,
    )


def _parallel_dict(ev: Evaluation, bd, global_batch: int, throughput: float, total: float,
                   assum: dict[str, Any]) -> dict[str, Any]:
    """The `parallel` section of a Prediction (and the multi-device assumptions, added to `assum`)."""
    it, stg, s, pl, plan, system = ev.it, ev.staged, ev.setup, ev.placement, ev.plan, ev.system
    df, sync = it.flow, ev.sync
    n_dev = plan.devices
    single_t = single_device_time(ev, ev.replica_batch if s.scaling == "weak" else s.batch_or_default)
    if s.scaling == "weak":
        ideal = n_dev * ev.replica_batch / single_t
        eff = throughput / ideal if ideal > 0 else 0.0
    else:
        eff = (single_t / total) / n_dev if total > 0 else 0.0
    k_acc = s.grad_accumulation
    ar_info = ev.gsync.info
    algo = s.allreduce if sync == "sync" else ("ps" if sync == "async" else f"{ar_info['algorithm']} in node + ps")
    copy = ev.synced.copy[it.s_star]
    par: dict[str, Any] = {
        "plan": {"dp": plan.dp, "tp": plan.tp, "pp": plan.pp, "cp": plan.cp, "microbatches": plan.m,
                 "schedule": plan.schedule, "grad_accumulation": k_acc},
        "setup": {k: getattr(s, k) for k in LARGE_MODEL_FIELDS},
        "context_comm_s": it.parts["context_comm"], "offload_s": it.parts["offload"],
        "context_tier": pl.cp_tier.name if pl.cp_tier is not None else None,
        "sharding": ev.large.get("sharding"),
        "expert_comm_s": it.parts["expert_comm"], "experts": ev.large.get("experts"),
        "devices": n_dev, "nodes": pl.nodes, "devices_per_node": pl.devices_per_node,
        "per_device_batch": ev.replica_batch, "microbatch": ev.microbatch, "global_batch": global_batch,
        "scaling": s.scaling, "sync": sync, "algorithm": algo, "overlap": s.overlap,
        "overlap_used": it.overlap,
        "exposed_communication_s": bd["communication"], "hidden_communication_s": it.hidden_comm_s,
        "gradient_sync_s": it.comm_s + it.async_info.get("pull_s", 0.0),
        "exposed_gradient_sync_s": it.parts["data_comm"], "tensor_parallel_comm_s": it.tp_comm_s,
        "pipeline_transfer_s": it.parts["pipeline_comm"], "recompute_s": it.parts["recompute"],
        "recompute": s.recompute, "zero": s.zero,
        "bubble_s": bd["bubble"], "bubble_fraction": it.timing.bubble_fraction,
        "straggler_s": bd["straggler"], "straggler_cv": s.straggler_cv,
        "expected_max_normal": expected_max_normal(n_dev if sync == "sync" else max(1, pl.dp_ranks_per_node)),
        "io_s": df.io_s, "exposed_io_s": df.exposed_io_s,
        "host_to_device_s": df.host_to_device_s, "exposed_host_to_device_s": df.exposed_host_to_device_s,
        "dataset_in_ram_fraction": df.ram_hit_fraction, "storage": df.storage, "prefetch": s.prefetch,
        "gradient_bytes": stg.ranks.total_params * GRAD_BYTES, "bucket_copy_s": copy.time_s,
        "buckets": len(ev.synced.sched[it.s_star].buckets), "bucket_bytes": s.bucket_bytes or DDP_BUCKET_BYTES,
        "stages": [{"layers": [ev.graph.layers[x].name for x in (ra, re_ - 1)], "count": re_ - ra,
                    "forward_s": stg.F[i], "backward_s": stg.B[i], "params": stg.st_params[i]}
                   for i, (ra, re_) in enumerate(stg.ranges)] if plan.pp > 1 else None,
        "tiers": {"tensor": pl.tp_tier.name if plan.tp > 1 else None,
                  "pipeline": [t.name for t in pl.pp_tiers] if plan.pp > 1 else None, "data": ar_info},
        "single_device_time_s": single_t, "scaling_efficiency": eff, "staleness": it.staleness,
    }
    if it.async_info:
        par["async"] = {**it.async_info, "ps_colocated": s.ps_colocated,
                        "ps_update_bytes_factor": PS_UPDATE_BYTES_FACTOR}
    assum.update({
        "ddp_bucket_bytes": s.bucket_bytes or DDP_BUCKET_BYTES, "ddp_first_bucket_bytes": DDP_FIRST_BUCKET_BYTES,
        "ddp_bucket_copy_passes": DDP_BUCKET_COPY_PASSES, "gradient_bytes_per_param": GRAD_BYTES,
        "host_ram_cache_fraction": HOST_RAM_CACHE_FRACTION, "io_queue_depth": IO_QUEUE_DEPTH,
        "ps_update_bytes_factor": PS_UPDATE_BYTES_FACTOR,
        "fabric": f"{system.fabric_type}, {system.fabric_bandwidth_Bps / 1e9:.1f} GB/s per device, "
                  f"{system.fabric_latency_s * 1e6:.1f} us",
        "network": (f"{system.nics} x {system.network.name}, {pl.net_bandwidth_Bps / 1e9:.1f} GB/s per node, "
                    f"{system.network_latency_s * 1e6:.1f} us") if pl.nodes > 1 else None,
        "storage_bytes_per_sample": df.bytes_per_sample,
        "device_input_bytes_per_sample": input_bytes_per_sample(ev.graph, ev.ranks.dtype),
        "cpu_process_share": ev.cpu_share,
        "rank_order": "tensor innermost, then pipeline stage, then data-parallel replica; nodes filled in order",
    })
    return par


__all__ = ["PART_WORDS", "assumptions", "bottleneck_text", "layer_rows", "prediction_from_evaluation",
           "single_device_time"]
