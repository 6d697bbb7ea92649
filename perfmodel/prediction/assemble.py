"""Assembly of a Prediction: per-layer rows, breakdown, bottleneck sentence, assumptions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..graph.io import load_network
from ..graph.layer_graph import LayerGraph
from ..hardware.loader import load_hardware
from ..hardware.schema import Device
from ..memory import memory_footprint
from ..ops import STAGES
from ..result import BREAKDOWN_PARTS, LayerRow, Prediction
from ..step import StepProfile, step_profile



def layer_rows(prof: StepProfile, only: list[int] | None = None) -> tuple[LayerRow, ...]:
    """Per-layer rows of a step profile (all layers, or the indices in `only`)."""
    rows = []
    idx = range(len(prof.costs)) if only is None else only
    for i in idx:
        layer, c, t = prof.graph.layers[i], prof.costs[i], prof.times[i]
        ts = {s: t.stage(s).time_s for s in STAGES}
        longest = max(STAGES, key=lambda s: ts[s])
        st = t.stage(longest)
        roof = max(st.compute_s, st.memory_s)
        bound = "overhead" if st.overhead_s > roof else ("compute" if st.compute_s >= st.memory_s else "memory")
        if ts[longest] == 0:
            bound = "none"
        rows.append(LayerRow.model_construct(
            name=layer.name, op=layer.op, output_shape=layer.output_shape, params=c.params,
            flops={s: c.flops(s) for s in STAGES}, bytes={s: c.bytes(s) for s in STAGES},
            time_s={**ts, "total": t.total_s}, kernels=sum(c.kernels(s) for s in STAGES), bound=bound,
            saved_bytes=c.saved_bytes,
        ))
    return tuple(rows)


def single_breakdown(prof: StepProfile) -> dict[str, float]:
    """Split a single-device step into compute-bound, memory-bound and exposed-overhead time (sums to the total)."""
    comp = mem = over = 0.0
    for t in prof.times:
        for s in STAGES:
            st = t.stage(s)
            comp += st.roof_compute_s
            mem += st.roof_memory_s
            over += st.overhead_s
    for st in (prof.optimizer_time, prof.cast_time):
        comp += st.roof_compute_s
        mem += st.roof_memory_s
        over += st.overhead_s
    out = {k: 0.0 for k in BREAKDOWN_PARTS}
    out.update(compute=comp, memory=mem, overhead=over)
    return out


def bottleneck_text(breakdown: dict[str, float], rows: tuple[LayerRow, ...], total: float) -> str:
    """One sentence naming the dominant part and the layers that cost most."""
    part = max(breakdown, key=lambda k: breakdown[k])
    share = breakdown[part] / total if total > 0 else 0.0
    what = {
        "compute": "compute-bound kernels (FLOP/s limited)",
        "memory": "memory-bound kernels (bandwidth limited)",
        "overhead": "per-kernel launch/dispatch overhead (kernels too small)",
        "communication": "exposed gradient/activation communication",
        "bubble": "pipeline bubbles",
        "straggler": "waiting for stragglers",
        "host_to_device": "host-to-device input transfer",
        "io": "reading the dataset from storage",
    }[part]
    top = sorted(rows, key=lambda r: r.time_s["total"], reverse=True)[:3]
    tops = ", ".join(f"{r.name} ({r.op}, {r.time_s['total'] / total:.0%})" for r in top if total > 0)
    return f"{share:.0%} of the step is {what}" + (f"; costliest layers: {tops}" if tops else "")


def prediction_from_profile(prof: StepProfile, *, layers: bool = True, batch_label: int | None = None) -> Prediction:
    """Assemble the Prediction of a single-device step."""
    total = prof.total_s
    if layers:
        rows = layer_rows(prof)
    else:  # only the costliest layers, for the bottleneck sentence
        top = sorted(range(len(prof.times)), key=lambda i: prof.times[i].total_s, reverse=True)[:3]
        rows = layer_rows(prof, top)
    bd = single_breakdown(prof)
    fwd_flops = sum(c.flops("forward") for c in prof.costs)
    bwd_flops = sum(c.flops("backward_data") + c.flops("backward_weight") for c in prof.costs)
    opt_flops = prof.optimizer_work.flops
    all_flops = fwd_flops + bwd_flops + opt_flops
    peak = prof.device.peak(prof.dtype)
    achieved = all_flops / total if total > 0 else 0.0
    mem = memory_footprint(prof.graph, prof.device, prof.batch, prof.dtype, prof.optimizer, costs=prof.costs)
    warnings = []
    if not mem.fits:
        warnings.append(
            f"does not fit: needs {mem.total_bytes / 1e9:.2f} GB of {mem.capacity_bytes / 1e9:.2f} GB; "
            f"largest batch that fits: {mem.max_batch}"
        )
    if prof.device.is_cpu and prof.threads and prof.threads > (prof.device.cores or 1):
        warnings.append(
            f"{prof.threads} threads on {prof.device.cores} physical cores: hyper-threads add no speed "
            f"(penalty {prof.device.thread_scaling.hyperthread_penalty} per extra thread per core)"
        )
    stages = {s: sum(t.stage(s).time_s for t in prof.times) for s in STAGES}
    stages["forward"] += prof.cast_time.time_s
    stages["optimizer"] = prof.optimizer_time.time_s
    b = batch_label or prof.batch
    return Prediction(
        network=prof.graph.name, hardware=prof.device.name, device_type=prof.device.type, batch=b,
        dtype=prof.dtype, threads=prof.threads if prof.device.is_cpu else None, optimizer=prof.optimizer,
        iteration_time_s=total, throughput_samples_per_s=b / total if total > 0 else 0.0,
        breakdown=bd, stages=stages,
        flops={"forward": fwd_flops, "backward": bwd_flops, "optimizer": opt_flops, "total": all_flops},
        achieved_flops=achieved, peak_flops=peak, utilization=achieved / peak if peak else 0.0,
        bottleneck=bottleneck_text(bd, rows, total), memory=mem, layers=rows if layers else (),
        assumptions=assumptions(prof), warnings=tuple(warnings),
    )


def assumptions(prof: StepProfile) -> dict[str, Any]:
    """The named parameters this prediction used, with their values."""
    d = prof.device
    a: dict[str, Any] = {
        "efficiency_source": d.efficiency.source,
        "efficiency": d.efficiency.model_dump(mode="json", exclude={"source"}, exclude_none=True),
        "kernel_overhead_s": d.kernel_overhead_s,
        "overhead_overlaps_execution": prof.rates.overhead_overlaps,
        "peak_flops": prof.rates.matrix_flops,
        "memory_bandwidth_Bps": prof.rates.bandwidth_Bps,
        "master_weights": "fp32 parameters, gradients and optimizer state",
        "profile_source": d.source,
    }
    if d.is_cpu:
        a["threads"] = prof.threads or d.cores
        a["thread_speedup"] = prof.rates.thread_factor
        a["thread_scaling"] = d.thread_scaling.model_dump(mode="json")
    return a
