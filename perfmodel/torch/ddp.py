"""torch.distributed check of the data-parallel model on this machine's CPU (gloo over loopback).

1. **All-reduce microbenchmark** (`calibrate_allreduce`): 2 processes, gloo, 127.0.0.1; all-reduce of
   fp32 tensors from 4 KB to 64 MB; the median time per size is fitted (least squares on relative
   error) to the ring formula for p = 2 ranks, T(n) = n / B + 2 alpha, giving the link's bandwidth B and
   latency alpha, saved as the link profile `local-gloo-loopback` (`hardware_profiles/links/calibrated/`). No
   training run is used for this fit.
2. **DDP training** (`measure_ddp`): `world` processes x `threads` intra-op threads each, the network
   built by `perfmodel.torch.to_module`, wrapped in DistributedDataParallel (default buckets), SGD;
   warm-up steps, then timed steps (zero_grad, forward + loss, backward with the bucketed gradient
   all-reduce, optimizer step), timed on every rank; the step time is the slowest rank's.
3. **Prediction** (`predict_ddp`): the calibrated CPU profile of this machine (`perfmodel calibrate`)
   on a node of `world` worker processes sharing the CPU (each with its own `threads` cores and an
   equal share of the memory bandwidth), joined by the fitted loopback link:
   per-process compute from the single-device model, DDP's bucket copies and bucket schedule, and the
   ring all-reduce from the fitted alpha-beta.
4. **Suite** (`run_ddp_suite`): the cases below, measurements appended to
   validation/measurements/ddp-cpu.jsonl, report in validation/reports/ddp-cpu/.

Communication on CPUs: gloo moves the data with the same cores that compute (TCP copies through the
kernel), so with every core busy computing, an all-reduce cannot run "for free" behind backward.
The prediction therefore sets overlap by CPU headroom: overlapped only when the processes leave at
least one idle core (`CPU_COMM_OVERLAP_NEEDS_IDLE_CORE`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..errors import InputError, NotFoundError
from ..graph.io import load_network
from ..graph.layer_graph import LayerGraph
from ..hardware.schema import Device, Link
from ..hardware.topology import Node

LINK_NAME = "local-gloo-loopback"
SIZES_BYTES = tuple(4 * 1024 * 4**i for i in range(8))  # 4 KiB .. 64 MiB
SUITE = "ddp-cpu"
TARGET_PCT = 15.0
# On CPUs gloo's transfers need a core; overlap with backward is only possible with a spare one.
CPU_COMM_OVERLAP_NEEDS_IDLE_CORE = True


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
            mp.spawn(fn, args=(world, port, d, *args), nprocs=world, join=True)
            return [json.loads((Path(d) / f"rank{r}.json").read_text()) for r in range(world)]
    finally:
        if env_before is None:
            os.environ.pop("GLOO_SOCKET_IFNAME", None)
        else:
            os.environ["GLOO_SOCKET_IFNAME"] = env_before


def _write(out_dir: str, rank: int, obj: Any) -> None:
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(obj))


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
    _write(out_dir, rank, res)


def fit_alpha_beta(points: Sequence[tuple[float, float]], ranks: int = 2) -> tuple[float, float]:
    """(latency alpha, bandwidth B) of the ring all-reduce formula fitted to (bytes, seconds) points.

    T(n) = 2(p-1)/p * n/B + 2(p-1) alpha is linear in n: T = c0 + c1 n, fitted by least squares on the
    relative error (each point weighted by 1/T), so that small and large messages count alike.
    """
    if len(points) < 2:
        raise InputError("need at least two (bytes, seconds) points to fit alpha and beta")
    import numpy as np

    n = np.array([p[0] for p in points], dtype=float)
    t = np.array([p[1] for p in points], dtype=float)
    w = 1.0 / t
    A = np.stack([np.ones_like(n), n], axis=1) * w[:, None]
    c0, c1 = np.linalg.lstsq(A, t * w, rcond=None)[0]
    if c1 <= 0:
        raise InputError("all-reduce times do not grow with the message size; cannot fit a bandwidth")
    c0 = max(0.0, float(c0))
    p = ranks
    alpha = c0 / (2 * (p - 1))
    bandwidth = 2 * (p - 1) / p / float(c1)
    return alpha, bandwidth


@dataclass(frozen=True)
class LinkCalibration:
    alpha_s: float
    bandwidth_Bps: float
    points: tuple[tuple[int, float], ...]  # (bytes, median seconds)
    threads: int
    machine: dict[str, Any]
    created_utc: str

    def link(self) -> Link:
        return Link(name=LINK_NAME, type="loopback", source=self.source, bandwidth=self.bandwidth_Bps,
                    latency=self.alpha_s, efficiency=1.0, notes=self.notes)

    @property
    def source(self) -> str:
        return (f"measured on {self.machine.get('cpu_model', '?')} by perfmodel.torch.ddp.calibrate_allreduce: gloo "
                f"all-reduce, 2 processes x {self.threads} thread over 127.0.0.1, torch "
                f"{self.machine.get('torch_version', '?')}, {self.created_utc}")

    @property
    def notes(self) -> str:
        pts = ", ".join(f"{n / 1024:.0f} KiB: {t * 1e6:.0f} us" for n, t in self.points)
        return ("alpha-beta fit of T(n) = n/B + 2 alpha (ring all-reduce, p = 2) by least squares on relative error "
                f"to the median all-reduce time per size ({pts}). efficiency 1.0: the fit already is the achieved "
                "rate. Valid for this machine only.")

    def residuals_pct(self) -> list[float]:
        from ..parallel.collectives import ring_allreduce

        return [100.0 * (ring_allreduce(n, 2, self.bandwidth_Bps, self.alpha_s) - t) / t for n, t in self.points]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["residuals_pct"] = self.residuals_pct()
        return d


def calibrate_allreduce(sizes: Sequence[int] = SIZES_BYTES, threads: int = 1, world: int = 2) -> LinkCalibration:
    """Run the gloo all-reduce microbenchmark over loopback and fit alpha and beta."""
    from .measure import machine_info

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

    from ..paths import repo_root

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
    _write(out_dir, rank, out)


def straggler_cv_from_runs(per_rank: Sequence[Sequence[float]]) -> float:
    """Coefficient of variation that makes the straggler model's expected maximum match repeated runs of the same
    work in every rank at once (`per_rank[r][i]`: rank r's time in repetition i).

    The measured wait is E[max over ranks] / E[mean over ranks] - 1 of each repetition; the model's is
    cv x E[max of N standard normals] (perfmodel.parallel.sync_modes), hence cv = wait / E[max].
    """
    from ..parallel.sync_modes import expected_max_normal

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

    from ..graph.io import network_from_dict
    from .to_module import make_batch, to_module

    graph = network_from_dict(graph_data)
    torch.manual_seed(seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
    model = DDP(to_module(graph))
    model.train()
    x, y = make_batch(graph, batch, seed=seed + rank)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    dist.barrier()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    dist.barrier()
    dist.destroy_process_group()
    _write(out_dir, rank, times)


def _graph_dict(graph: LayerGraph) -> dict:
    from ..graph.io import network_to_dict

    return network_to_dict(graph, flat=True)


@dataclass(frozen=True)
class DDPMeasurement:
    network: str
    batch: int  # per process
    world: int
    threads: int
    warmup: int
    steps: int
    params: int
    rank_step_times_s: tuple[tuple[float, ...], ...]
    step_times_s: tuple[float, ...]  # per step: the slowest rank
    median_s: float
    p10_s: float
    p90_s: float
    machine: dict[str, Any]
    created_utc: str
    load_avg_before: tuple[float, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(schema="perfmodel.measurement/1", kind="ddp_training_step", suite=SUITE, device="cpu",
                 dtype="fp32", optimizer="sgd", backend="gloo")
        return d


def _loadavg():
    try:
        return tuple(os.getloadavg())
    except OSError:
        return None


def measure_ddp(network: str | Path | LayerGraph, batch: int, *, world: int = 2, threads: int = 1, warmup: int = 3,
                steps: int = 10, seed: int = 0) -> DDPMeasurement:
    """Time DDP training steps of `network` with `world` gloo processes x `threads` threads on this CPU."""
    from .measure import machine_info, summarize_times

    graph = load_network(network)
    if batch < 1 or steps < 1 or warmup < 0 or world < 1 or threads < 1:
        raise InputError("batch, steps, world and threads must be >= 1 and warmup >= 0")
    la = _loadavg()
    res = _spawn(_ddp_worker, world, (_graph_dict(graph), batch, warmup, steps, threads, seed))
    per_step = [max(r[i] for r in res) for i in range(steps)]
    s = summarize_times(per_step)
    from ..ops.base import graph_costs

    params = sum(c.params for c in graph_costs(graph, 1, 4))
    return DDPMeasurement(graph.name, batch, world, threads, warmup, steps, params,
                          tuple(tuple(r) for r in res), tuple(per_step), s["median_s"], s["p10_s"], s["p90_s"],
                          machine_info(threads).model_dump(),
                          _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), la)


# ---------------------------------------------------------------------------------------------------
# 3. prediction


def local_node(device: Device, link: Link, world: int = 2, host_memory_bytes: float | None = None,
               process_speed: float | None = None, memory_speed: float | None = None) -> Node:
    """`world` worker processes on this machine's CPU, exchanging data over the loopback link."""
    if host_memory_bytes is None:
        try:
            host_memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            host_memory_bytes = device.memory_bytes
    return Node(name=f"local-{world}proc-gloo", source=f"{world} worker processes on this machine, gloo over loopback",
                device=device, devices=world, host_memory=host_memory_bytes, fabric_type="loopback", fabric=link,
                process_speed=process_speed, memory_speed=memory_speed)


def predict_ddp(network: str | Path | LayerGraph, batch: int, device: Device, link: Link, *, world: int = 2,
                threads: int = 1, overlap: bool | None = None, process_speed: float | None = None,
                memory_speed: float | None = None, straggler_cv: float = 0.0):
    """Predicted DDP step (a Prediction) for `world` processes x `threads` threads on `device`; the synchronous
    step waits for the slowest process (straggler_cv, see perfmodel.parallel.sync_modes)."""
    from ..prediction import predict

    if overlap is None:
        cores = device.cores or 1
        overlap = not (CPU_COMM_OVERLAP_NEEDS_IDLE_CORE and world * threads >= cores)
    return predict(load_network(network), local_node(device, link, world, process_speed=process_speed,
                                                     memory_speed=memory_speed),
                   batch=batch, devices=world,
                   threads=threads, optimizer="sgd", overlap=overlap, straggler_cv=straggler_cv, layers=False)


# ---------------------------------------------------------------------------------------------------
# 4. the suite


@dataclass(frozen=True)
class DDPCase:
    name: str
    network: str  # built-in name or path relative to the repository root
    batch: int  # per process
    world: int = 2
    threads: int = 1
    steps: int = 15
    warmup: int = 3


CASES = (
    DDPCase("mlp-b64", "validation/networks/mlp.yaml", 64),
    DDPCase("mlp-b256", "validation/networks/mlp.yaml", 256, steps=8),
    DDPCase("cnn-vgg-small-b24", "validation/networks/vgg_small.yaml", 24, steps=8),
    DDPCase("cnn-resnet-small-b32", "validation/networks/resnet_small.yaml", 32, steps=8),
    DDPCase("autoencoder-b128", "autoencoder", 128),
    DDPCase("lstm-b64", "validation/networks/lstm.yaml", 64, steps=8),
)
SUITE_ROUNDS = 3  # each case is measured in this many rounds, round-robin over the cases, and the step times pooled
IDLE_FRACTION = 0.9  # before a measurement, wait (up to IDLE_WAIT_S) until the CPU is this idle for a few seconds
IDLE_WAIT_S = 300.0
PROCESS_SPEED_RUNS = 3  # the contention microbenchmark is repeated and the median kept


def _cpu_idle_fraction(dt: float = 1.0) -> float | None:
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)

    try:
        a = snap()
        time.sleep(dt)
        b = snap()
    except OSError:
        return None
    return (b[0] - a[0]) / max(1, b[1] - a[1])


def wait_for_idle(fraction: float = IDLE_FRACTION, max_wait_s: float = IDLE_WAIT_S, sustained: int = 3) -> float | None:
    """Wait until the CPU has been `fraction` idle for `sustained` consecutive seconds (at most `max_wait_s`).

    Returns the last idle fraction seen (None where /proc/stat is unreadable).
    """
    t0 = time.monotonic()
    ok = 0
    f = None
    while time.monotonic() - t0 < max_wait_s:
        f = _cpu_idle_fraction()
        if f is None:
            return None
        ok = ok + 1 if f >= fraction else 0
        if ok >= sustained:
            break
    return f


def pool(ms: Sequence[DDPMeasurement]) -> DDPMeasurement:
    """One measurement from several rounds of the same case: step times pooled."""
    from .measure import summarize_times

    first = ms[0]
    steps = tuple(t for m in ms for t in m.step_times_s)
    s = summarize_times(steps)
    ranks = tuple(tuple(t for m in ms for t in m.rank_step_times_s[r]) for r in range(first.world))
    return DDPMeasurement(first.network, first.batch, first.world, first.threads, first.warmup, len(steps),
                          first.params, ranks, steps, s["median_s"], s["p10_s"], s["p90_s"], first.machine,
                          first.created_utc, first.load_avg_before)


@dataclass(frozen=True)
class DDPCaseResult:
    case: DDPCase
    measured: DDPMeasurement
    predicted_s: float
    breakdown: dict[str, float]
    parallel: dict[str, Any]
    single: dict[str, float] | None = None  # diagnostic: one process, no DDP, measured and predicted

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_s - self.measured.median_s) / self.measured.median_s

    def to_dict(self) -> dict[str, Any]:
        return {"case": asdict(self.case), "measured_median_s": self.measured.median_s,
                "measured_p10_s": self.measured.p10_s, "measured_p90_s": self.measured.p90_s,
                "predicted_s": self.predicted_s, "error_pct": self.error_pct, "breakdown": self.breakdown,
                "communication": {k: self.parallel.get(k) for k in (
                    "gradient_sync_s", "exposed_communication_s", "hidden_communication_s", "buckets", "overlap")},
                "params": self.measured.params, "load_avg_before": self.measured.load_avg_before,
                "single_process_reference": self.single}


@dataclass
class DDPSuiteResult:
    suite: str
    profile: str
    profile_source: str
    link: LinkCalibration
    link_path: str | None
    cases: list[DDPCaseResult] = field(default_factory=list)
    measurements_path: str | None = None
    report_dir: str | None = None
    process_speed: float | None = None
    process_benchmark: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        errs = [abs(c.error_pct) for c in self.cases]
        if not errs:
            return {"cases": 0}
        srt = sorted(errs)
        worst = max(self.cases, key=lambda c: abs(c.error_pct))
        return {"cases": len(errs), "median_abs_error_pct": statistics.median(errs),
                "mean_abs_error_pct": statistics.fmean(errs),
                "p90_abs_error_pct": srt[min(len(srt) - 1, math.ceil(0.9 * len(srt)) - 1)],
                "worst_case": worst.case.name, "worst_abs_error_pct": abs(worst.error_pct),
                "within_target": sum(e <= TARGET_PCT for e in errs), "target_pct": TARGET_PCT}

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "profile": self.profile, "profile_source": self.profile_source,
                "link": self.link.to_dict(), "link_path": self.link_path, "summary": self.summary(),
                "cases": [c.to_dict() for c in self.cases], "measurements_path": self.measurements_path,
                "process_speed": self.process_speed, "process_benchmark": self.process_benchmark,
                "report_dir": self.report_dir, "notes": self.notes}

    def text(self) -> str:
        lines = [f"{self.suite}: {len(self.cases)} cases, profile {self.profile}, link {LINK_NAME} "
                 f"(alpha {self.link.alpha_s * 1e6:.1f} us, B {self.link.bandwidth_Bps / 1e9:.2f} GB/s)", ""]
        lines.append(f"{'case':24s} {'measured ms':>12s} {'predicted ms':>13s} {'error':>8s}")
        for c in self.cases:
            lines.append(f"{c.case.name:24s} {c.measured.median_s * 1e3:12.1f} {c.predicted_s * 1e3:13.1f} "
                         f"{c.error_pct:+7.1f}%")
        s = self.summary()
        if s.get("cases"):
            lines += ["", f"median |error| {s['median_abs_error_pct']:.1f}%, worst {s['worst_abs_error_pct']:.1f}% "
                      f"({s['worst_case']}); within {TARGET_PCT:.0f}%: {s['within_target']}/{s['cases']}"]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _repo_path(rel: str) -> Path:
    from ..paths import repo_root

    root = repo_root() or Path.cwd()
    return root / rel


def _resolve_network(spec: str) -> str | Path:
    p = _repo_path(spec)
    return p if p.suffix in (".yaml", ".yml", ".json") and p.exists() else spec


def run_ddp_suite(report_dir: str | Path | None = None, measurements_path: str | Path | None = None, *,
                  cases: Sequence[DDPCase] | Sequence[str] | None = None, profile: Device | str | None = None,
                  link: Link | str | None = None, recalibrate_link: bool = True, save_link_profile: bool = True,
                  steps: int | None = None, warmup: int | None = None, rounds: int = SUITE_ROUNDS,
                  process_speed: float | None = None, wait_idle: bool = True,
                  single_process_reference: bool = True, progress: TextIO | None = sys.stderr) -> DDPSuiteResult:
    """Run the ddp-cpu suite: microbenchmarks (link, process contention), DDP cases, predictions, report.

    Every measurement is appended to `measurements_path` (default validation/measurements/ddp-cpu.jsonl)
    under one run id; the report (default folder validation/reports/ddp-cpu) is then built from those
    records by `report_from_measurements`, which can also rebuild it later without measuring again.
    profile: the CPU profile to predict with (default: the calibrated profile of this machine).
    link / process_speed: given, they replace the corresponding microbenchmark.
    """
    from .measure import append_jsonl

    def say(msg: str) -> None:
        if progress is not None:
            print(msg, file=progress, flush=True)

    dev = _profile_device(profile)
    meas_path = Path(measurements_path) if measurements_path else _repo_path("validation/measurements/ddp-cpu.jsonl")
    run_id = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    base = {"schema": "perfmodel.measurement/1", "suite": SUITE, "run_id": run_id}
    # the link: fitted here from the all-reduce microbenchmark (never from the training runs)
    link_path = None
    lk: Link | None = None
    if isinstance(link, Link):
        lk = link
    elif isinstance(link, str):
        from ..hardware.loader import load_hardware

        lk = load_hardware(link, kind="link")
    else:
        say("all-reduce microbenchmark (gloo, 2 processes, 4 KiB .. 64 MiB) ...")
        if wait_idle:
            wait_for_idle()
        cal = calibrate_allreduce()
        append_jsonl(meas_path, {**base, "kind": "allreduce_microbenchmark", "backend": "gloo", "world": 2,
                                 **cal.to_dict()})
        if save_link_profile:
            link_path = str(save_link(cal))
        say(f"  alpha {cal.alpha_s * 1e6:.1f} us, bandwidth {cal.bandwidth_Bps / 1e9:.2f} GB/s")
    # how fast each process computes while all of them run (a microbenchmark, not the training runs)
    if process_speed is None:
        say("process contention microbenchmark (GEMM and convolution alone vs in both processes at once) ...")
        runs = []
        for _ in range(PROCESS_SPEED_RUNS):
            if wait_idle:
                wait_for_idle()
            runs.append(calibrate_process_speed())
        proc = sorted(runs, key=lambda r: r["process_speed"])[len(runs) // 2]
        proc["runs"] = [r["process_speed"] for r in runs]
        proc["straggler_cv_runs"] = [r["straggler_cv"] for r in runs]
        proc["straggler_cv"] = statistics.median(proc["straggler_cv_runs"])
        proc["memory_speed_runs"] = [r["memory_speed"] for r in runs]
        proc["memory_speed"] = statistics.median(proc["memory_speed_runs"])
        append_jsonl(meas_path, {**base, "kind": "process_contention_microbenchmark", **proc})
        say(f"  each of 2 processes computes at {proc['process_speed']:.2f} x the speed of a lone one, "
            f"{proc['memory_speed']:.2f} x on memory-bound work; straggler cv {proc['straggler_cv']:.3f}")
    sel: list[DDPCase] = []
    for c in (cases or CASES):
        if isinstance(c, DDPCase):
            sel.append(c)
        else:
            found = [k for k in CASES if k.name == c or k.network == c]
            if not found:
                raise NotFoundError(f"unknown ddp-cpu case '{c}'; known: {', '.join(k.name for k in CASES)}")
            sel.extend(found)
    if steps is not None or warmup is not None:
        from dataclasses import replace

        sel = [replace(c, steps=steps or c.steps, warmup=c.warmup if warmup is None else warmup) for c in sel]
    for r in range(rounds):
        for c in sel:
            idle = wait_for_idle() if wait_idle else None
            say(f"round {r + 1}/{rounds}, case {c.name}: {c.world} processes x {c.threads} thread, batch {c.batch} "
                f"per process ...")
            m = measure_ddp(_resolve_network(c.network), c.batch, world=c.world, threads=c.threads, warmup=c.warmup,
                            steps=c.steps)
            append_jsonl(meas_path, {**m.to_dict(), **base, "case": c.name, "case_spec": asdict(c), "round": r + 1,
                                     "idle_fraction_before": idle})
            say(f"  median {m.median_s * 1e3:.1f} ms")
            if single_process_reference:
                # diagnostic only (never used by the prediction): the same step in one process, no DDP
                from .measure import measure_training

                sm = measure_training(_resolve_network(c.network), c.batch, threads=c.threads, warmup=c.warmup,
                                      steps=c.steps)
                append_jsonl(meas_path, {**sm.to_json_dict(), **base, "case": c.name, "round": r + 1,
                                         "role": "single-process reference (diagnostic)"})
    res = report_from_measurements(meas_path, run_id, profile=dev, report_dir=report_dir, link=lk,
                                   process_speed=process_speed)
    res.link_path = link_path
    write_report(res, Path(res.report_dir))
    for c in res.cases:
        say(f"{c.case.name}: measured {c.measured.median_s * 1e3:.1f} ms, predicted {c.predicted_s * 1e3:.1f} ms "
            f"({c.error_pct:+.1f}%)")
    return res


def _profile_device(profile: Device | str | None) -> Device:
    if profile is None:
        from ..validation.suites import find_calibrated_profile

        return find_calibrated_profile("cpu")
    if isinstance(profile, Device):
        return profile
    from ..hardware.loader import load_hardware

    return load_hardware(profile, kind="device")


def report_from_measurements(measurements_path: str | Path | None = None, run_id: str | None = None, *,
                             profile: Device | str | None = None, report_dir: str | Path | None = None,
                             link: Link | None = None, process_speed: float | None = None,
                             write: bool = True) -> DDPSuiteResult:
    """Predict every case of one stored suite run (default: the latest) and write its report.

    The link (alpha, B) and the process speed come from that run's microbenchmark records unless given.
    """
    from .measure import read_jsonl

    dev = _profile_device(profile)
    meas_path = Path(measurements_path) if measurements_path else _repo_path("validation/measurements/ddp-cpu.jsonl")
    rep_dir = Path(report_dir) if report_dir else _repo_path("validation/reports/ddp-cpu")
    recs = [r for r in read_jsonl(meas_path) if r.get("suite") == SUITE and r.get("run_id")]
    if run_id is None:
        if not recs:
            raise NotFoundError(f"no ddp-cpu suite run in {meas_path}")
        run_id = max(r["run_id"] for r in recs)
    recs = [r for r in recs if r["run_id"] == run_id]
    ar = [r for r in recs if r.get("kind") == "allreduce_microbenchmark"]
    pc = [r for r in recs if r.get("kind") == "process_contention_microbenchmark"]
    if link is None:
        if not ar:
            raise NotFoundError(f"run {run_id} has no all-reduce microbenchmark; pass link=")
        a = ar[-1]
        cal = LinkCalibration(a["alpha_s"], a["bandwidth_Bps"], tuple((int(n), t) for n, t in a["points"]),
                              a["threads"], a["machine"], a["created_utc"])
        lk = cal.link()
    else:
        lk = link
        cal = LinkCalibration(lk.latency_s, lk.effective_bandwidth_Bps, (), 1, {}, "")
    proc = pc[-1] if pc else None
    memory_speed = None  # the measured straggler_cv is reported, not used (see CONTENTION_STREAM's note)
    if process_speed is None and proc is not None:
        process_speed = proc["process_speed"]
        memory_speed = proc.get("memory_speed")  # runs before it was measured: an equal share of the bandwidth
    res = DDPSuiteResult(SUITE, dev.name, dev.source, cal, None, measurements_path=str(meas_path),
                         report_dir=str(rep_dir), process_speed=process_speed,
                         process_benchmark={k: v for k, v in proc.items() if k not in ("schema", "suite", "run_id", "kind")}
                         if proc else None)
    res.notes.append(f"suite run {run_id}")
    ddp = [r for r in recs if r.get("kind") == "ddp_training_step"]
    singles = [r for r in recs if r.get("role", "").startswith("single-process")]
    names = list(dict.fromkeys(r["case"] for r in ddp))
    spreads, idles = [], []
    for name in names:
        rs = [r for r in ddp if r["case"] == name]
        c = DDPCase(**rs[0]["case_spec"])
        ms = [DDPMeasurement(**{k: (tuple(tuple(x) for x in r[k]) if k == "rank_step_times_s" else
                                    tuple(r[k]) if k in ("step_times_s", "load_avg_before") and r[k] is not None
                                    else r[k]) for k in DDPMeasurement.__dataclass_fields__}) for r in rs]
        m = pool(ms)
        spreads.append(max(x.median_s for x in ms) / min(x.median_s for x in ms) - 1)
        idles += [r["idle_fraction_before"] for r in rs if r.get("idle_fraction_before") is not None]
        net = _resolve_network(c.network)
        p = predict_ddp(net, c.batch, dev, lk, world=c.world, threads=c.threads, process_speed=process_speed,
                        memory_speed=memory_speed)
        st = [t for r in singles if r["case"] == name for t in r["step_times_s"]]
        ref = None
        if st:
            from ..prediction import predict as _predict

            ref = {"measured_s": statistics.median(st),
                   "predicted_s": _predict(load_network(net), dev, batch=c.batch, threads=c.threads,
                                           layers=False).iteration_time_s}
        res.cases.append(DDPCaseResult(c, m, p.iteration_time_s, dict(p.breakdown), dict(p.parallel or {}), ref))
    rounds = max((r.get("round", 1) for r in ddp), default=1)
    if rounds > 1 and spreads:
        res.notes.append(f"each case measured in {rounds} rounds (round-robin over the cases), step times pooled; the "
                         f"largest difference between two rounds' medians of one case was {100 * max(spreads):.0f}%")
    if idles:
        res.notes.append(f"before each measurement the CPU was {min(idles):.0%}-{max(idles):.0%} idle "
                         "(other processes share this machine)")
    if CPU_COMM_OVERLAP_NEEDS_IDLE_CORE:
        res.notes.append("gradient all-reduce not overlapped with backward when the processes use every core "
                         "(gloo needs a core to move data)")
    if write:
        write_report(res, rep_dir)
    return res


def write_report(res: DDPSuiteResult, report_dir: Path) -> Path:
    """report.md and results.json in `report_dir`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results.json").write_text(json.dumps(res.to_dict(), indent=1, default=str), encoding="utf-8")
    s = res.summary()
    cal = res.link
    L = ["# ddp-cpu: torch.distributed data parallel on this CPU, predicted vs measured", ""]
    mach = (res.cases[0].measured.machine if res.cases else cal.machine) or {}
    L += [f"Machine: {mach.get('cpu_model', '?')}, {mach.get('physical_cores', '?')} physical cores, torch "
          f"{mach.get('torch_version', '?')}, gloo over 127.0.0.1.", "",
          f"Compute profile: `{res.profile}` ({res.profile_source}).", "",
          "## Link: all-reduce microbenchmark (the only input fitted here)", "",
          f"gloo all-reduce of fp32 tensors between 2 processes, median per size (slowest rank per repetition); "
          f"least-squares fit of T(n) = n/B + 2 alpha (ring, p = 2) on relative error: "
          f"**alpha = {cal.alpha_s * 1e6:.1f} us, B = {cal.bandwidth_Bps / 1e9:.2f} GB/s**"
          + (f", saved as `{Path(res.link_path).name}`." if res.link_path else "."), ""]
    if cal.points:
        L += ["| bytes | measured | fitted | error |", "|---:|---:|---:|---:|"]
        for (n, t), e in zip(cal.points, cal.residuals_pct()):
            L.append(f"| {n / 1024:.0f} KiB | {t * 1e6:.0f} us | {t * (1 + e / 100) * 1e6:.0f} us | {e:+.1f}% |")
        L.append("")
    if res.process_speed is not None:
        pb = res.process_benchmark
        L += ["## Processes sharing the CPU (microbenchmark)", "",
              (f"A {pb['gemm_n']}^3 fp32 GEMM takes {pb['gemm']['alone_s'] * 1e3:.2f} ms in one process alone and "
               f"{pb['gemm']['together_s'] * 1e3:.2f} ms in each of {pb['world']} processes running it at once; a 3x3 "
               f"convolution ({pb['conv_shape']}) {pb['conv']['alone_s'] * 1e3:.2f} ms and "
               f"{pb['conv']['together_s'] * 1e3:.2f} ms. Geometric mean of the two ratios (median of "
               f"{len(pb.get('runs', [1]))} runs: {', '.join(f'{x:.2f}' for x in pb.get('runs', []))}): "
               if pb else "") + f"**each process computes at {res.process_speed:.2f} x the speed of a lone one** "
              "(the node's `process_speed`).", ""]
        if pb and "memory_speed" in pb:
            adds = [k for k in pb if k.startswith("add")]
            L += ["Memory-bound work: c = a + b over fp32 tensors of " + ", ".join(
                      f"{int(k[3:]) * 4 / 2**20:.0f} MiB ({pb[k]['speed']:.2f})" for k in adds)
                  + f" each, alone vs in both processes at once (speed ratio in brackets); geometric mean, median of "
                  f"{len(pb.get('memory_speed_runs', [1]))} runs: **{pb['memory_speed']:.2f} x a lone process's speed "
                  "on memory-bound work** (the node's `memory_speed`: it scales the memory bandwidth and the calibrated "
                  "elementwise rates; the processes share the last-level cache and DRAM).", ""]
        elif pb:
            L += ["Memory-bound work: not measured in this run; each process gets an equal share of the memory "
                  "bandwidth.", ""]
        if pb and "straggler_cv" in pb:
            from ..parallel.sync_modes import expected_max_normal

            per_k = ", ".join(f"{k} {pb[k]['straggler_cv']:.3f}" for k in ("gemm", "conv") if "straggler_cv" in pb.get(k, {}))
            L += [f"The processes do not go equally fast: over the runs together, the slower process takes on average "
                  f"{pb['straggler_cv'] * expected_max_normal(pb['world']) * 100:.1f}% longer than the mean of the two, "
                  f"straggler_cv = {pb['straggler_cv']:.3f} (median of runs: "
                  f"{', '.join(f'{x:.3f}' for x in pb.get('straggler_cv_runs', []))}; per kernel in the kept run: "
                  f"{per_k}). Reported, not used: this estimate is unstable (0.06 to 0.24 between runs; one kernel "
                  "can run much slower in one process throughout a run while the other kernel runs evenly), so the "
                  "prediction uses straggler_cv = 0.", ""]
    L += ["## Training steps", "",
          "DistributedDataParallel (default 25 MiB buckets, 1 MiB first bucket), SGD, fp32; step = zero_grad, "
          "forward + loss, backward (with the bucketed all-reduce), optimizer step; the slowest rank per step; "
          "median over the timed steps after warm-up. The prediction uses the calibrated CPU profile at 1 thread "
          "per process, the process and memory speeds and the fitted link above; nothing is fitted to these runs.", "",
          "| case | network | params | batch/process | processes x threads | measured ms (p10-p90) | predicted ms | "
          "error | predicted compute / comm exposed / comm hidden / straggler ms |",
          "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for c in res.cases:
        m = c.measured
        comp = sum(c.breakdown.get(k, 0.0) for k in ("compute", "memory", "overhead"))
        L.append(f"| {c.case.name} | {m.network} | {m.params:,} | {c.case.batch} | {c.case.world} x {c.case.threads} | "
                 f"{m.median_s * 1e3:.1f} ({m.p10_s * 1e3:.1f}-{m.p90_s * 1e3:.1f}) | {c.predicted_s * 1e3:.1f} | "
                 f"{c.error_pct:+.1f}% | {comp * 1e3:.1f} / {c.breakdown.get('communication', 0) * 1e3:.1f} / "
                 f"{(c.parallel.get('hidden_communication_s') or 0) * 1e3:.1f} / "
                 f"{c.breakdown.get('straggler', 0) * 1e3:.1f} |")
    L.append("")
    if s.get("cases"):
        L += [f"Absolute error: median {s['median_abs_error_pct']:.1f}%, mean {s['mean_abs_error_pct']:.1f}%, "
              f"p90 {s['p90_abs_error_pct']:.1f}%, worst {s['worst_abs_error_pct']:.1f}% ({s['worst_case']}); "
              f"{s['within_target']} of {s['cases']} cases within the {TARGET_PCT:.0f}% target.", ""]
    if any(c.single for c in res.cases):
        L += ["### Diagnostic: the same step in one process (not used by the prediction)", "",
              "Each round also timed the step in a single process without DDP (1 thread). This separates the error "
              "of the single-device CPU model from the error of the distributed part (all-reduce, DDP copies, two "
              "processes on one CPU).", "",
              "| case | 1 process measured ms | 1 process predicted ms | single-device error | DDP - 1 process measured ms "
              "| DDP - 1 process predicted ms |", "|---|---:|---:|---:|---:|---:|"]
        for c in res.cases:
            if not c.single:
                continue
            sm, sp = c.single["measured_s"], c.single["predicted_s"]
            L.append(f"| {c.case.name} | {sm * 1e3:.1f} | {sp * 1e3:.1f} | {100 * (sp - sm) / sm:+.1f}% | "
                     f"{(c.measured.median_s - sm) * 1e3:+.1f} | {(c.predicted_s - sp) * 1e3:+.1f} |")
        L.append("")
    for n in res.notes:
        L.append(f"- {n}")
    L += ["", f"Measurements (append-only JSONL): `{Path(res.measurements_path).name if res.measurements_path else ''}`. "
          "Regenerate with `perfmodel validate --suite ddp-cpu` (or `perfmodel.torch.ddp.run_ddp_suite()`).", ""]
    p = report_dir / "report.md"
    p.write_text("\n".join(L), encoding="utf-8")
    (report_dir / "README_SECTION.md").write_text(readme_section(res), encoding="utf-8")
    return p


def readme_section(res: DDPSuiteResult) -> str:
    """A short markdown section with the suite's figures, for the project README."""
    s = res.summary()
    cal = res.link
    L = ["### ddp-cpu: torch.distributed data parallel (gloo, 2 processes on this CPU)", "",
         f"Link fitted from a gloo all-reduce microbenchmark only: alpha {cal.alpha_s * 1e6:.0f} us, "
         f"B {cal.bandwidth_Bps / 1e9:.2f} GB/s; compute from the calibrated profile `{res.profile}`.", "",
         "| case | measured ms | predicted ms | error |", "|---|---:|---:|---:|"]
    for c in res.cases:
        L.append(f"| {c.case.name} | {c.measured.median_s * 1e3:.1f} | {c.predicted_s * 1e3:.1f} | {c.error_pct:+.1f}% |")
    if s.get("cases"):
        L += ["", f"Median absolute error {s['median_abs_error_pct']:.1f}%, worst {s['worst_abs_error_pct']:.1f}% "
              f"({s['worst_case']}); {s['within_target']}/{s['cases']} within {TARGET_PCT:.0f}%. "
              "Full report: validation/reports/ddp-cpu/report.md."]
    return "\n".join(L) + "\n"
