"""Sharded data parallel on this machine's CPU (gloo over loopback): the measuring side of the fsdp-cpu suite.

`measure_sharded` times training steps of a network in `world` processes (gloo, `threads` intra-op threads each,
Adam, fp32) under one of three PyTorch implementations of a ZeRO stage:

- "ddp"   (stage 0): DistributedDataParallel, every rank holds everything;
- "zero1" (stage 1): DistributedDataParallel + torch.distributed.optim.ZeroRedundancyOptimizer (each rank keeps
  the Adam state of its partition of the parameters, updates them and broadcasts them);
- "fsdp"  (stage 3): FSDP2, `torch.distributed.fsdp.fully_shard` on every layer that has parameters (one unit
  per layer of perfmodel.torch.to_module's module) and on the root; parameters, gradients and Adam state are
  DTensors sharded along dim 0;
- "fsdp-root" (stage 3, a diagnostic): fully_shard on the root only, one unit: the same bytes in 3 collectives
  per step instead of 3 per layer.

`calibrate_fsdp_units` measures what an FSDP2 unit costs beyond its bytes (a tiny stack as 16 units vs one).

After the timed steps each rank reports PyTorch's own accounting of its model state: the bytes of its local
tensors (DTensor.to_local() for FSDP) of parameters, gradients and optimizer state, and, for "zero1", the bytes of
its partition of the parameters (ZeroRedundancyOptimizer's partition: what a ZeRO-2 rank would keep gradients
of). It also reports its resident memory: VmRSS before the model is built and the peak VmHWM during the steps
(Linux; reset through /proc/self/clear_refs), whose difference is the peak memory the training added.

PyTorch has no ZeRO-2 of its own for this setup (FSDP2's reshard_after_forward=False still keeps the parameters
sharded between steps), so the suite computes stage 2's gradient shard from the zero1 partition.
"""

from __future__ import annotations

import datetime as _dt
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..errors import InputError
from ..graph.io import load_network, network_from_dict
from ..graph.layer_graph import LayerGraph
from ..ops.base import graph_costs
from .ddp import _graph_dict, _init, _loadavg, _spawn
from .worker import timed_steps, training_step, write_result
from .measure import machine_info, summarize_times
from .to_module import make_batch, to_module

MODES = {"ddp": 0, "zero1": 1, "fsdp": 3, "fsdp-root": 3}  # PyTorch implementation -> ZeRO stage
LR = 1e-3


def _status_kib(field: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), None where there is no procfs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _local_bytes(t) -> int:
    """Bytes this rank holds of tensor t: the local shard of a DTensor, else the tensor."""
    if t is None:
        return 0
    loc = t.to_local() if hasattr(t, "to_local") else t
    return int(loc.numel() * loc.element_size())


def _state_tensors(opt) -> list:
    """The optimizer state tensors this rank holds (ZeroRedundancyOptimizer: its local optimizer's)."""
    inner = getattr(opt, "optim", opt)
    return [v for st in inner.state.values() for v in st.values() if torch.is_tensor(v)]


def _build(graph: LayerGraph, mode: str, world: int):
    """(model, optimizer, owned parameter bytes or None) for one rank."""
    module = to_module(graph)
    if mode.startswith("fsdp"):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for child in module.children() if mode == "fsdp" else ():  # fsdp-root: one unit, the whole model
            if any(True for _ in child.parameters()):
                fully_shard(child, mesh=mesh)
        fully_shard(module, mesh=mesh)
        return module, torch.optim.Adam(module.parameters(), lr=LR), None
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = DDP(module)
    if mode == "ddp":
        return model, torch.optim.Adam(model.parameters(), lr=LR), None
    from torch.distributed.optim import ZeroRedundancyOptimizer

    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.Adam, lr=LR)
    owned = sum(_local_bytes(p) for g in opt.optim.param_groups for p in g["params"])  # this rank's partition
    return model, opt, owned


def _sharded_worker(rank: int, world: int, port: int, out_dir: str, graph_data: dict, mode: str, batch: int,
                    warmup: int, steps: int, threads: int, seed: int) -> None:
    import warnings

    # FSDP2 warns when a unit returns a view; to_module's graph never modifies a layer's output in place
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module")
    _init(rank, world, port, threads)
    graph = network_from_dict(graph_data)
    rss0 = _status_kib("VmRSS")
    torch.manual_seed(seed)  # same initial weights on every rank
    model, opt, owned = _build(graph, mode, world)
    model.train()
    x, y = make_batch(graph, batch, seed=seed + rank)

    step = training_step(opt, partial(model, x, y))
    for _ in range(warmup):
        step()
    dist.barrier()
    peak_reset = _reset_peak_rss()
    times = timed_steps(step, steps)
    hwm = _status_kib("VmHWM")
    params = list(model.parameters())
    mem = {"params_bytes": sum(_local_bytes(p) for p in params),
           "gradients_bytes": sum(_local_bytes(p.grad) for p in params),
           "optimizer_bytes": sum(_local_bytes(t) for t in _state_tensors(opt)),
           "partition_params_bytes": owned, "rss_before_kib": rss0, "peak_rss_kib": hwm if peak_reset else None}
    dist.barrier()
    del step, model, opt  # the DDP reducer's threads go before the process group (else gloo may abort at exit)
    dist.destroy_process_group()
    write_result(out_dir, rank, {"times": times, "memory": mem})


COLLECTIVE_REPS = 6
COLLECTIVE_ROUNDS = 3


def _collective_worker(rank: int, world: int, port: int, out_dir: str, sizes, threads: int) -> None:
    """Per size (bytes of the full tensor): times of all-reduce, all-gather and reduce-scatter, interleaved."""
    _init(rank, world, port, threads)
    out: dict[str, dict[str, list[float]]] = {str(n): {"all-reduce": [], "all-gather": [], "reduce-scatter": []}
                                              for n in sizes}
    for _ in range(COLLECTIVE_ROUNDS):
        for n in sizes:
            full, shard = torch.ones(n // 4), torch.ones(n // 4 // world)
            ops = {"all-reduce": lambda: dist.all_reduce(full),
                   "all-gather": lambda: dist.all_gather_single(full, shard),
                   "reduce-scatter": lambda: dist.reduce_scatter_single(shard, full)}
            for name, f in ops.items():
                f()  # warm-up of this size and collective
                for _ in range(COLLECTIVE_REPS):
                    dist.barrier()
                    t0 = time.perf_counter()
                    f()
                    out[str(n)][name].append(time.perf_counter() - t0)
    dist.barrier()
    dist.destroy_process_group()
    write_result(out_dir, rank, out)


def calibrate_collectives(sizes=(1 << 12, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26), world: int = 2, threads: int = 1
                          ) -> dict[str, Any]:
    """gloo all-reduce, all-gather and reduce-scatter of fp32 tensors of `sizes` bytes (the full tensor; each rank
    holds 1/world of it for all-gather / reduce-scatter) between `world` processes: median over repetitions of
    the slowest rank's time, per size and collective, in seconds."""
    res = _spawn(_collective_worker, world, (tuple(sizes), threads))
    med: dict[str, dict[str, float]] = {}
    for n in sizes:
        med[str(n)] = {}
        for c in ("all-reduce", "all-gather", "reduce-scatter"):
            reps = [max(r[str(n)][c][i] for r in res) for i in range(len(res[0][str(n)][c]))]
            med[str(n)][c] = sorted(reps)[len(reps) // 2]
    return {"kind": "collective_microbenchmark", "world": world, "threads": threads, "backend": "gloo",
            "median_s": med, "machine": machine_info(threads).model_dump(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


BUSY_GEMM = 256  # n x n x n fp32 GEMMs between two collectives: the compute of a small layer
BUSY_GEMMS_PER_GAP = 8
BUSY_REPS = 30
BUSY_ROUNDS = 9
BUSY_BYTES = 4096  # a small all-gather (full size): latency, not bandwidth


def _busy_worker(rank: int, world: int, port: int, out_dir: str, threads: int) -> None:
    """Per round: BUSY_REPS gaps of compute alone, then BUSY_REPS gaps each followed by a blocking all-gather."""
    _init(rank, world, port, threads)
    a, b = torch.randn(BUSY_GEMM, BUSY_GEMM), torch.randn(BUSY_GEMM, BUSY_GEMM)
    full, shard = torch.ones(BUSY_BYTES // 4), torch.ones(BUSY_BYTES // 4 // world)

    def gap() -> None:
        for _ in range(BUSY_GEMMS_PER_GAP):
            torch.mm(a, b)

    out: dict[str, list[float]] = {"compute": [], "compute+all-gather": []}
    for _ in range(BUSY_ROUNDS):
        for name in out:
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(BUSY_REPS):
                gap()
                if name != "compute":
                    dist.all_gather_single(full, shard)
            out[name].append((time.perf_counter() - t0) / BUSY_REPS)
    dist.barrier()
    dist.destroy_process_group()
    write_result(out_dir, rank, out)


def calibrate_busy_collective(world: int = 2, threads: int = 1) -> dict[str, Any]:
    """What one small collective costs inside a training step, where every core computes and the ranks are not
    lined up by a barrier: both ranks repeat (compute gap, blocking all-gather of BUSY_BYTES); minus the same gaps
    without the collective. The cost per collective (median over rounds of the slower rank's difference) includes
    the wait for the other rank's gap (their skew) and for the scheduler to run gloo's transfer thread on a core
    that computes; the barrier-synchronised all-reduce microbenchmark sees neither."""
    res = _spawn(_busy_worker, world, (threads,))
    diffs = [max(r["compute+all-gather"][i] - r["compute"][i] for r in res) for i in range(BUSY_ROUNDS)]
    gaps = [max(r["compute"][i] for r in res) for i in range(BUSY_ROUNDS)]
    return {"kind": "busy_collective_microbenchmark", "world": world, "threads": threads, "backend": "gloo",
            "gemm_n": BUSY_GEMM, "gemms_per_gap": BUSY_GEMMS_PER_GAP, "reps": BUSY_REPS, "bytes": BUSY_BYTES,
            "gap_s": sorted(gaps)[len(gaps) // 2], "cost_per_collective_s": sorted(diffs)[len(diffs) // 2],
            "rounds_cost_s": diffs, "machine": machine_info(threads).model_dump(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def measure_sharded(network: str | Path | LayerGraph, batch: int, mode: str, *, world: int = 2, threads: int = 1,
                    warmup: int = 3, steps: int = 10, seed: int = 0) -> dict[str, Any]:
    """Time training steps of `network` under `mode` (see MODES) with `world` gloo processes on this CPU.

    Returns a record: the fields of perfmodel.torch.ddp_records.DDPMeasurement (step time = the slowest rank's
    per step) plus `mode`, `zero` (its stage) and `rank_memory` (per rank: PyTorch's bytes of local parameters,
    gradients, optimizer state, the zero1 partition, and resident memory in KiB).
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    graph = load_network(network)
    if batch < 1 or steps < 1 or warmup < 0 or world < 2 or threads < 1:
        raise InputError("batch, steps and threads must be >= 1, world >= 2 and warmup >= 0")
    la = _loadavg()
    res = _spawn(_sharded_worker, world, (_graph_dict(graph), mode, batch, warmup, steps, threads, seed))
    per_step = [max(r["times"][i] for r in res) for i in range(steps)]
    s = summarize_times(per_step)
    params = sum(c.params for c in graph_costs(graph, 1, 4))
    return {"network": graph.name, "batch": batch, "world": world, "threads": threads, "warmup": warmup,
            "steps": steps, "params": params, "rank_step_times_s": [r["times"] for r in res],
            "step_times_s": per_step, "median_s": s["median_s"], "p10_s": s["p10_s"], "p90_s": s["p90_s"],
            "machine": machine_info(threads).model_dump(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "load_avg_before": la,
            "schema": "perfmodel.measurement/1", "kind": "sharded_training_step", "device": "cpu", "dtype": "fp32",
            "optimizer": "adam", "backend": "gloo", "mode": mode, "zero": MODES[mode],
            "rank_memory": [r["memory"] for r in res]}


UNIT_LAYERS = 16  # Linear(UNIT_WIDTH, UNIT_WIDTH) layers: 16 KiB of parameters each, so the bytes cost ~nothing
UNIT_WIDTH = 64
UNIT_BATCH = 8
UNIT_STEPS = 10
UNIT_ROUNDS = 7
# the busy variant: Linear(512, 512) layers on 256 samples, ~6 ms of compute per unit (a layer of the fsdp-cpu
# networks computes 1-10 ms): how the unit cost grows with the compute between the collectives
UNIT_BUSY = {"width": 512, "batch": 256}


def _unit_worker(rank: int, world: int, port: int, out_dir: str, threads: int, width: int, batch: int) -> None:
    """Per round: UNIT_STEPS Adam steps of the same tiny stack as UNIT_LAYERS FSDP units, then as one unit."""
    _init(rank, world, port, threads)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))

    def build(per_layer: bool):
        torch.manual_seed(0)
        m = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(UNIT_LAYERS)])
        for layer in m if per_layer else ():
            fully_shard(layer, mesh=mesh)
        fully_shard(m, mesh=mesh)
        return m, torch.optim.Adam(m.parameters(), lr=LR)

    models = {"units": build(True), "one-unit": build(False)}
    x = torch.randn(batch, width)

    steps = {k: training_step(opt, lambda m=m: m(x).sum()) for k, (m, opt) in models.items()}
    for step in steps.values():
        for _ in range(3):
            step()
    out: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(UNIT_ROUNDS):
        for k, step in steps.items():
            dist.barrier()
            out[k].append(sum(timed_steps(step, UNIT_STEPS)) / UNIT_STEPS)
    dist.barrier()
    del step, steps, models
    dist.destroy_process_group()
    write_result(out_dir, rank, out)


def calibrate_fsdp_units(world: int = 2, threads: int = 1, width: int = UNIT_WIDTH, batch: int = UNIT_BATCH
                         ) -> dict[str, Any]:
    """What one FSDP2 unit costs beyond its bytes on this machine: a stack of UNIT_LAYERS tiny Linear layers trained
    (Adam) with fully_shard on every layer, minus the same stack as one unit (the same parameters, optimizer and
    compute), per extra unit: its forward all-gather, backward all-gather and reduce-scatter as FSDP2 issues them
    (hooks, copy-in / copy-out, the wait for the other rank, gloo's worker thread on busy cores). Median over
    rounds of the slower rank; per_collective_s = a third of it; compute_per_unit_s = the one-unit step's median /
    UNIT_LAYERS (its compute and optimizer, per layer). A microbenchmark: no training case is used."""
    res = _spawn(_unit_worker, world, (threads, width, batch))
    per_round = []
    for i in range(UNIT_ROUNDS):
        units = max(r["units"][i] for r in res)
        one = max(r["one-unit"][i] for r in res)
        per_round.append((units - one) / (UNIT_LAYERS - 1))
    cost = sorted(per_round)[len(per_round) // 2]
    one = sorted(max(r["one-unit"][i] for r in res) for i in range(UNIT_ROUNDS))[UNIT_ROUNDS // 2]
    return {"kind": "fsdp_unit_microbenchmark", "world": world, "threads": threads, "backend": "gloo",
            "layers": UNIT_LAYERS, "width": width, "batch": batch, "steps": UNIT_STEPS,
            "cost_per_unit_s": cost, "per_collective_s": cost / 3, "rounds_cost_s": per_round,
            "compute_per_unit_s": one / UNIT_LAYERS,
            "step_s": {k: [max(r[k][i] for r in res) for i in range(UNIT_ROUNDS)] for k in ("units", "one-unit")},
            "machine": machine_info(threads).model_dump(),
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}

