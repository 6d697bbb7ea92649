"""Capacity-planning commands: sweep, fit, compare, serve, report (plotly only when a plot is asked for)."""

from __future__ import annotations

import math
from typing import Optional

import typer

from .app import app
from .plan_cmds import large_option, large_values
from .render import dumps, table

def _check_sweep_training(hws: list, dtypes: list, threads: Optional[str]) -> None:
    """int8 is not a training dtype; --threads needs at least one CPU among the hardware (exit 2 otherwise)."""
    from ..engine import memo
    from ..prediction.setup import check_training_options

    loaded = [memo.hardware(h) for h in hws]
    for hw in loaded:
        check_training_options(hw, dtypes=dtypes)
    if threads and loaded:
        errors = []
        for hw in loaded:
            try:
                check_training_options(hw, threads=1)
            except Exception as e:  # noqa: BLE001 - collected, the first one is raised when none uses threads
                errors.append(e)
        if len(errors) == len(loaded):
            raise errors[0]


_HW_HELP = "comma-separated device, node or cluster names (see `perfmodel hardware`) or files"


def _fmt_opt(v, fmt: str = "{:.3g}", none: str = "-") -> str:
    return none if v is None else fmt.format(v)


def _cell(v) -> str:
    """One scenario value as a table cell: a plan as dp=..,tp=..; None as the setup default '-'."""
    if isinstance(v, dict):
        return ",".join(f"{k}={x}" for k, x in v.items() if x is not None)
    return "-" if v is None else str(v)


def _sweep_table(res, top: int | None = None) -> str:
    from ..sweeps import SCENARIO_COLUMNS
    from ..units import fmt_bytes, fmt_seconds

    rows = res.rows
    if top is not None:  # the feasible rows of highest throughput, best first
        rows = sorted(res.ok, key=lambda r: r["throughput"], reverse=True)[:top]
    axes = res.axes
    # axes with several values, and every setup option the sweep was given (plans, ZeRO, ...) even with one
    varying = [k for k, v in axes.items() if (len(v) > 1 or k not in SCENARIO_COLUMNS)
               and k not in ("devices", "batch", "hardware")]
    show_net = len(axes["network"]) > 1
    priced = any(r["cost_per_sample"] is not None for r in rows)
    head = (["network"] if show_net else []) + ["hardware", "devices", "batch"] + [
        k for k in varying if k != "network"] + ["iteration", "samples/s", "efficiency", "bottleneck", "memory/dev"]
    if priced:
        head += ["$/hour", "$/1M samples"]
    head.append("note")
    out = []
    for r in rows:
        line = ([r["network"]] if show_net else []) + [r["hardware"], r["devices"], r["batch"]]
        line += [_cell(r[k]) for k in varying if k != "network"]
        ok = r["iteration_time_s"] is not None
        line += [fmt_seconds(r["iteration_time_s"]) if ok else "-",
                 f"{r['throughput']:,.1f}" if ok else "-",
                 _fmt_opt(r["scaling_efficiency"], "{:.3f}"),
                 r["bottleneck_part"] or "-",
                 fmt_bytes(r["memory_total_bytes"]) if r["memory_total_bytes"] is not None else "-"]
        if priced:
            line += [_fmt_opt(r["cost_per_hour"], "{:.2f}"),
                     _fmt_opt(None if r["cost_per_sample"] is None else r["cost_per_sample"] * 1e6, "{:.2f}")]
        note = r["error"] or ""
        line.append(note if len(note) <= 70 else note[:67] + "...")
        out.append(line)
    n_left = (1 if show_net else 0) + 1
    align = "l" * n_left + "rr" + "l" * (len(varying) - (1 if "network" in varying else 0)) + "rrrlr" + (
        "rr" if priced else "") + "l"
    return table(head, out, align)


@app.command()
def sweep(
    network: str = typer.Argument(..., help="network name(s) or file(s), comma-separated"),
    hardware: str = typer.Option(..., "--hardware", "-H", help=_HW_HELP),
    devices: str = typer.Option("1", "--devices", "-n", help="device counts, e.g. 1,2,4,8 or 1..64 (powers of two)"),
    batch: Optional[str] = typer.Option(None, "--batch", "-b", help="batches per device, e.g. 32,64 (default 32)"),
    dtype: str = typer.Option("fp32", "--dtype", help="dtypes, e.g. fp32,fp16"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="optimizers, e.g. sgd,adam"),
    allreduce: Optional[str] = typer.Option(None, "--allreduce", help="all-reduce algorithms, e.g. ring,tree,hierarchical"),
    sync: Optional[str] = typer.Option(None, "--sync", help="sync modes, e.g. sync,async,mixed"),
    threads: Optional[str] = typer.Option(None, "--threads", help="CPU threads, e.g. 1,2,4"),
    price_per_hour: Optional[str] = typer.Option(None, "--price-per-hour", help="USD per device-hour: 2.5, or NAME=USD,..."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="write the rows as CSV to this file"),
    plot: Optional[str] = typer.Option(None, "--plot", help="write plots (HTML, plotly.js embedded) to this file"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="worker processes (default: one per core for large sweeps)"),
    top: Optional[int] = typer.Option(None, "--top", help="show only the N feasible scenarios of highest throughput"),
    device: Optional[str] = typer.Option(None, "--device", help="replace the nodes' device, e.g. a100-sxm4-80gb"),
    plan: Optional[str] = typer.Option(None, "--plan", help="parallel plans separated by ';', e.g. 'dp=16,tp=8,pp=8,microbatches=48;dp=128,tp=8'"),
    zero: Optional[str] = large_option("zero"),
    sharding: Optional[str] = large_option("sharding"),
    sequence_parallel: Optional[str] = large_option("sequence_parallel"),
    context_parallel: Optional[str] = large_option("context_parallel"),
    virtual_stages: Optional[str] = large_option("virtual_stages"),
    recompute: Optional[str] = large_option("recompute"),
    offload_activations: Optional[str] = large_option("offload_activations"),
    expert_parallel: Optional[str] = large_option("expert_parallel"),
    tp_overlap: Optional[str] = large_option("tp_overlap"),
    scaling: Optional[str] = typer.Option(None, "--scaling", help="weak: --batch per replica; strong: --batch is the global batch"),
    memory_format: Optional[str] = typer.Option(None, "--memory-format", help="activation layouts, e.g. contiguous,channels_last (NCHW / NHWC)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Predict every combination of hardware, device counts, batches, dtypes, plans and large-model options as a
    table (and CSV, plots); a combination the model refuses is a row with the reason."""
    from ..planning import parse_prices
    from ..sweeps import parse_list, sweep as api_sweep
    from .core_cmds import parse_plans

    axes = dict(allreduce=allreduce, sync=sync, scaling=scaling, memory_format=memory_format)
    opts = {k: parse_list(v, option="--" + k.replace("_", "-")) for k, v in axes.items() if v}
    if plan is not None:
        opts["plan"] = parse_plans(plan)
    opts.update(large_values(dict(
        zero=zero, sharding=sharding, sequence_parallel=sequence_parallel, context_parallel=context_parallel,
        virtual_stages=virtual_stages, recompute=recompute, offload_activations=offload_activations,
        expert_parallel=expert_parallel, tp_overlap=tp_overlap)))
    nets = parse_list(network)
    hws, devs, batches = parse_list(hardware, option="--hardware"), parse_list(devices, int, "--devices"), \
        parse_list(batch, int, "--batch")
    dtypes, opts_ = parse_list(dtype, option="--dtype"), parse_list(optimizer, option="--optimizer")
    total_guess = math.prod(len(v) for v in (nets, hws, devs, batches or [0], dtypes, opts_, *opts.values()))
    progress = None if quiet or total_guess < 200 else True
    if top is not None and top < 1:
        from ..errors import InputError

        raise InputError(f"--top must be a positive number of rows, got {top}")
    if device is not None:
        from ..planning.space import hardware_with_device

        hws = [hardware_with_device(h, device) for h in hws]
    _check_sweep_training(hws, dtypes, threads)
    res = api_sweep(nets, hardware=hws, devices=devs, batch=batches, dtype=dtypes, optimizer=opts_,
                    threads=parse_list(threads, int, "--threads") if threads else None,
                    price_per_hour=parse_prices(price_per_hour), progress=progress, workers=jobs, **opts)
    if csv_out:
        res.to_csv(csv_out)
    if plot:
        from ..report.figures import sweep_figures
        from ..report.html import write_figures_html

        write_figures_html(sweep_figures(res), plot, title=f"perfmodel sweep: {', '.join(map(str, nets))}")
    if json_out:
        typer.echo(dumps(res.to_dict()))
        return
    typer.echo(_sweep_table(res, top))
    shown = f"; showing the {min(top, len(res.ok))} of highest throughput" if top is not None else ""
    typer.echo(f"\n{len(res)} scenarios ({len(res.ok)} feasible{shown}) in {res.elapsed_s:.2f} s"
               + (f"; CSV: {csv_out}" if csv_out else "") + (f"; plots: {plot}" if plot else ""))
    for n in res.notes:
        typer.echo(f"note: {n}")


@app.command()
def fit(
    network: str = typer.Argument(..., help="built-in network name or a YAML/JSON file"),
    hardware: str = typer.Option(..., "--hardware", "-H", help="device (or node/cluster: its device) name or file"),
    dtype: str = typer.Option("fp32", "--dtype"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd, momentum, adam or adamw"),
    recompute: bool = typer.Option(False, "--recompute", help="activation recomputation (gradient checkpointing)"),
    rule: str = typer.Option("auto", "--recompute-rule", help="segments to recompute: auto, blocks or sqrt (see docs)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (time only)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """The largest training batch per device that fits, and the memory breakdown at that batch."""
    from ..planning import fit as api_fit
    from ..units import fmt_bytes, fmt_seconds

    r = api_fit(network, hardware, dtype=dtype, optimizer=optimizer, recompute=rule if recompute else None,
                threads=threads)
    if json_out:
        typer.echo(dumps(r.to_dict()))
        return
    m = r.memory
    how = f" with activation recomputation ({r.recompute} rule)" if r.recompute else ""
    if r.batch == 0:
        typer.echo(f"{r.network} does not fit on {r.hardware} ({dtype}, {optimizer}){how} even at batch 1: "
                   f"needs {fmt_bytes(m.total_bytes)} of {fmt_bytes(m.capacity_bytes)}")
        raise typer.Exit(1)
    typer.echo(f"{r.network} on {r.hardware}, {dtype}, optimizer {optimizer}{how}")
    typer.echo(f"largest batch per device that fits: {r.batch}  (batch {r.batch + 1} needs "
               f"{fmt_bytes(r.next_total_bytes)} > {fmt_bytes(m.capacity_bytes)})")
    if r.recompute:
        typer.echo(f"without recomputation: {r.max_batch_without_recompute}")
    typer.echo("")
    rows = [(k.replace("_bytes", ""), fmt_bytes(getattr(m, k)), f"{getattr(m, k) / m.capacity_bytes:.1%}")
            for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "workspace_bytes",
                      "reserved_bytes")]
    rows.append(("total", fmt_bytes(m.total_bytes), f"{m.total_bytes / m.capacity_bytes:.1%}"))
    typer.echo(f"memory at batch {r.batch} (share of {fmt_bytes(m.capacity_bytes)}):")
    typer.echo(table(["kind", "bytes", "share"], rows, "lrr"))
    if r.recompute_detail is not None:
        d = r.recompute_detail
        typer.echo(f"\nactivations: {fmt_bytes(d.activations_bytes)} with recomputation vs "
                   f"{fmt_bytes(d.without_bytes)} without ({d.segments} segments; kept segment inputs "
                   f"{fmt_bytes(d.checkpoint_bytes)}, largest segment {fmt_bytes(d.largest_segment_bytes)} from "
                   f"{d.largest_segment})")
    if r.iteration_time_s:
        extra = (f", of which recomputation {fmt_seconds(r.recompute_time_s)} "
                 f"({r.recompute_time_s / r.iteration_time_s:.0%})") if r.recompute else ""
        typer.echo(f"iteration at batch {r.batch}: {fmt_seconds(r.iteration_time_s)}{extra}; "
                   f"{r.throughput:,.1f} samples/s")


@app.command()
def compare(
    network: str = typer.Argument(..., help="built-in network name or a YAML/JSON file"),
    hardware: str = typer.Option(..., "--hardware", "-H", help=_HW_HELP),
    devices: int = typer.Option(1, "--devices", "-n", help="devices of each option"),
    batch: Optional[int] = typer.Option(None, "--batch", "-b", help="batch per device (default 32)"),
    dtype: str = typer.Option("fp32", "--dtype"),
    optimizer: str = typer.Option("sgd", "--optimizer"),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="passes over the dataset"),
    dataset_samples: Optional[int] = typer.Option(None, "--dataset-samples", help="samples in the dataset"),
    deadline: Optional[str] = typer.Option(None, "--deadline", help="time limit, e.g. 24h, 3d, 90min"),
    budget: Optional[str] = typer.Option(None, "--budget", help="cost limit in USD, e.g. 1000"),
    price_per_hour: Optional[str] = typer.Option(
        None, "--price-per-hour",
        help="USD per device-hour: one value, or NAME=USD pairs (a name prefix matches, e.g. a100=2.5)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Several hardware options side by side: time per iteration, time to train, cost, deadline/budget."""
    from ..planning import compare as api_compare
    from ..planning import parse_duration, parse_money, parse_prices
    from ..sweeps import parse_list
    from ..units import fmt_seconds

    c = api_compare(network, parse_list(hardware), devices=devices, batch=batch, dtype=dtype, optimizer=optimizer,
                    epochs=epochs, dataset_samples=dataset_samples,
                    deadline_s=parse_duration(deadline) if deadline else None,
                    budget=parse_money(budget) if budget else None, price_per_hour=parse_prices(price_per_hour))
    if json_out:
        typer.echo(dumps(c.to_dict()))
        return
    best = c.best()
    head = ["hardware", "devices", "global batch", "iteration", "samples/s"]
    if c.epochs is not None:
        head += ["time to train", "device-hours", "$/device-hour", "cost"]
    if c.deadline_s is not None:
        head.append("deadline")
    if c.budget is not None:
        head.append("budget")
    head += ["", "note"]
    rows = []
    for r in c.rows:
        ok = r.iteration_time_s is not None
        line = [r.hardware, r.devices, r.global_batch or "-", fmt_seconds(r.iteration_time_s) if ok else "-",
                f"{r.throughput:,.1f}" if ok else "-"]
        if c.epochs is not None:
            line += [_human_duration(r.time_to_train_s) if r.time_to_train_s is not None else "-",
                     _fmt_opt(r.device_hours, "{:,.1f}"), _fmt_opt(r.price_per_device_hour, "{:.2f}"),
                     _fmt_opt(r.cost, "${:,.0f}")]
        if c.deadline_s is not None:
            line.append({True: "meets", False: "misses", None: "-"}[r.meets_deadline])
        if c.budget is not None:
            line.append({True: "within", False: "over", None: "-"}[r.meets_budget])
        line.append("<- best" if best is not None and r is best else "")
        note = r.error or ("price: example table" if r.price_source.startswith("example table") else "")
        line.append(note if len(note) <= 80 else note[:77] + "...")
        rows.append(line)
    typer.echo(f"{c.network}: {devices} device(s) per option, batch {batch or 32} per device, {dtype}")
    if c.epochs is not None:
        typer.echo(f"training: {c.epochs:g} epochs over {c.dataset_samples:,} samples"
                   + (f"; deadline {_human_duration(c.deadline_s)}" if c.deadline_s else "")
                   + (f"; budget ${c.budget:,.0f}" if c.budget is not None else ""))
    typer.echo("")
    typer.echo(table(head, rows, "l" + "r" * (len(head) - 3) + "ll"))
    for r in c.rows:
        if r.price_source.startswith("example table"):
            typer.echo(f"price of {r.hardware}: {r.price_per_device_hour:g} USD/device-hour from the "
                       f"{r.price_source}; pass --price-per-hour {r.hardware}=USD for yours")
    if best is not None:
        why = ("cheapest of the options that fit" if c.epochs is not None and all(
            r.cost is not None for r in c.eligible) else "fastest of the options that fit")
        cond = " and meet the deadline" if c.deadline_s is not None else ""
        cond += " and the budget" if c.budget is not None else ""
        typer.echo(f"\nbest: {best.hardware} ({why}{cond})")
    else:
        typer.echo("\nno option fits" + (" and meets the deadline" if c.deadline_s else "")
                   + (" and the budget" if c.budget is not None else ""))
    if c.epochs is not None and any(r.price_per_device_hour is None for r in c.rows):
        typer.echo("cost unknown where no price is given: pass --price-per-hour NAME=USD")


def _human_duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 3600:
        return f"{s / 60:.1f} min"
    if s < 86400 * 2:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


@app.command()
def serve(
    network: str = typer.Argument(..., help="built-in network name or a YAML/JSON file"),
    hardware: str = typer.Option(..., "--hardware", "-H", help="device name or file"),
    batch: str = typer.Option("1,8,32", "--batch", "-b", help="batch sizes, e.g. 1,8,32"),
    dtype: str = typer.Option("fp32", "--dtype", help="serving dtype (weights stored in it)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads"),
    memory_format: str = typer.Option("contiguous", "--memory-format", help="activation layout: contiguous (NCHW) or channels_last"),
    plot: Optional[str] = typer.Option(None, "--plot", help="write latency/throughput vs batch (HTML) to this file"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Serving: forward-only latency, throughput and memory per batch size."""
    from ..serving import serve as api_serve
    from ..sweeps import parse_list
    from ..units import fmt_bytes, fmt_seconds

    r = api_serve(network, hardware, parse_list(batch, int), dtype=dtype, threads=threads, memory_format=memory_format)
    if plot:
        from ..report.figures import serving_figure
        from ..report.html import write_figures_html

        write_figures_html([serving_figure(r)], plot, title=f"perfmodel serve: {r.network} on {r.hardware}")
    if json_out:
        typer.echo(dumps(r.to_dict()))
        return
    fmt = ", channels_last" if r.memory_format != "contiguous" else ""
    typer.echo(f"{r.network} serving on {r.hardware}, {dtype}{fmt}{f', {r.threads} threads' if r.threads else ''}; "
               f"{r.params:,} parameters")
    rows = []
    for p in r.points:
        part = max(p.breakdown, key=lambda k: p.breakdown[k])
        rows.append((p.batch, fmt_seconds(p.latency_s), f"{p.throughput:,.1f}", f"{p.utilization:.1%}", part,
                     fmt_bytes(p.memory.weights_bytes), fmt_bytes(p.memory.activations_bytes),
                     fmt_bytes(p.memory.total_bytes), "yes" if p.memory.fits else "NO"))
    typer.echo(table(["batch", "latency", "samples/s", "util", "bound", "weights", "activations", "memory", "fits"],
                     rows, "rrrrlrrrl"))
    typer.echo(f"largest batch that fits: {r.max_batch:,}; forward only (no loss, dropout, backward or optimizer)")


@app.command()
def report(
    network: str = typer.Argument(..., help="built-in network name or a YAML/JSON file"),
    hardware: str = typer.Option(..., "--hardware", "-H", help=_HW_HELP),
    out: str = typer.Option("report.html", "--out", "-o", help="HTML file to write"),
    batch: Optional[int] = typer.Option(None, "--batch", "-b", help="batch per device (default 32)"),
    dtype: str = typer.Option("fp32", "--dtype"),
    optimizer: str = typer.Option("sgd", "--optimizer"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads"),
    devices: str = typer.Option("1..64", "--devices", help="device counts of the scaling curve; 'none' to skip"),
) -> None:
    """One self-contained HTML page: per-layer times, breakdown, memory and scaling charts (opens offline)."""
    from ..report.html import write_report
    from ..sweeps import parse_list

    devs = None if devices.strip().lower() in ("none", "0", "") else parse_list(devices, int)
    p = write_report(network, parse_list(hardware), out, batch=batch, dtype=dtype, optimizer=optimizer,
                     threads=threads, devices=devs)
    typer.echo(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB, plotly.js embedded)")
