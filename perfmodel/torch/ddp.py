"""torch.distributed on this machine's CPU (gloo over loopback): the measuring side of the ddp-cpu suite.

1. **All-reduce microbenchmark** (`calibrate_allreduce`): 2 processes, gloo, 127.0.0.1; all-reduce of
   fp32 tensors from 4 KB to 64 MB; the median time per size is fitted (least squares on relative
   error) to the ring formula for p = 2 ranks, T(n) = n / B + 2 alpha, giving the link's bandwidth B and
   latency alpha, saved as the link profile `local-gloo-loopback` (`hardware_profiles/links/calibrated/`).
2. **Process contention** (`calibrate_process_speed`): how fast each process computes (GEMM, convolution)
   and streams memory while all of them run, relative to alone, and how unevenly they go.
3. **DDP training** (`measure_ddp`): `world` processes x `threads` intra-op threads each, the network
   built by `perfmodel.torch.to_module`, wrapped in DistributedDataParallel (default buckets), SGD;
   warm-up steps, then timed steps (zero_grad, forward + loss, backward with the bucketed gradient
   all-reduce, optimizer step), timed on every rank; the step time is the slowest rank's.

The suite (cases, prediction, report) is perfmodel.validation.ddp_cpu.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import socket
import statistics
import tempfile
import time

from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..calibration import links
from ..errors import InputError
from ..graph.io import load_network, network_from_dict, network_to_dict
from ..graph.layer_graph import LayerGraph
from ..ops.base import graph_costs
from ..parallel.sync_modes import expected_max_normal
from ..paths import repo_root
from .ddp_records import LINK_NAME, DDPMeasurement, LinkCalibration  # noqa: F401  (re-exported)
from .measure import machine_info, summarize_times
from .to_module import make_batch, to_module
from .worker import read_results, result_path, timed_steps, training_step, write_result

SIZES_BYTES = tuple(4 * 1024 * 4**i for i in range(8))  # 4 KiB .. 64 MiB


# ---------------------------------------------------------------------------------------------------
# process plumbing


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, world: int, port: int, threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=_dt.timedelta(seconds=300))


def _spawn(fn, world: int, args: tuple) -> list[Any]:
    """Run fn(rank, world, port, out_dir, *args) in `world` processes; each writes rank<k>.json; return them."""
    port = _free_port()
    env_before = os.environ.get("GLOO_SOCKET_IFNAME")
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    try:
        with tempfile.TemporaryDirectory(prefix="perfmodel-ddp-") as d:
            try:
                mp.spawn(fn, args=(world, port, d, *args), nprocs=world, join=True)
            except mp.ProcessExitedException:
                # gloo's threads can abort a worker at interpreter exit, after it wrote its result
                if not all(result_path(d, r).is_file() for r in range(world)):
                    raise
            return read_results(d, world)
    finally:
        if env_before is None:
            os.environ.pop("GLOO_SOCKET_IFNAME", None)
        else:
            os.environ["GLOO_SOCKET_IFNAME"] = env_before


# ---------------------------------------------------------------------------------------------------
# 1. all-reduce microbenchmark and alpha-beta fit


ALLREDUCE_ROUNDS = 5  # passes over all sizes, interleaved so that load changes spread over every size


def _reps(n: int) -> int:
    """Repetitions per size per round: many for small messages, a few for large ones."""
    return int(min(40, max(2, 2e7 / max(n, 1))))


def _allreduce_worker(rank: int, world: int, port: int, out_dir: str, sizes: Sequence[int], threads: int) -> None:
    _init(rank, world, port, threads)
    res: dict[str, list[float]] = {str(n): [] for n in sizes}
    bufs = {n: torch.ones(max(1, n // 4), dtype=torch.float32) for n in sizes}
    for n in sizes:  # warm-up
        for _ in range(2):
            dist.all_reduce(bufs[n])
    for _ in range(ALLREDUCE_ROUNDS):
        for n in sizes:
            t = bufs[n]
            for _ in range(_reps(n)):
                dist.barrier()
                t0 = time.perf_counter()
                dist.all_reduce(t)
                res[str(n)].append(time.perf_counter() - t0)
    dist.barrier()
    dist.destroy_process_group()
    write_result(out_dir, rank, res)


def fit_alpha_beta(points: Sequence[tuple[float, float]], ranks: int = 2) -> tuple[float, float]:
    """(latency alpha, bandwidth B) of the ring all-reduce over `ranks` fitted to (bytes, seconds) points."""
    return links.fit_alpha_beta(points, "allreduce", ranks)


def calibrate_allreduce(sizes: Sequence[int] = SIZES_BYTES, threads: int = 1, world: int = 2) -> LinkCalibration:
    """Run the gloo all-reduce microbenchmark over loopback and fit alpha and beta."""
    res = _spawn(_allreduce_worker, world, (tuple(sizes), threads))
    points = []
    for n in sizes:
        # per repetition, the slowest rank's time
        per_rep = [max(r[str(n)][i] for r in res) for i in range(len(res[0][str(n)]))]
        points.append((int(n), statistics.median(per_rep)))
    alpha, bw = fit_alpha_beta(points, world)
    return LinkCalibration(alpha, bw, tuple(points), threads, machine_info(threads).model_dump(),
                           _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def save_link(cal: LinkCalibration, path: str | Path | None = None) -> Path:
    """Write the fitted link as a YAML profile (default hardware_profiles/links/calibrated/local-gloo-loopback.yaml)."""
    import yaml

    if path is None:
        root = repo_root() or Path.cwd()
        path = root / "hardware_profiles" / "links" / "calibrated" / f"{LINK_NAME}.yaml"
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {"kind": "link", "name": LINK_NAME, "type": "loopback", "source": cal.source, "notes": cal.notes,
            "bandwidth": float(cal.bandwidth_Bps), "latency": float(cal.alpha_s), "efficiency": 1.0}
    p.write_text(yaml.safe_dump(data, sort_keys=False, width=110), encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------------
# 1b. how fast each process computes when all of them run (cores of a VM / SMT siblings share hardware)

CONTENTION_GEMM = 768  # n x n x n fp32 GEMM: compute-bound, ~0.9 GFLOP
CONTENTION_CONV = (8, 64, 32, 3)  # batch, channels in = out, H = W, kernel: a 3x3 convolution, ~0.6 GFLOP
CONTENTION_REPS = 6
CONTENTION_ROUNDS = 8
# memory-bound work: c = a + b over fp32 tensors of these many elements (1 MiB .. 64 MiB each: private cache,
# shared last-level cache and DRAM), the way elementwise layers stream activations
CONTENTION_STREAM = (1 << 18, 1 << 21, 1 << 24)
# The processes' imbalance (straggler_cv) is measured and reported but not used by the prediction: between
# runs it went from 0.06 to 0.24 (median of 3), and within one run a convolution ran 55% slower in one process
# throughout while the GEMM beside it ran evenly, so the microbenchmark does not measure what a step waits for.


def _contention_worker(rank: int, world: int, port: int, out_dir: str, threads: int) -> None:
    import torch.nn.functional as F

    _init(rank, world, port, threads)
    n = CONTENTION_GEMM
    a, b = torch.randn(n, n), torch.randn(n, n)
    nb, ch, hw, k = CONTENTION_CONV
    x, w = torch.randn(nb, ch, hw, hw), torch.randn(ch, ch, k, k)
    kernels = {"gemm": lambda: torch.mm(a, b), "conv": lambda: F.conv2d(x, w, padding=k // 2)}
    for n_el in CONTENTION_STREAM:
        sa, sb, sc = torch.randn(n_el), torch.randn(n_el), torch.empty(n_el)
        kernels[f"add{n_el}"] = (lambda sa=sa, sb=sb, sc=sc: torch.add(sa, sb, out=sc))
    for f in kernels.values():
        for _ in range(3):
            f()

    def run(f) -> float:
        t0 = time.perf_counter()
        for _ in range(CONTENTION_REPS):
            f()
        return (time.perf_counter() - t0) / CONTENTION_REPS

    out: dict[str, dict[str, list[float]]] = {k: {"alone": [], "together": []} for k in kernels}
    for _ in range(CONTENTION_ROUNDS):
        for name, f in kernels.items():
            for r in range(world):  # each rank alone while the others wait
                dist.barrier()
                if rank == r:
                    out[name]["alone"].append(run(f))
                dist.barrier()
            dist.barrier()
            out[name]["together"].append(run(f))  # all at once
    dist.barrier()
    dist.destroy_process_group()
    write_result(out_dir, rank, out)


def straggler_cv_from_runs(per_rank: Sequence[Sequence[float]]) -> float:
    """Coefficient of variation that makes the straggler model's expected maximum match repeated runs of the same
    work in every rank at once (`per_rank[r][i]`: rank r's time in repetition i).

    The measured wait is E[max over ranks] / E[mean over ranks] - 1 of each repetition; the model's is
    cv x E[max of N standard normals] (perfmodel.parallel.sync_modes), hence cv = wait / E[max].
    """
    world = len(per_rank)
    if world < 2:
        return 0.0
    reps = list(zip(*per_rank))
    if not reps:
        return 0.0
    mx = statistics.fmean(max(r) for r in reps)
    mean = statistics.fmean(statistics.fmean(r) for r in reps)
    return max(0.0, mx / mean - 1.0) / expected_max_normal(world)


def calibrate_process_speed(world: int = 2, threads: int = 1) -> dict[str, Any]:
    """Speed of one process's GEMM and convolution while `world` processes run them at once, relative to alone,
    and how unevenly the processes go.

    process_speed is the geometric mean of the two kernels' alone / together time ratios (capped at 1);
    memory_speed the same for the streaming adds (memory-bound work: shared last-level cache and DRAM);
    straggler_cv the mean over the two kernels of straggler_cv_from_runs of their runs together (a
    synchronous step waits for the slower process).
    """
    res = _spawn(_contention_worker, world, (threads,))
    out: dict[str, Any] = {"world": world, "threads": threads, "gemm_n": CONTENTION_GEMM,
                           "conv_shape": dict(zip(("batch", "channels", "hw", "kernel"), CONTENTION_CONV)),
                           "stream_elements": list(CONTENTION_STREAM)}
    ratios, cvs, mem = [], [], []
    for k in ["gemm", "conv"] + [f"add{n}" for n in CONTENTION_STREAM]:
        alone = statistics.median(t for r in res for t in r[k]["alone"])
        together = statistics.median(t for r in res for t in r[k]["together"])
        out[k] = {"alone_s": alone, "together_s": together, "speed": alone / together,
                  "together_per_rank_s": [r[k]["together"] for r in res]}
        if k.startswith("add"):
            mem.append(alone / together)
            continue
        cv = straggler_cv_from_runs([r[k]["together"] for r in res])
        out[k]["straggler_cv"] = cv
        ratios.append(alone / together)
        cvs.append(cv)
    out["process_speed"] = min(1.0, math.sqrt(ratios[0] * ratios[1]))
    out["memory_speed"] = min(1.0, math.exp(statistics.fmean(math.log(x) for x in mem)))
    out["straggler_cv"] = statistics.fmean(cvs)
    return out


# ---------------------------------------------------------------------------------------------------
# 2. DDP training measurement


def _ddp_worker(rank: int, world: int, port: int, out_dir: str, graph_data: dict, batch: int, warmup: int,
                steps: int, threads: int, seed: int) -> None:
    _init(rank, world, port, threads)
    from torch.nn.parallel import DistributedDataParallel as DDP

    graph = network_from_dict(graph_data)
    torch.manual_seed(seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = DDP(to_module(graph))
    model.train()
    x, y = make_batch(graph, batch, seed=seed + rank)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    step = training_step(opt, partial(model, x, y))
    for _ in range(warmup):
        step()
    dist.barrier()
    times = timed_steps(step, steps)
    dist.barrier()
    del step, model, opt  # the DDP reducer's threads go before the process group (else gloo may abort at exit)
    dist.destroy_process_group()
    write_result(out_dir, rank, times)


def _graph_dict(graph: LayerGraph) -> dict:
    return network_to_dict(graph, flat=True)


def _loadavg():
    try:
        return tuple(os.getloadavg())
    except OSError:
        return None


def measure_ddp(network: str | Path | LayerGraph, batch: int, *, world: int = 2, threads: int = 1, warmup: int = 3,
                steps: int = 10, seed: int = 0) -> DDPMeasurement:
    """Time DDP training steps of `network` with `world` gloo processes x `threads` threads on this CPU."""
    graph = load_network(network)
    if batch < 1 or steps < 1 or warmup < 0 or world < 1 or threads < 1:
        raise InputError("batch, steps, world and threads must be >= 1 and warmup >= 0")
    la = _loadavg()
    res = _spawn(_ddp_worker, world, (_graph_dict(graph), batch, warmup, steps, threads, seed))
    per_step = [max(r[i] for r in res) for i in range(steps)]
    s = summarize_times(per_step)
    params = sum(c.params for c in graph_costs(graph, 1, 4))
    return DDPMeasurement(graph.name, batch, world, threads, warmup, steps, params,
                          tuple(tuple(r) for r in res), tuple(per_step), s["median_s"], s["p10_s"], s["p90_s"],
                          machine_info(threads).model_dump(),
                          _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), la)
