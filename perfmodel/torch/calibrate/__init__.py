"""Calibration microbenchmarks on this machine: time GEMMs, convolutions (dense, grouped, depthwise, 1x1),
elementwise and streaming passes, dispatch and an optimizer step with torch, then fit the device profile with
`perfmodel.calibration` (torch-free, tested separately). The benchmark makers live in `.benches`.

Nothing here uses a validation network: the shapes are a generic grid (`perfmodel.calibration.grid`).

    from perfmodel.torch.calibrate import calibrate
    result = calibrate("hardware_profiles/devices/my-cpu.yaml", device="cpu", threads=2)
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

import torch

from ...calibration.fit import Sample
from ...calibration.grid import conv_passes, gemm_shapes, memory_sizes  # noqa: F401 - re-exported
from ...calibration.profile import CalibrationResult, fit_and_profile, refit, write_profile  # noqa: F401
from ...optimizers import calibration_check_time
from ...calibration.samples import (  # noqa: F401 - re-exported for callers of the old module
    check_quiet_enough, load_samples, pool_samples, save_samples, with_statistic,
)
from ...calibration.timing import MIN_TIME_S, QUICK_MIN_TIME_S, QUICK_REPEATS, REPEATS, time_call
from ...machine import cpu_model_name, cpu_topology  # noqa: F401 - cpu_topology re-exported
from ..quiet import Interference, wait_for_quiet
from .benches import _TORCH_DTYPES, build_benches, settle_allocator

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




# --- the benchmark grid -------------------------------------------------------------------------------































# --- machine description ------------------------------------------------------------------------------



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
        from ...errors import InputError

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
    settled = settle_allocator(device)
    try:
        for b in benches:
            if device == "cpu":
                torch.set_num_threads(b.threads)
            dt = _TORCH_DTYPES[b.dtype]
            grad = b.family in ("dispatch", "elementwise") or b.label.startswith(("optimizer", "batchnorm", "layernorm"))
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
                                  tuple(round(t, 9) for t in times), key=b.key, ekey=b.ekey))
            bar.step(f"{b.label} t={b.threads}")
    finally:
        torch.set_num_threads(old_threads)
    machine = {
        "device": device, "cpu": topo, "torch": torch.__version__, "python": platform.python_version(),
        "thread_counts": counts, "quick": quick,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "idle_at_start": None if quiet_idle is None else round(quiet_idle, 3), "waited_for_quiet_s": round(waited, 1),
        "allocator_settled_bytes": settled, "samples_retried": retried, "samples_disturbed": disturbed, "retries": RETRIES,
        "gpu_memory_bytes": float(torch.cuda.get_device_properties(0).total_memory) if device == "cuda" else None,
    }
    return samples, machine


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
    prof, fit, res, checks = fit_and_profile(samples, machine, name, wall, calibration_check_time)
    path = write_profile(prof, Path(out)) if out else None
    return CalibrationResult(prof, fit, samples, wall, path, res, checks)


