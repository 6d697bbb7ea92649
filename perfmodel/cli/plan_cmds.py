"""`perfmodel plan`: search parallel plans and print the best ones with their breakdowns."""

from __future__ import annotations

from typing import Optional

import typer

from ..parallel.collectives import allreduce_choices
from .app import app
from .render import dumps, table


def csv_list(value: Optional[str], cast=str, flag: str = "") -> Optional[list]:
    """A comma-separated list, each part cast (None stays None); an unreadable part names `flag`."""
    if value is None:
        return None
    from ..errors import InputError

    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag + ': ' if flag else ''}expected a comma-separated list, got {value!r}") from None


def bool_list(value: Optional[str], flag: str) -> Optional[list[bool]]:
    """A comma-separated list of true/false (also on/off, yes/no, 1/0); None stays None."""
    from ..errors import InputError

    if value is None:
        return None
    words = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}
    out = []
    for v in csv_list(value) or []:
        if v.lower() not in words:
            raise InputError(f"{flag}: expected true or false (comma-separated), got {v!r}")
        out.append(words[v.lower()])
    return out


# The large-model list options of `plan` (values to search) and `sweep` (values to cross), defined once:
# TrainingSetup field -> (flag, value type: int, str or bool, help).
LARGE_OPTIONS: dict[str, tuple[str, type, str]] = {
    "zero": ("--zero", int, "ZeRO stages, e.g. 0,1,2,3 (1: optimizer state, 2: + gradients, 3: + parameters "
             "sharded over dp)"),
    "sharding": ("--sharding", str, "FSDP sharding, e.g. none,full,hybrid: none (ZeRO stages above), full "
                 "(= ZeRO-3), hybrid (ZeRO-3 inside a node)"),
    "sequence_parallel": ("--sequence-parallel", bool, "Megatron sequence parallelism (with tp > 1): false,true"),
    "context_parallel": ("--context-parallel", int, "context-parallel (ring attention) degrees, e.g. 1,2"),
    "virtual_stages": ("--virtual-stages", int, "interleaved 1F1B chunks per stage (pp > 1), e.g. 1,2 (plan "
                       "default: divisors of the blocks per stage)"),
    "recompute": ("--recompute", str, "activation recomputation: none,selective,full"),
    "offload_activations": ("--offload-activations", bool, "activation offload to host memory: false,true"),
    "expert_parallel": ("--expert-parallel", int, "expert-parallel degrees, e.g. 1,8"),
    "tp_overlap": ("--tp-overlap", bool, "tensor-parallel communication overlap (tp > 1 with sequence "
                   "parallelism): false,true"),
}


def large_option(field: str, default: Optional[str] = None):
    """The typer option of one LARGE_OPTIONS field (comma-separated values) with this command's default."""
    flag, _, text = LARGE_OPTIONS[field]
    return typer.Option(default, flag, help=text)


def large_values(given: dict[str, Optional[str]]) -> dict[str, list]:
    """{field: comma text or None} -> {field: list of typed values} for the fields given (flag named on errors)."""
    out = {}
    for field, text in given.items():
        if text is None:
            continue
        flag, kind, _ = LARGE_OPTIONS[field]
        out[field] = bool_list(text, flag) if kind is bool else csv_list(text, kind, flag)
        choices = _setup_choices(field)
        bad = [v for v in out[field] if choices and v not in choices]
        if bad:
            from ..errors import InputError

            raise InputError(f"{flag}: expected {', '.join(choices)} (comma-separated), got {bad[0]!r}")
    return out


def _setup_choices(field: str) -> tuple:
    """The values a TrainingSetup field accepts when it is a fixed set (Literal), else ()."""
    import typing

    from ..prediction.setup import TrainingSetup

    return typing.get_args(TrainingSetup.model_fields[field].annotation)


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
    recompute: str = large_option("recompute", "none,selective,full"),
    schedule: str = typer.Option("1f1b,gpipe", "--schedule", help="pipeline schedules to try: 1f1b,gpipe"),
    tp: Optional[str] = typer.Option(None, "--tp", help="only these tensor-parallel degrees, e.g. 4,8"),
    pp: Optional[str] = typer.Option(None, "--pp", help="only these pipeline depths, e.g. 8,16"),
    microbatch: Optional[str] = typer.Option(None, "--microbatch", help="only these micro-batch sizes, e.g. 1,2"),
    allreduce: str = typer.Option("ring", "--allreduce", help=", ".join(a for a in allreduce_choices() if a != "ps")),
    zero: str = large_option("zero", "0,1,2,3"),
    sharding: str = large_option("sharding", "none,full,hybrid"),
    sequence_parallel: str = large_option("sequence_parallel", "false,true"),
    context_parallel: str = large_option("context_parallel", "1"),
    virtual_stages: Optional[str] = large_option("virtual_stages"),
    offload_activations: str = large_option("offload_activations", "false,true"),
    expert_parallel: str = large_option("expert_parallel", "1"),
    tp_overlap: str = large_option("tp_overlap", "false,true"),
    zero1: bool = typer.Option(False, "--zero1", hidden=True, help="deprecated: --zero 1"),
    price: Optional[float] = typer.Option(None, "--price-per-hour", help="USD per device-hour"),
    device: Optional[str] = typer.Option(None, "--device", help="replace the node's device, e.g. a100-sxm4-80gb"),
    memory_format: str = typer.Option("contiguous", "--memory-format", help="activation layout of every plan: contiguous (NCHW) or channels_last"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Search data/tensor/pipeline plans, micro-batching, dtype, recomputation, ZeRO / FSDP sharding, sequence
    parallelism, interleaved stages and the other large-model options; print the best plans."""
    from ..planning.search import plan_search
    from .core_cmds import parse_size

    if dtype and "int8" in csv_list(dtype):
        from ..engine import memo
        from ..prediction.setup import check_training_options

        check_training_options(memo.hardware(device or hardware), dtypes=csv_list(dtype))
    large = large_values(dict(zero=zero, sharding=sharding, sequence_parallel=sequence_parallel,
                              context_parallel=context_parallel, virtual_stages=virtual_stages, recompute=recompute,
                              offload_activations=offload_activations, expert_parallel=expert_parallel,
                              tp_overlap=tp_overlap))
    if zero1:
        large["zero"] = [1]
    res = plan_search(
        network, hardware, devices=devices, global_batch=global_batch, objective=objective,
        memory_limit=parse_size(memory_limit, "--memory-limit"), top=top, optimizer=optimizer,
        dtypes=csv_list(dtype), schedules=csv_list(schedule), tp=csv_list(tp, int, "--tp"),
        pp=csv_list(pp, int, "--pp"), microbatch=csv_list(microbatch, int, "--microbatch"), allreduce=allreduce,
        price_per_hour=price, device=device, memory_format=memory_format, **large)
    if json_out:
        typer.echo(dumps(res.to_dict()))
    else:
        typer.echo(plan_text(res))
    if not res.plans:  # a search that finds nothing is an answer the caller must not mistake for success
        from ..errors import InputError

        raise InputError(f"no plan found: {res.why}")
