"""Core commands: predict, show, networks, hardware."""

from __future__ import annotations

from typing import Optional

import typer

from ..parallel.collectives import allreduce_choices
from .app import app
from .render import dumps, prediction_text, table


def parse_plan(plan: Optional[str]) -> Optional[dict]:
    """'dp=8,tp=1,pp=1,microbatches=4' -> dict of ints."""
    if not plan:
        return None
    out = {}
    for part in plan.split(","):
        if "=" not in part:
            from ..errors import InputError

            raise InputError(f"--plan: expected key=value pairs like dp=8,tp=1,pp=1,microbatches=4, got {part!r}")
        k, v = part.split("=", 1)
        try:
            out[k.strip()] = int(v)
        except ValueError:
            out[k.strip()] = v.strip()
    return out


def parse_plans(plans: Optional[str]) -> Optional[list[dict]]:
    """'dp=16,tp=8,pp=8,microbatches=48;dp=128,tp=8' -> one parse_plan dict per ';'-separated plan."""
    if plans is None:
        return None
    out = [parse_plan(p.strip()) for p in plans.split(";") if p.strip()]
    if not out:
        from ..errors import InputError

        raise InputError(f"--plan: expected one or more plans separated by ';', got {plans!r}")
    return out


def parse_size(value: Optional[str], what: str) -> Optional[float]:
    if value is None:
        return None
    from ..errors import InputError
    from ..units import parse_quantity

    try:
        return parse_quantity(value, "bytes", field=what)
    except ValueError as e:
        raise InputError(str(e)) from None


@app.command()
def predict(
    network: str = typer.Argument(..., help="built-in network name (see `perfmodel networks`) or a YAML/JSON file"),
    hardware: str = typer.Option(..., "--hardware", "-H", help="device, node or cluster name (see `perfmodel hardware`) or file"),
    batch: Optional[int] = typer.Option(None, "--batch", "-b", help="samples per iteration per data-parallel replica (default 32)"),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, tf32, fp16, bf16, fp8 or int8"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all physical cores)"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd, momentum, adam or adamw"),
    devices: int = typer.Option(1, "--devices", "-n", help="number of devices"),
    nodes: Optional[int] = typer.Option(None, "--nodes", help="number of nodes (cluster profiles)"),
    plan: Optional[str] = typer.Option(None, "--plan", help="parallel plan, e.g. dp=8,tp=1,pp=1,microbatches=4"),
    sync: str = typer.Option("sync", "--sync", help="sync, async or mixed"),
    allreduce: str = typer.Option("ring", "--allreduce", help=", ".join(allreduce_choices())),
    no_overlap: bool = typer.Option(False, "--no-overlap", help="no communication overlaps compute (gradient buckets, FSDP prefetch, pipeline sends)"),
    tp_overlap: bool = typer.Option(False, "--tp-overlap", help="pipeline tensor-parallel all-gathers / reduce-scatters with their GEMMs (Megatron --tp-comm-overlap; needs --sequence-parallel)"),
    straggler_cv: float = typer.Option(0.0, "--straggler-cv", help="coefficient of variation of per-device step time"),
    slow_worker_factor: float = typer.Option(1.0, "--slow-worker-factor", help="one data-parallel worker computes this many times slower (>= 1)"),
    dataset_size: Optional[str] = typer.Option(None, "--dataset-size", help="dataset size, e.g. 1.2TB (enables the IO model)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset preset, e.g. imagenet (1,281,167 samples of 110 kB on disk)"),
    sample_size: Optional[str] = typer.Option(None, "--sample-size", help="one sample's size on disk, e.g. 110kB (default: the input tensor in --dtype)"),
    storage: Optional[str] = typer.Option(None, "--storage", help="storage profile the dataset is read from, e.g. nvme-pcie4"),
    no_prefetch: bool = typer.Option(False, "--no-prefetch", help="input loading does not overlap compute"),
    raid0: Optional[int] = typer.Option(None, "--raid0", help="stripe the storage over this many disks (RAID 0)"),
    bucket_size: Optional[str] = typer.Option(None, "--bucket-size", help="gradient bucket size, e.g. 25MiB (DDP default)"),
    grad_accumulation: int = typer.Option(1, "--grad-accumulation", help="micro-steps per gradient synchronisation"),
    scaling: str = typer.Option("weak", "--scaling", help="weak: --batch per replica; strong: --batch is the global batch"),
    ps_servers: Optional[int] = typer.Option(None, "--ps-servers", help="parameter-server shards (--allreduce ps, async, mixed)"),
    ps_colocated: bool = typer.Option(False, "--ps-colocated", help="parameter-server shards run on the worker nodes"),
    p2p: Optional[bool] = typer.Option(None, "--p2p/--no-p2p", help="force GPUDirect peer-to-peer over PCIe on or off"),
    memory_format: str = typer.Option("contiguous", "--memory-format", help="activation layout: contiguous (PyTorch's default, NCHW) or channels_last (NHWC: tensor-core convolutions skip cuDNN's layout conversions)"),
    zero: int = typer.Option(0, "--zero", help="ZeRO stage: 1 shards the optimizer state over data-parallel ranks, 2 also gradients, 3 also parameters (pp=1)"),
    sharding: str = typer.Option("none", "--sharding", help="FSDP sharding: none, full (= ZeRO-3 over dp) or hybrid (ZeRO-3 over the dp ranks of a node, replicated across nodes); pp=1"),
    sequence_parallel: bool = typer.Option(False, "--sequence-parallel", help="Megatron sequence parallelism over the tensor-parallel ranks"),
    context_parallel: int = typer.Option(1, "--context-parallel", help="context-parallel (ring attention) ranks per replica: devices = dp x tp x pp x this; needs attention layers"),
    virtual_stages: int = typer.Option(1, "--virtual-stages", help="interleaved 1F1B chunks per pipeline stage (needs pp > 1)"),
    recompute: str = typer.Option("none", "--recompute", help="activation recomputation: none, selective (the attention core) or full (every block but the last)"),
    offload_activations: bool = typer.Option(False, "--offload-activations", help="copy kept activations to host memory over the device's PCIe link, overlapped with compute"),
    expert_parallel: int = typer.Option(1, "--expert-parallel", help="expert-parallel degree: each moe layer's experts split over this many data-parallel ranks (divides dp)"),
    device: Optional[str] = typer.Option(None, "--device", help="replace the node's device, e.g. a100-sxm4-80gb"),
    layers: bool = typer.Option(False, "--layers", help="show every layer (and include them in --json)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Predict one training iteration: time, breakdown, memory and bottleneck."""
    from ..prediction import make_setup
    from ..prediction import predict as api_predict

    setup = make_setup(
        batch=batch, dtype=dtype, threads=threads, optimizer=optimizer, devices=devices, nodes=nodes,
        plan=parse_plan(plan), sync=sync, allreduce=allreduce, overlap=not no_overlap, tp_overlap=tp_overlap,
        bucket_bytes=parse_size(bucket_size, "--bucket-size"), straggler_cv=straggler_cv,
        slow_worker_factor=slow_worker_factor,
        dataset_size=parse_size(dataset_size, "--dataset-size"), dataset=dataset,
        input_bytes_per_sample=parse_size(sample_size, "--sample-size"), storage=storage, prefetch=not no_prefetch,
        grad_accumulation=grad_accumulation, scaling=scaling, ps_servers=ps_servers, ps_colocated=ps_colocated,
        p2p=p2p, memory_format=memory_format, raid0=raid0, zero=zero, sharding=sharding, sequence_parallel=sequence_parallel,
        context_parallel=context_parallel, virtual_stages=virtual_stages, recompute=recompute,
        offload_activations=offload_activations, expert_parallel=expert_parallel)
    hw = hardware
    if device is not None:
        from ..planning.space import hardware_with_device

        hw = hardware_with_device(hardware, device)
    p = api_predict(network, hw, setup, layers=True)
    _warn_free_custom(network)
    if json_out:
        typer.echo(dumps(p.to_dict(layers=layers)))
    else:
        typer.echo(prediction_text(p, show_layers=layers))


def _warn_free_custom(network: str) -> None:
    """Custom layers with no FLOPs and no bytes, on stderr (IMPORT, issue 12)."""
    from ..graph import load_network
    from ..ops.layout import free_custom_layers

    for w in free_custom_layers(load_network(network)):
        typer.echo(f"warning: {w}", err=True)


@app.command()
def show(
    network: str = typer.Argument(..., help="built-in network name or a YAML/JSON file"),
    batch: int = typer.Option(1, "--batch", "-b", help="batch size the FLOPs and activation bytes are given for"),
    dtype: str = typer.Option("fp32", "--dtype"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Describe a network: parameters, FLOPs, activation memory and per-layer shapes."""
    from ..summary import network_summary
    from ..units import fmt_bytes, fmt_count

    s = network_summary(network, batch=batch, dtype=dtype)
    _warn_free_custom(network)
    if json_out:
        typer.echo(dumps(s.to_dict()))
        return
    typer.echo(f"{s.name}: {s.description}".rstrip(": "))
    typer.echo(f"parameters: {s.params:,}")
    typer.echo(f"FLOPs per batch of {s.batch}: forward {fmt_count(s.flops['forward'])}, backward {fmt_count(s.flops['backward'])}")
    typer.echo(f"activations kept for backward: {fmt_bytes(s.activation_bytes)} ({s.dtype})")
    typer.echo("")
    rows = [(l.name, l.op, "x".join(map(str, l.output_shape)), f"{l.params:,}", fmt_count(l.flops_forward),
             fmt_bytes(l.saved_bytes)) for l in s.layers]
    typer.echo(table(["layer", "op", "output", "params", "fwd FLOP", "saved"], rows, "lllrrr"))


@app.command()
def networks(json_out: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List the built-in networks."""
    from ..graph.io import builtin_networks, read_data_file

    rows = []
    for name, path in builtin_networks().items():
        data = read_data_file(path)
        rows.append({"name": name, "title": data.get("name", name), "description": data.get("description", "")})
    if json_out:
        typer.echo(dumps(rows))
    else:
        typer.echo(table(["name", "description"], [(r["name"], r["description"][:90]) for r in rows], "ll"))


@app.command()
def hardware(
    kind: Optional[str] = typer.Option(None, "--kind", help="only device, link, storage, node or cluster"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """List the built-in hardware profiles."""
    from ..hardware import list_hardware
    from ..units import fmt_bytes, fmt_count

    items = list_hardware(kind)
    if json_out:
        typer.echo(dumps([h.model_dump(mode="json") for h in items]))
        return
    rows = []
    for h in items:
        if h.kind == "device":
            best = max(h.peak_flops.items(), key=lambda kv: kv[1])
            what = (f"{h.type}, fp32 {fmt_count(h.peak_flops['fp32'], 'FLOP/s')}, {best[0]} {fmt_count(best[1], 'FLOP/s')}, "
                    f"{fmt_bytes(h.memory_bandwidth_Bps)}/s, {fmt_bytes(h.memory_bytes)}")
        elif h.kind == "link":
            what = f"{h.type}, {fmt_bytes(h.bandwidth_Bps)}/s per direction, latency {h.latency_s * 1e6:.1f} us"
        elif h.kind == "storage":
            what = f"{h.type}, read {fmt_bytes(h.effective_read_Bps)}/s"
        else:
            what = getattr(h, "summary", lambda: "")() if callable(getattr(h, "summary", None)) else ""
        rows.append((h.name, h.kind, what))
    typer.echo(table(["name", "kind", "summary"], rows, "lll"))
