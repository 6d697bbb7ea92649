"""Calibration microbenchmarks: time GEMMs, convolutions, elementwise/copy passes, dispatch and an optimizer
step with torch, then fit the device profile with `perfmodel.calibration_fit` (pure, tested separately).

Nothing here uses a validation network: the shapes below are a generic grid (seeded random GEMM
shapes, a list of convolution shapes, power-of-two sizes for memory passes).

    from perfmodel.torch.calibrate import calibrate
    result = calibrate("hardware_profiles/devices/my-cpu.yaml", device="cpu", threads=2)
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TextIO

import torch
import torch.nn.functional as F

from ..calibration_fit import FitOptions, FitResult, Sample, fit_profile, profile_dict, residuals
from ..validation.quiet import Interference, wait_for_quiet
from ..machine import cpu_model_name

# --- timing -----------------------------------------------------------------------------------------

MIN_TIME_S = 0.01  # each repeat runs the op back to back for at least this long
REPEATS = 7  # repeats per sample; the sample's time is the median repeat (see time_call)
QUICK_MIN_TIME_S = 0.006
QUICK_REPEATS = 4
# a shared machine: wait (up to QUIET_MAX_WAIT_S) for QUIET_IDLE idle before starting, and repeat a sample
# (up to RETRIES times, after waiting up to RETRY_WAIT_S for quiet) when other processes kept more than
# DISTURBED_CORES cores busy while it ran; the attempt with the fastest median is kept
QUIET_IDLE = 0.85
QUIET_MAX_WAIT_S = 60.0
DISTURBED_CORES = 0.1
RETRIES = 3
RETRY_WAIT_S = 5.0
RETRY_BUDGET_S = 60.0  # at most this much waiting and repeating per calibration run


def _sync_fn(device: str) -> Callable[[], None]:
    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def time_call(fn: Callable[[], Any], sync: Callable[[], None], min_time: float = MIN_TIME_S,
              repeats: int = REPEATS) -> tuple[float, tuple[float, ...]]:
    """Seconds per call of `fn`: the median of `repeats` repeats of back-to-back calls lasting >= min_time each.

    The median, the statistic the validation suites report for training steps: a profile fitted to the
    fastest repeats describes the machine at its best moment and predicts every step too fast on a shared
    machine (on the 2-core KVM guest the median repeat was 4-7% slower than the fastest, 10-20% at p90).
    Every repeat is kept in the sample for the record, so `refit` can use another statistic.
    """
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(min_time / one))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times), tuple(times)


# --- the benchmark grid -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bench:
    """One benchmark to run at one thread count: `make(device, dtype)` returns (fn, flops, bytes, kernels)."""

    family: str
    label: str
    dtype: str
    make: Callable[[str, torch.dtype], tuple[Callable[[], Any], float, float, int]]
    threads: int = 1
    key: str = ""  # elementwise benchmarks: the Efficiency.elementwise key


_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def gemm_shapes(n: int, seed: int = 20240601, rows: tuple[int, int] = (16, 4096), features: tuple[int, int] = (64, 4096),
                min_flops: float = 2e4, max_flops: float = 2.2e9) -> list[tuple[int, int, int]]:
    """`n` (m, k, n) shapes, sorted by FLOPs, with 2mkn in [min_flops, max_flops]: m (rows: batch x positions)
    and k, n (feature widths) drawn log-uniformly in the given ranges (a generic grid of layer-like GEMMs)."""
    rng = random.Random(seed)
    out: list[tuple[int, int, int]] = []
    tries = 0

    def draw(lo_hi: tuple[int, int]) -> int:
        return int(round(math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1])))))

    while len(out) < n and tries < 100000:
        tries += 1
        m, k, nn = draw(rows), draw(features), draw(features)
        f = 2.0 * m * k * nn
        if min_flops <= f <= max_flops:
            out.append((m, k, nn))
    return sorted(out, key=lambda s: s[0] * s[1] * s[2])


def _gemm(m: int, k: int, n: int, layout: str):
    """layout nn: A[m,k] B[k,n]; nt: A[m,k] B[n,k]^T (a Linear forward); tn: A[k,m]^T B[k,n] (a weight gradient)."""

    def make(device: str, dt: torch.dtype):
        a = torch.randn(k, m, device=device, dtype=dt).t() if layout == "tn" else torch.randn(m, k, device=device, dtype=dt)
        b = torch.randn(n, k, device=device, dtype=dt).t() if layout == "nt" else torch.randn(k, n, device=device, dtype=dt)
        out = torch.empty(m, n, device=device, dtype=dt)
        eb = a.element_size()
        return (lambda: torch.mm(a, b, out=out)), 2.0 * m * k * n, float((m * k + k * n + m * n) * eb), 1

    return make


# (batch, in_channels, height=width, out_channels, kernel, stride, padding, transposed): a generic list of
# the layer types CNNs are built from (3x3 and 5x5 stride 1 from narrow channels at large images to wide
# channels at small ones, 3x3 stride 2, 1x1 and 1x1 stride-2 projections, a 7x7 stride-2 stem, 4x4
# stride-2 down- and transposed up-sampling), tiny to large
CONV_SHAPES: tuple[tuple[int, int, int, int, int, int, int, bool], ...] = (
    (2, 16, 8, 16, 3, 1, 1, False),
    (16, 8, 16, 8, 3, 1, 1, False),
    (24, 16, 48, 16, 3, 1, 1, False),
    (16, 24, 40, 24, 3, 1, 1, False),
    (8, 48, 48, 48, 3, 1, 1, False),
    (12, 64, 28, 64, 3, 1, 1, False),
    (8, 3, 48, 24, 3, 1, 1, False),
    (4, 3, 96, 48, 7, 2, 3, False),
    (8, 24, 24, 48, 3, 1, 1, False),
    (4, 48, 40, 48, 1, 1, 0, False),
    (4, 96, 20, 96, 3, 1, 1, False),
    (4, 96, 20, 192, 3, 2, 1, False),
    (16, 24, 28, 48, 3, 2, 1, False),
    (16, 24, 28, 48, 1, 2, 0, False),
    (8, 96, 14, 192, 1, 2, 0, False),
    (8, 40, 36, 80, 5, 1, 2, False),
    (4, 192, 10, 192, 3, 1, 1, False),
    (16, 384, 5, 384, 3, 1, 1, False),
    (8, 160, 24, 40, 1, 1, 0, False),
    (12, 48, 24, 96, 4, 2, 1, False),
    (12, 96, 6, 48, 4, 2, 1, True),
    (12, 48, 12, 24, 4, 2, 1, True),
    (12, 24, 24, 3, 4, 2, 1, True),
)
QUICK_CONV = (0, 3, 5, 8, 10, 12, 14, 17, 19, 20)


def _conv(nb: int, c: int, hw: int, k_out: int, kernel: int, stride: int, pad: int, transposed: bool, which: str):
    """Forward (`fwd`) or backward (`bwd`: data and weight gradients in one call, as autograd asks for them)
    of a bias-free convolution. The backward sample counts two kernels of the forward's FLOPs each, as the
    conv cost rule does."""

    def make(device: str, dt: torch.dtype):
        x = torch.randn(nb, c, hw, hw, device=device, dtype=dt)
        if transposed:
            w = torch.randn(c, k_out, kernel, kernel, device=device, dtype=dt)
            y = F.conv_transpose2d(x, w, stride=stride, padding=pad)
        else:
            w = torch.randn(k_out, c, kernel, kernel, device=device, dtype=dt)
            y = F.conv2d(x, w, stride=stride, padding=pad)
        dy = torch.randn_like(y)
        macs = (x.numel() if transposed else y.numel()) * (k_out if transposed else c) * kernel * kernel
        eb = x.element_size()
        n_in, n_out, n_w = x.numel(), y.numel(), w.numel()
        args = ([stride] * 2, [pad] * 2, [1, 1], transposed, [0, 0], 1)
        if which == "fwd":
            if transposed:
                fn = lambda: F.conv_transpose2d(x, w, stride=stride, padding=pad)  # noqa: E731
            else:
                fn = lambda: F.conv2d(x, w, stride=stride, padding=pad)  # noqa: E731
            return fn, 2.0 * macs, float((n_in + n_w + n_out) * eb), 1
        if which == "bwd_data":
            fn = lambda: torch.ops.aten.convolution_backward(dy, x, w, None, *args, [True, False, False])  # noqa: E731
            return fn, 2.0 * macs, float((n_out + n_w + n_in) * eb), 1
        if which == "bwd_weight":
            fn = lambda: torch.ops.aten.convolution_backward(dy, x, w, None, *args, [False, True, False])  # noqa: E731
            return fn, 2.0 * macs, float((n_out + n_in + n_w) * eb), 1
        fn = lambda: torch.ops.aten.convolution_backward(dy, x, w, None, *args, [True, True, False])  # noqa: E731
        return fn, 4.0 * macs, float((2 * n_out + n_w + n_in + n_in + n_w) * eb), 2

    return make


_CONV_STAGE = {"fwd": "forward", "bwd_data": "backward_data", "bwd_weight": "backward_weight"}


def conv_passes(shape) -> list[tuple[str, str]]:
    """(pass, stage-factor key) of a conv shape: stride 1 -> forward and the combined backward (they fit the
    conv curve); strided -> forward, backward-data and backward-weight each, keyed for Efficiency.stage_factors
    ("/strided-1x1" for 1x1 kernels, "/strided" for the others)."""
    nb, c, hw, ko, kr, st, pd, tr = shape
    if st == 1:
        return [("fwd", ""), ("bwd", "")]
    op = "conv_transpose2d" if tr else "conv2d"
    suffix = "/strided-1x1" if kr == 1 else "/strided"  # as perfmodel.step.stage_factor_key keys layers
    return [(w, f"{op}.{_CONV_STAGE[w]}{suffix}") for w in ("fwd", "bwd_data", "bwd_weight")]


def memory_sizes(quick: bool) -> list[int]:
    """Element counts from 4 KiB to 128 MiB per fp32 tensor, about three per factor of ten (fewer when quick)."""
    exps = [10 + 1.5 * i for i in range(12)] if not quick else [10 + 3 * i for i in range(6)]
    return [int(2 ** e) for e in exps if e <= 25]


def _mem(n: int, op: str):
    def make(device: str, dt: torch.dtype):
        a = torch.randn(n, device=device, dtype=torch.float32)
        out = torch.empty_like(a)
        if op == "copy":
            return (lambda: out.copy_(a)), 0.0, 8.0 * n, 1
        b = torch.randn(n, device=device, dtype=torch.float32)
        return (lambda: torch.add(a, b, out=out)), float(n), 12.0 * n, 1

    return make


DISPATCH_CHAIN = 64


def _dispatch(kind: str):
    """Chains of tiny ops with autograd, forward + backward: per-op dispatch cost as in a training step.

    kernels counted as the cost rules count them: relu 1 forward + 1 backward; dense with bias
    1 forward + 1 backward-data + 2 backward-weight (GEMM and bias reduction); plus sum and its backward.
    """

    def make(device: str, dt: torch.dtype):
        if kind == "relu":
            x = torch.randn(4, device=device, requires_grad=True)

            def fn():
                y = x
                for _ in range(DISPATCH_CHAIN):
                    y = torch.relu(y)
                y.sum().backward()

            return fn, 0.0, 0.0, 2 * DISPATCH_CHAIN + 2
        ws = [torch.randn(4, 4, device=device, requires_grad=True) for _ in range(DISPATCH_CHAIN // 2)]
        bs = [torch.randn(4, device=device, requires_grad=True) for _ in range(DISPATCH_CHAIN // 2)]
        x = torch.randn(2, 4, device=device, requires_grad=True)

        def fn():
            y = x
            for w, b in zip(ws, bs):
                y = F.linear(y, w, b)
            y.sum().backward()

        return fn, 0.0, 0.0, 4 * (DISPATCH_CHAIN // 2) + 2

    return make


def _plain_dispatch():
    def make(device: str, dt: torch.dtype):
        x = torch.randn(4, device=device)
        return (lambda: torch.relu(x)), 0.0, 32.0, 1

    return make


# Elementwise, normalisation and pooling ops, each timed forward and backward (as autograd runs them) on a
# generic shape at two sizes: (op, extra fields, per-sample shape, batches). FLOPs come from the op's own
# cost rule, so the fitted per-op rate (Efficiency.elementwise) is consistent with how predictions count.
ELEMENTWISE_OPS: tuple[tuple[str, dict, tuple[int, ...], tuple[int, ...]], ...] = (
    ("relu", {}, (40, 28, 28), (12, 48)),
    ("leaky_relu", {"slope": 0.2}, (40, 28, 28), (12, 48)),
    ("sigmoid", {}, (40, 28, 28), (12, 48)),
    ("tanh", {}, (40, 28, 28), (12, 48)),
    ("gelu", {}, (72, 640), (8, 32)),
    ("softmax", {}, (72, 640), (8, 32)),
    ("layernorm", {}, (72, 640), (8, 32)),
    ("batchnorm", {}, (40, 28, 28), (12, 48)),
    ("dropout", {"p": 0.2}, (72, 640), (8, 32)),
    ("maxpool2d", {"kernel": 2}, (40, 28, 28), (12, 48)),
    ("avgpool2d", {"kernel": 2}, (40, 28, 28), (12, 48)),
    ("global_avgpool", {}, (40, 28, 28), (12, 48)),
    ("add", {}, (40, 28, 28), (12, 48)),
    ("mul", {}, (40, 28, 28), (12, 48)),
)
QUICK_ELEMENTWISE_BATCH = 0  # quick grid: the smaller size only


def _elementwise(op: str, fields: dict, shape: tuple[int, ...], batch: int, backward: bool):
    """Forward (with autograd recording) or backward (torch.autograd.grad, no accumulation) of one op layer."""

    def make(device: str, dt: torch.dtype):
        from ..graph.io import NetworkBuilder
        from ..ops.base import COST_RULES
        from .to_module import to_module

        b = NetworkBuilder(f"calibrate-{op}")
        b.input("x", shape=list(shape))
        ins = ["x"]
        if op in ("add", "mul"):
            b.input("x2", shape=list(shape))
            ins = ["x", "x2"]
        b.layer(op, "op", inputs=ins, **fields)
        g = b.build()
        layer = g["op"]
        cost = COST_RULES[op](layer, batch, 4)  # the full rule: backward-data included
        mod = to_module(g).to(device)
        mod.train()
        xs = {n: torch.randn(batch, *shape, device=device, requires_grad=True) for n in ins}
        params = [p for p in mod.parameters() if p.requires_grad]
        if not backward:
            works = cost.forward
            fn = lambda: mod(xs)["op"]  # noqa: E731
        else:
            works = cost.backward_data + cost.backward_weight
            y = mod(xs)["op"]
            gy = torch.randn_like(y)
            wrt = list(xs.values()) + params
            fn = lambda: torch.autograd.grad(y, wrt, gy, retain_graph=True)  # noqa: E731
        flops = sum(w.flops for w in works if w.family == "memory")
        nbytes = sum(w.bytes for w in works if w.family == "memory")
        kernels = sum(w.kernels for w in works if w.family == "memory")
        return fn, float(flops), float(nbytes), max(1, kernels)

    return make


# sizes (elements) of the parameter tensors of the optimizer benchmark: a mix of weights and biases
OPT_TENSORS = (1 << 20, 1 << 18, 1 << 16, 4096, 1024, 256, 3 << 18, 512, 1 << 14, 128)


def _optimizer(name: str):
    """One optimizer step over OPT_TENSORS (a check of the optimizer model, not fitted)."""

    def make(device: str, dt: torch.dtype):
        ps = [torch.nn.Parameter(torch.randn(n, device=device)) for n in OPT_TENSORS]
        for p in ps:
            p.grad = torch.randn_like(p)
        opt = (torch.optim.SGD(ps, lr=1e-3, momentum=0.9) if name == "momentum"
               else torch.optim.Adam(ps, lr=1e-3))
        opt.step()
        from ..optimizers import optimizer_work

        w = optimizer_work(name, sum(OPT_TENSORS), len(OPT_TENSORS), gpu=device != "cpu")
        return opt.step, w.flops, w.bytes, w.kernels

    return make


def build_benches(device: str, thread_counts: list[int], quick: bool, lowp: list[str]) -> list[Bench]:
    """Every benchmark to run, in order: each benchmark at every thread count back to back (so a busy spell on
    a shared machine hits the thread counts of a benchmark alike and the fitted speedups stay sound)."""
    out: list[Bench] = []
    shapes = gemm_shapes(14 if quick else 30)
    convs = [CONV_SHAPES[i] for i in QUICK_CONV] if quick else list(CONV_SHAPES)
    lowp_shapes = [sh for sh in shapes[len(shapes) // 3::3 if quick else 2] if 2.0 * sh[0] * sh[1] * sh[2] <= 5e8]
    for t in thread_counts:
        for op in ("relu", "linear"):
            out.append(Bench("dispatch", f"autograd {op} chain x{DISPATCH_CHAIN}", "fp32", _dispatch(op), t))
        out.append(Bench("dispatch_raw", "plain relu, 4 elements", "fp32", _plain_dispatch(), t))
        for (m, k, n) in shapes:
            for layout in ("nn", "nt", "tn"):
                out.append(Bench("matrix", f"gemm {m}x{k}x{n} {layout}", "fp32", _gemm(m, k, n, layout), t))
        for shp in convs:
            nb, c, hw, ko, kr, st, pd, tr = shp
            for which, fkey in conv_passes(shp):
                lab = f"{'convT' if tr else 'conv'} n{nb} c{c} {hw}x{hw} k{ko} {kr}x{kr}/{st} {which}"
                out.append(Bench("conv", lab, "fp32", _conv(*shp, which), t, fkey))
        for n in memory_sizes(quick):
            for op in ("copy", "add"):
                out.append(Bench("memory", f"{op} {n} fp32", "fp32", _mem(n, op), t))
        for dt in lowp:
            for (m, k, n) in lowp_shapes:
                out.append(Bench("matrix", f"gemm {m}x{k}x{n} nt", dt, _gemm(m, k, n, "nt"), t))
            for shp in convs[2::3]:
                out.append(Bench("conv", f"conv {shp} fwd", dt, _conv(*shp, "fwd"), t))
        if device == "cpu":  # GPU elementwise kernels are bandwidth bound: the memory curve covers them
            for op, fields, shape, batches in ELEMENTWISE_OPS:
                for nb in (batches[:1] if quick else batches):
                    n = nb * math.prod(shape)
                    for bwd in (False, True):
                        key = f"{op}.backward" if bwd else op
                        out.append(Bench("elementwise", f"{key} {n} elements", "fp32",
                                         _elementwise(op, fields, shape, nb, bwd), t, key))
        for name in ("momentum", "adam"):
            out.append(Bench("check", f"optimizer {name} step, {sum(OPT_TENSORS)} params", "fp32", _optimizer(name), t))
    order = {t: i for i, t in enumerate(thread_counts)}
    per_t: dict[int, list[Bench]] = {}
    for b in out:
        per_t.setdefault(b.threads, []).append(b)
    n = max(len(v) for v in per_t.values())
    return [per_t[t][i] for i in range(n) for t in sorted(per_t, key=order.get) if i < len(per_t[t])]


# --- machine description ------------------------------------------------------------------------------



def _lscpu() -> dict[str, str]:
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    d = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            d[k.strip()] = v.strip()
    return d


def cpu_topology() -> dict[str, Any]:
    """Physical cores, threads per core, sockets, family/model, SIMD flags, memory (Linux; best effort)."""
    ls = _lscpu()
    logical = os.cpu_count() or 1
    tpc = int(ls.get("Thread(s) per core", "1") or 1)
    sockets = int(ls.get("Socket(s)", "1") or 1)
    cps = ls.get("Core(s) per socket")
    cores = int(cps) * sockets if cps and cps.isdigit() else max(1, logical // tpc)
    flags = ls.get("Flags", "")
    simd = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx2", "fma", "avx") if f in flags.split()]
    mem = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = float(line.split()[1]) * 1024
    except OSError:
        pass
    if not mem:
        try:
            mem = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            mem = 8e9
    mhz = None
    try:
        m = re.search(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
        mhz = float(m.group(1)) if m else None
    except OSError:
        pass
    return {
        "model": cpu_model_name(), "vendor": ls.get("Vendor ID", ""), "logical_cpus": logical, "cores": cores,
        "threads_per_core": tpc, "sockets": sockets, "family": ls.get("CPU family", ""), "cpu_model": ls.get("Model", ""),
        "hypervisor": ls.get("Hypervisor vendor", ""), "simd": simd, "memory_bytes": mem,
        "clock_hz": mhz * 1e6 if mhz else None,
    }


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "device"


def default_profile_name(device: str = "cpu") -> str:
    if device == "cuda":
        return _slug(torch.cuda.get_device_name(0))
    topo = cpu_topology()
    return f"{_slug(topo['model'])}-{topo['cores']}c"


# --- progress -------------------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on a stream (a line per 10% when the stream is not a terminal)."""

    def __init__(self, total: int, stream: TextIO | None = sys.stderr, width: int = 30):
        self.total, self.stream, self.width = max(1, total), stream, width
        self.done = 0
        self.t0 = time.perf_counter()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last_decile = -1

    def step(self, label: str) -> None:
        self.done += 1
        if self.stream is None:
            return
        frac = self.done / self.total
        el = time.perf_counter() - self.t0
        if self.tty:
            fill = int(frac * self.width)
            bar = "#" * fill + "." * (self.width - fill)
            self.stream.write(f"\r[{bar}] {frac:4.0%} {el:5.1f}s {label[:40]:<40}")
            if self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()
        else:
            dec = int(frac * 10)
            if dec != self._last_decile:
                self._last_decile = dec
                self.stream.write(f"calibrate: {frac:4.0%} after {el:5.1f}s ({label})\n")
                self.stream.flush()


# --- the run --------------------------------------------------------------------------------------------

@dataclass
class CalibrationResult:
    profile: dict[str, Any]
    fit: FitResult
    samples: list[Sample]
    wall_s: float
    path: Path | None = None
    residuals: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)


def thread_counts_for(threads: int | None, cores: int) -> list[int]:
    """1, powers of two, the physical cores and `threads` (default: the physical cores)."""
    top = threads or cores
    ts = {1, top, min(top, cores)}
    p = 2
    while p < top:
        ts.add(p)
        p *= 2
    return sorted(ts)


def run_benchmarks(device: str = "cpu", threads: int | None = None, quick: bool = False,
                   progress: TextIO | None = sys.stderr) -> tuple[list[Sample], dict[str, Any]]:
    """Run the benchmark grid; returns the samples and the machine description."""
    if device == "cuda" and not torch.cuda.is_available():
        from ..errors import InputError

        raise InputError("--device cuda: torch sees no CUDA device here")
    topo = cpu_topology()
    counts = thread_counts_for(threads, topo["cores"]) if device == "cpu" else [torch.get_num_threads()]
    lowp = []
    if device == "cuda":
        lowp = ["bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    else:
        lowp = ["bf16"]
    benches = build_benches(device, counts, quick, lowp)
    sync = _sync_fn(device)
    min_time, repeats = (QUICK_MIN_TIME_S, QUICK_REPEATS) if quick else (MIN_TIME_S, REPEATS)
    bar = Progress(len(benches), progress)
    samples: list[Sample] = []
    old_threads = torch.get_num_threads()
    quiet_idle, waited = (None, 0.0)
    retried = disturbed = 0
    retry_s = 0.0
    if device == "cpu":
        quiet_idle, waited = wait_for_quiet(QUIET_IDLE, QUIET_MAX_WAIT_S)
    try:
        for b in benches:
            if device == "cpu":
                torch.set_num_threads(b.threads)
            dt = _TORCH_DTYPES[b.dtype]
            grad = b.family in ("dispatch", "elementwise") or b.label.startswith("optimizer")
            with torch.set_grad_enabled(grad):
                try:
                    fn, flops, nbytes, kernels = b.make(device, dt)
                    best = None
                    for attempt in range(RETRIES + 1):
                        with Interference() as inf:
                            med, times = time_call(fn, sync, min_time, repeats)
                        if best is None or med < best[0]:
                            best = (med, times)
                        if device != "cpu" or not inf.available or inf.others_cores <= DISTURBED_CORES:
                            break
                        if attempt == RETRIES or retry_s >= RETRY_BUDGET_S:
                            disturbed += 1
                            break
                        retried += 1
                        t_retry = time.perf_counter()
                        wait_for_quiet(QUIET_IDLE, min(RETRY_WAIT_S, RETRY_BUDGET_S - retry_s))
                        retry_s += time.perf_counter() - t_retry + inf.wall_s
                    med, times = best
                except (RuntimeError, NotImplementedError) as e:  # an op this build lacks (e.g. a dtype)
                    bar.step(f"skipped {b.label}: {str(e)[:40]}")
                    continue
            samples.append(Sample(b.family, b.threads, med, flops, nbytes, kernels, b.dtype, b.label,
                                  tuple(round(t, 9) for t in times), key=b.key))
            bar.step(f"{b.label} t={b.threads}")
    finally:
        torch.set_num_threads(old_threads)
    machine = {
        "device": device, "cpu": topo, "torch": torch.__version__, "python": platform.python_version(),
        "thread_counts": counts, "quick": quick,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "idle_at_start": None if quiet_idle is None else round(quiet_idle, 3), "waited_for_quiet_s": round(waited, 1),
        "samples_retried": retried, "samples_disturbed": disturbed,
    }
    return samples, machine


def fit_and_profile(samples: list[Sample], machine: dict[str, Any], name: str, wall_s: float | None = None
                    ) -> tuple[dict[str, Any], FitResult, list[dict], list[dict]]:
    """Fit the samples and assemble the profile mapping (with sources and notes)."""
    topo = machine["cpu"]
    is_cpu = machine["device"] == "cpu"
    fit = fit_profile(samples, FitOptions(cores=topo["cores"] if is_cpu else 1, is_cpu=is_cpu))
    date = _dt.date.today().isoformat()
    what = topo["model"] if is_cpu else machine.get("gpu") or "cuda device"
    source = f"calibrated on {what} by perfmodel calibrate, {date}, torch {machine['torch']}"
    counts = machine.get("thread_counts", [])
    res = residuals(samples, fit)
    checks = []
    from ..calibration_fit import predicted_sample_time

    for s in samples:
        if s.family == "check" and s.label.startswith("optimizer"):
            p = predicted_sample_time(s, fit, fit.kernel_overhead_s)
            checks.append({"label": s.label, "threads": s.threads, "measured_s": s.time_s, "predicted_s": p,
                           "error_pct": 100 * (p - s.time_s) / s.time_s})
    plain = [s.time_s for s in samples if s.family == "dispatch_raw"]
    abs_err = sorted(abs(r["error_pct"]) for r in res)
    med_err = statistics.median(abs_err) if abs_err else float("nan")
    pooled = machine.get("pooled_runs")
    notes = [
        (f"Pooled over {pooled} calibration runs (per benchmark the median over runs of each run's median "
         "repeat). " if pooled and pooled > 1 else "") +
        f"Fitted from {len(samples)} microbenchmark samples at {counts} threads "
        f"({'quick grid' if machine.get('quick') else 'full grid'}"
        + (f", {wall_s:.0f} s" if wall_s else "") + "); no validation network was used.",
        "peak_flops = physical cores x the best single-thread GEMM/conv rate measured (not a datasheet "
        "peak), so efficiencies are fractions of what this build of torch reaches here.",
        f"kernel_overhead = median per-kernel time of tiny-op chains with autograd (forward + backward); "
        f"a plain tiny op without autograd takes {statistics.median(plain) * 1e6:.1f} us." if plain else
        "kernel_overhead = median per-kernel time of tiny-op chains with autograd.",
        f"median |error| of the fitted profile on its own benchmark samples: {med_err:.1f}%.",
    ]
    if machine.get("samples_retried") or machine.get("samples_disturbed"):
        notes.append(f"shared machine: {machine.get('samples_retried', 0)} sample attempts were repeated because other "
                     f"processes used CPU meanwhile; {machine.get('samples_disturbed', 0)} samples stayed disturbed "
                     f"after {RETRIES} retries (their fastest attempt was kept).")
    if checks:
        notes.append("optimizer-step check (not fitted): " + "; ".join(
            f"{c['label'].split(',')[0]} t={c['threads']} {c['error_pct']:+.0f}%" for c in checks))
    if is_cpu:
        if topo["threads_per_core"] == 1:
            notes.append(
                f"{topo['cores']} cores, 1 thread per core (lscpu): no SMT, so hyperthread_penalty cannot be "
                "measured as such" + ("; it was fitted from oversubscribed runs (more threads than cores)"
                                      if any(t > topo["cores"] for t in counts) else "; the default is kept"))
        if topo.get("hypervisor"):
            notes.append(f"virtual machine ({topo['hypervisor']}): CPU flags and model may be masked "
                         f"(family {topo['family']}, model {topo['cpu_model']}, SIMD seen: {', '.join(topo['simd'])}).")
    notes.extend(fit.notes)
    eff_source = (f"calibrated by perfmodel calibrate on {what}, {date}: binned medians of "
                  f"{sum(fit.n_samples.values())} GEMM/conv/memory samples, efficiency = achieved rate / "
                  "(fitted peak x thread speedup) after subtracting per-kernel overhead")
    ts_source = (f"calibrated: serial_fraction from the time-weighted speedup of the GEMM and convolution samples "
                 f"({', '.join(f'{t} threads: {s:.2f}x' for t, s in fit.speedups.items()) or 'not measured'}); "
                 "per_core_bandwidth = best single-thread copy/add rate")
    prof = profile_dict(
        fit, name=name, source=source, model=(f"{topo['model']} ({topo['cores']} cores"
                                                f"{', ' + topo['hypervisor'] + ' VM' if topo.get('hypervisor') else ''})")
        if is_cpu else what,
        vendor=topo.get("vendor", "") if is_cpu else "NVIDIA",
        memory_bytes=topo["memory_bytes"] if is_cpu else float(torch.cuda.get_device_properties(0).total_memory),
        threads_per_core=topo["threads_per_core"], clock_hz=topo.get("clock_hz") if is_cpu else None,
        simd=", ".join(topo["simd"]) if is_cpu else "", notes=" ".join(notes), eff_source=eff_source,
        ts_source=ts_source,
    )
    return prof, fit, res, checks


def write_profile(profile: dict[str, Any], path: Path) -> Path:
    """Validate the mapping against the Device schema, then write it as YAML (atomically)."""
    import yaml

    from ..hardware.loader import hardware_from_dict

    hardware_from_dict(profile, file=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = "# Generated by `perfmodel calibrate`; re-run it rather than editing by hand.\n"
    text += yaml.safe_dump(profile, sort_keys=False, default_flow_style=None, width=110)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def save_samples(samples: list[Sample], machine: dict[str, Any], path: Path) -> None:
    """Append the raw samples as one JSON line (machine + samples), atomically (write whole file, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {"kind": "calibration", "time": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine,
           "samples": [s.to_dict() for s in samples]}
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(old + json.dumps(rec) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _records(path: Path) -> list[dict[str, Any]]:
    """Every calibration record (one JSON line each) of a samples file."""
    return [json.loads(l) for l in Path(path).read_text(encoding="utf-8").splitlines() if l.strip()]


def load_samples(path: Path, record: int = -1) -> tuple[list[Sample], dict[str, Any]]:
    """One calibration record of a samples file (default: the last)."""
    recs = _records(path)
    try:
        rec = recs[record]
    except IndexError:
        from ..errors import InputError

        raise InputError(f"{path} holds {len(recs)} calibration records; record {record} does not exist") from None
    return [Sample.from_dict(d) for d in rec["samples"]], rec["machine"]


def _grid_key(s: Sample) -> tuple[str, str, int, str]:
    return (s.family, s.label, s.threads, s.dtype)


def pool_samples(path: Path, statistic: str = "median") -> tuple[list[Sample], dict[str, Any]]:
    """Samples pooled over every calibration run of a samples file made on the same grid as its last run.

    A shared machine's speed drifts by 10-20% from minute to minute, so one 2-minute run describes one
    moment; pooling takes, per benchmark, the median over the runs of each run's `statistic` of its
    repeats. Only runs with exactly the last run's benchmarks, CPU and torch version are pooled.
    """
    recs = _records(path)
    if not recs:
        from ..errors import InputError

        raise InputError(f"{path} holds no calibration record")
    ident = lambda m: (m.get("device"), (m.get("cpu") or {}).get("model"), m.get("torch"))  # noqa: E731
    machine_id = ident(recs[-1]["machine"])
    grid = sorted(_grid_key(Sample.from_dict(d)) for d in recs[-1]["samples"])
    runs = []
    for rec in recs:
        samples = with_statistic([Sample.from_dict(d) for d in rec["samples"]], statistic)
        if ident(rec["machine"]) == machine_id and sorted(map(_grid_key, samples)) == grid:
            runs.append(({_grid_key(x): x for x in samples}, rec["machine"]))
    newest = runs[-1][0]
    pooled = [replace(x, time_s=statistics.median(r[k].time_s for r, _ in runs),
                      times_s=tuple(r[k].time_s for r, _ in runs)) for k, x in newest.items()]
    machine = dict(runs[-1][1])
    machine["pooled_runs"] = len(runs)
    machine["samples_disturbed"] = statistics.median(m.get("samples_disturbed", 0) or 0 for _, m in runs)
    machine["calibration_wall_s"] = sum(m.get("calibration_wall_s") or 0 for _, m in runs) or None
    return pooled, machine


MAX_DISTURBED_SHARE = 0.2  # more disturbed samples than this: refuse to fit (unless allow_busy)


def check_quiet_enough(machine: dict[str, Any], n_samples: int, allow_busy: bool) -> None:
    """Refuse a fit from a run where other processes disturbed too many samples (the profile would describe
    the neighbours, not the hardware)."""
    bad = machine.get("samples_disturbed", 0) or 0
    if not allow_busy and n_samples and bad > MAX_DISTURBED_SHARE * n_samples:
        from ..errors import PerfModelError

        raise PerfModelError(
            f"other processes kept the CPU busy during {bad} of {n_samples} benchmark samples, even after "
            f"retries: the fit would describe them, not the hardware. Re-run `perfmodel calibrate` when the "
            f"machine is quiet (or pass --allow-busy to write the profile anyway); the raw timings are kept "
            f"when --samples is given.")


def calibrate(out: str | Path | None = None, *, device: str = "cpu", threads: int | None = None,
              quick: bool = False, name: str | None = None, progress: TextIO | None = sys.stderr,
              samples_path: str | Path | None = None, allow_busy: bool = False) -> CalibrationResult:
    """Run the microbenchmarks, fit the profile, write it to `out` (if given) and return everything."""
    t0 = time.perf_counter()
    samples, machine = run_benchmarks(device, threads, quick, progress)
    wall = time.perf_counter() - t0
    machine["calibration_wall_s"] = round(wall, 1)
    if samples_path:
        save_samples(samples, machine, Path(samples_path))
    check_quiet_enough(machine, len(samples), allow_busy)
    name = name or (Path(out).stem if out else default_profile_name(device))
    prof, fit, res, checks = fit_and_profile(samples, machine, name, wall)
    path = write_profile(prof, Path(out)) if out else None
    return CalibrationResult(prof, fit, samples, wall, path, res, checks)


SAMPLE_STATISTICS = {"median": statistics.median, "min": min, "mean": statistics.fmean}


def with_statistic(samples: Sequence[Sample], statistic: str) -> list[Sample]:
    """The samples with each time replaced by `statistic` (median, min or mean) of its stored repeats."""
    if statistic not in SAMPLE_STATISTICS:
        from ..errors import InputError

        raise InputError(f"unknown statistic '{statistic}'; choose one of {', '.join(SAMPLE_STATISTICS)}")
    f = SAMPLE_STATISTICS[statistic]
    return [replace(s, time_s=f(s.times_s)) if s.times_s else s for s in samples]


def refit(samples_path: str | Path, out: str | Path | None = None, name: str | None = None, record: int = -1,
          allow_busy: bool = False, statistic: str = "median", pool: bool = False) -> CalibrationResult:
    """Fit again from stored samples (no benchmarks run); `record` picks a calibration run of the file, or
    `pool` pools every run made on the same grid (see pool_samples).

    statistic: how each sample's stored repeats become its time (median, as `time_call` measures; min or mean).
    """
    if pool:
        samples, machine = pool_samples(Path(samples_path), statistic)
    else:
        samples, machine = load_samples(Path(samples_path), record)
        samples = with_statistic(samples, statistic)
    check_quiet_enough(machine, len(samples), allow_busy)
    name = name or (Path(out).stem if out else "calibrated")
    prof, fit, res, checks = fit_and_profile(samples, machine, name, machine.get("calibration_wall_s"))
    path = write_profile(prof, Path(out)) if out else None
    return CalibrationResult(prof, fit, samples, machine.get("calibration_wall_s") or 0.0, path, res, checks)
