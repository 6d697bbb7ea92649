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


def _bools(value: str, flag: str) -> list[bool]:
    """A comma-separated list of true/false (also on/off, yes/no, 1/0)."""
    from ..errors import InputError

    words = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}
    out = []
    for v in _csv(value) or []:
        if v.lower() not in words:
            raise InputError(f"{flag}: expected true or false (comma-separated), got {v!r}")
        out.append(words[v.lower()])
    return out


SHORT = {"compute": "comp", "memory": "mem", "overhead": "ovh", "recompute": "recomp", "tensor_comm": "tp-comm",
         "pipeline_comm": "pp-comm", "data_comm": "dp-comm", "bubble": "bubble", "straggler": "strag",
         "host_to_device": "h2d", "io": "io", "context_comm": "cp-comm", "offload": "offload",
         "expert_comm": "ep-comm"}


def plan_text(res, show: int | None = None) -> str:
    """Human summary of a PlanResult."""
    from ..planning.search import PLAN_PARTS
    from ..units import fmt_bytes, fmt_seconds

    lines = [
        f"{res.network} on {res.hardware}, {res.devices} devices, global batch {res.global_batch}, "
        f"optimizer {res.optimizer}, all-reduce {res.allreduce}, objective {res.objective}",
        f"searched {res.candidates} plans in {res.search_time_s:.2f} s: {res.pruned_static_memory} pruned by "
        f"weights/optimizer memory, {res.dominated} by an as fast twin with less memory, {res.bounded} by a time "
        f"bound, {res.skipped} not modelled, {res.dropped_memory} by activation memory, {res.fitting} fit",
        "",
    ]
    if not res.plans:  # the command reports res.why as its error
        return "\n".join(lines).rstrip()
    priced = res.price_per_device_hour is not None
    head = ["#", "dev", "dp", "tp", "pp", "mb x n", "dtype", "recomp", "sched", "options", "time", "MFU", "mem/dev"]
    if priced:
        head.append("$/iter")
    rows = []
    for p in res.plans[:show]:
        r = [p.rank, p.devices, p.dp, p.tp, p.pp, f"{p.microbatch} x {p.microbatches}", p.dtype, p.recompute,
             p.schedule or "-", " ".join(f"{k}={v}" for k, v in p.options().items()) or "-",
             fmt_seconds(p.iteration_time_s), f"{p.mfu:.1%}", fmt_bytes(p.memory_bytes)]
        if priced:
            r.append(f"{p.cost_per_iteration:.4g}")
        rows.append(r)
    lines.append(table(head, rows, "rrrrrrllllrrr" + ("r" if priced else "")))
    lines += ["", "breakdown per plan (parts add up to the iteration time):"]
    used = [k for k in PLAN_PARTS if any(p.breakdown.get(k, 0.0) > 0 for p in res.plans[:show])]
    brow = [[p.rank] + [fmt_seconds(p.breakdown.get(k, 0.0)) for k in used] for p in res.plans[:show]]
    lines.append(table(["#"] + [SHORT.get(k, k) for k in used], brow, "r" * (len(used) + 1)))
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
    lines += [f"not searched: {w}" for w in res.not_modelled]
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
    recompute: str = typer.Option("none,selective,full", "--recompute", help="activation recomputation to try: none,selective,full"),
    schedule: str = typer.Option("1f1b,gpipe", "--schedule", help="pipeline schedules to try: 1f1b,gpipe"),
    tp: Optional[str] = typer.Option(None, "--tp", help="only these tensor-parallel degrees, e.g. 4,8"),
    pp: Optional[str] = typer.Option(None, "--pp", help="only these pipeline depths, e.g. 8,16"),
    microbatch: Optional[str] = typer.Option(None, "--microbatch", help="only these micro-batch sizes, e.g. 1,2"),
    allreduce: str = typer.Option("ring", "--allreduce", help=", ".join(a for a in allreduce_choices() if a != "ps")),
    zero: str = typer.Option("0,1,2,3", "--zero", help="ZeRO stages to try (1: optimizer state, 2: + gradients, 3: + parameters sharded over dp)"),
    sharding: str = typer.Option("none,full,hybrid", "--sharding", help="FSDP sharding to try: none (ZeRO stages above), full (= ZeRO-3), hybrid (ZeRO-3 inside a node)"),
    sequence_parallel: str = typer.Option("false,true", "--sequence-parallel", help="Megatron sequence parallelism to try (with tp > 1): false,true"),
    context_parallel: str = typer.Option("1", "--context-parallel", help="context-parallel degrees to try"),
    virtual_stages: Optional[str] = typer.Option(None, "--virtual-stages", help="interleaved 1F1B chunks per stage to try (default: divisors of the blocks per stage)"),
    offload_activations: str = typer.Option("false,true", "--offload-activations", help="activation offload to host memory to try: false,true"),
    expert_parallel: str = typer.Option("1", "--expert-parallel", help="expert-parallel degrees to try"),
    tp_overlap: str = typer.Option("false,true", "--tp-overlap", help="tensor-parallel communication overlap to try (only with tp > 1 and sequence parallelism): false,true"),
    zero1: bool = typer.Option(False, "--zero1", hidden=True, help="deprecated: --zero 1"),
    price: Optional[float] = typer.Option(None, "--price-per-hour", help="USD per device-hour"),
    device: Optional[str] = typer.Option(None, "--device", help="replace the node's device, e.g. a100-sxm4-80gb"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Search data/tensor/pipeline plans, micro-batching, dtype, recomputation, ZeRO / FSDP sharding, sequence
    parallelism, interleaved stages and the other large-model options; print the best plans."""
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
        pp=_csv(pp, int), microbatch=_csv(microbatch, int), allreduce=allreduce,
        zero=[1] if zero1 else _csv(zero, int), sharding=_csv(sharding), sequence_parallel=_bools(sequence_parallel,
                                                                                                 "--sequence-parallel"),
        context_parallel=_csv(context_parallel, int), virtual_stages=_csv(virtual_stages, int),
        offload_activations=_bools(offload_activations, "--offload-activations"),
        expert_parallel=_csv(expert_parallel, int), price_per_hour=price, device=device,
        tp_overlap=_bools(tp_overlap, "--tp-overlap"),
    )
    if json_out:
        typer.echo(dumps(res.to_dict()))
    else:
        typer.echo(plan_text(res))
    if not res.plans:  # a search that finds nothing is an answer the caller must not mistake for success
        from ..errors import InputError

        raise InputError(f"no plan found: {res.why}")
