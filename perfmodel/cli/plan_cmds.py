"""`perfmodel plan`: search parallel plans and print the best ones with their breakdowns."""

from __future__ import annotations

from typing import Optional

import typer

from ..parallel.collectives import allreduce_choices
from .app import app
from .render import dumps, table


def _csv(value: Optional[str], cast=str) -> Optional[list]:
    if value is None:
        return None
    from ..errors import InputError

    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"expected a comma-separated list, got {value!r}") from None


SHORT = {"compute": "comp", "memory": "mem", "overhead": "ovh", "recompute": "recomp", "tensor_comm": "tp-comm",
         "pipeline_comm": "pp-comm", "data_comm": "dp-comm", "bubble": "bubble", "straggler": "strag",
         "host_to_device": "h2d", "io": "io"}


def plan_text(res, show: int | None = None) -> str:
    """Human summary of a PlanResult."""
    from ..planning.search import PLAN_PARTS
    from ..units import fmt_bytes, fmt_seconds

    lines = [
        f"{res.network} on {res.hardware}, {res.devices} devices, global batch {res.global_batch}, "
        f"optimizer {res.optimizer}, all-reduce {res.allreduce}, objective {res.objective}",
        f"searched {res.candidates} plans in {res.search_time_s:.2f} s: {res.pruned_static_memory} pruned by "
        f"weights/optimizer memory, {res.dropped_memory} by activation memory, {res.fitting} fit",
        "",
    ]
    if not res.plans:  # the command reports res.why as its error
        return "\n".join(lines).rstrip()
    priced = res.price_per_device_hour is not None
    head = ["#", "dev", "dp", "tp", "pp", "mb x n", "dtype", "recomp", "sched", "time", "MFU", "mem/dev"]
    if priced:
        head.append("$/iter")
    rows = []
    for p in res.plans[:show]:
        r = [p.rank, p.devices, p.dp, p.tp, p.pp, f"{p.microbatch} x {p.microbatches}", p.dtype, p.recompute,
             p.schedule or "-", fmt_seconds(p.iteration_time_s), f"{p.mfu:.1%}", fmt_bytes(p.memory_bytes)]
        if priced:
            r.append(f"{p.cost_per_iteration:.4g}")
        rows.append(r)
    lines.append(table(head, rows, "rrrrrrlllrrr" + ("r" if priced else "")))
    lines += ["", "breakdown per plan (parts add up to the iteration time):"]
    used = [k for k in PLAN_PARTS if any(p.breakdown.get(k, 0.0) > 0 for p in res.plans[:show])]
    brow = [[p.rank] + [fmt_seconds(p.breakdown.get(k, 0.0)) for k in used] for p in res.plans[:show]]
    lines.append(table(["#"] + [SHORT[k] for k in used], brow, "r" * (len(used) + 1)))
    best = res.plans[0]
    lines += [
        "",
        f"best: {best.label()}",
        f"  {fmt_seconds(best.iteration_time_s)} per iteration, {best.throughput_samples_per_s:,.1f} samples/s, "
        f"{best.tflops_per_device:.1f} TFLOP/s per device, MFU {best.mfu:.1%}"
        + (f" (6 x params x tokens: {best.mfu_6nd:.1%})" if best.mfu_6nd is not None else ""),
        "  memory per device: " + ", ".join(f"{k.replace('_bytes', '')} {fmt_bytes(v)}" for k, v in best.memory.items())
        + f" = {fmt_bytes(best.memory_bytes)} of {fmt_bytes(best.memory_limit_bytes)}",
        "",
        res.why,
    ]
    if priced:
        lines.append(f"price: ${res.price_per_device_hour:g} per device-hour ({res.price_source})")
    return "\n".join(lines)


@app.command()
def plan(
    network: str = typer.Argument(..., help="built-in network name or a YAML/JSON file"),
    hardware: str = typer.Option(..., "--hardware", "-H", help="cluster, node or device profile (name or file)"),
    devices: int = typer.Option(..., "--devices", "-n", help="number of devices to use"),
    global_batch: Optional[int] = typer.Option(None, "--global-batch", "-B", help="samples per iteration (default 32 x devices)"),
    objective: str = typer.Option("time", "--objective", help="time, or cost (may then use fewer devices)"),
    memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="memory per device a plan may use, e.g. 80GB (default: the device's)"),
    top: int = typer.Option(5, "--top", help="plans to show"),
    optimizer: str = typer.Option("adam", "--optimizer", help="sgd, momentum, adam or adamw"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="dtypes to try, e.g. bf16,tf32 (default: best low and full precision)"),
    recompute: str = typer.Option("none,full", "--recompute", help="activation recomputation to try: none,full"),
    schedule: str = typer.Option("1f1b,gpipe", "--schedule", help="pipeline schedules to try: 1f1b,gpipe"),
    tp: Optional[str] = typer.Option(None, "--tp", help="only these tensor-parallel degrees, e.g. 4,8"),
    pp: Optional[str] = typer.Option(None, "--pp", help="only these pipeline depths, e.g. 8,16"),
    microbatch: Optional[str] = typer.Option(None, "--microbatch", help="only these micro-batch sizes, e.g. 1,2"),
    allreduce: str = typer.Option("ring", "--allreduce", help=", ".join(a for a in allreduce_choices() if a != "ps")),
    zero1: bool = typer.Option(False, "--zero1", help="shard optimizer state over data-parallel replicas (memory only)"),
    price: Optional[float] = typer.Option(None, "--price-per-hour", help="USD per device-hour"),
    device: Optional[str] = typer.Option(None, "--device", help="replace the node's device, e.g. a100-sxm4-80gb"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Search data/tensor/pipeline plans, micro-batching, recomputation and dtype; print the best plans."""
    from ..planning.search import plan_search
    from .core_cmds import parse_size

    if dtype and "int8" in _csv(dtype):
        from ..engine import memo
        from ..prediction.setup import check_training_options

        check_training_options(memo.hardware(device or hardware), dtypes=_csv(dtype))
    res = plan_search(
        network, hardware, devices=devices, global_batch=global_batch, objective=objective,
        memory_limit=parse_size(memory_limit, "--memory-limit"), top=top, optimizer=optimizer,
        dtypes=_csv(dtype), recompute=_csv(recompute), schedules=_csv(schedule), tp=_csv(tp, int),
        pp=_csv(pp, int), microbatch=_csv(microbatch, int), allreduce=allreduce, zero=int(zero1),
        price_per_hour=price, device=device,
    )
    if json_out:
        typer.echo(dumps(res.to_dict()))
    else:
        typer.echo(plan_text(res))
    if not res.plans:  # a search that finds nothing is an answer the caller must not mistake for success
        from ..errors import InputError

        raise InputError(f"no plan found: {res.why}")
