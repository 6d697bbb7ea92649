"""From samples to a written device profile (no torch): fit, notes and sources, YAML, and refit from stored samples."""

from __future__ import annotations

import datetime as _dt
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..kernels.data import stack_for_target
from .fit import FitOptions, FitResult, Sample, fit_profile, predicted_sample_time, profile_dict, residuals
from .samples import check_quiet_enough, load_samples, pool_samples, with_statistic



@dataclass
class CalibrationResult:
    profile: dict[str, Any]
    fit: FitResult
    samples: list[Sample]
    wall_s: float
    path: Path | None = None
    residuals: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)



def optimizer_checks(samples: list[Sample], fit: FitResult, check_time=None) -> list[dict[str, Any]]:
    """The optimizer-step check samples against the model: `check_time(name, threads, bare_profile)` (the engine's
    price, optimizers.check_step_time, passed in by the layers above) or, without it, predicted_sample_time."""
    bare = profile_dict(fit, name="check", source="check", memory_bytes=1e9) if check_time else None
    checks = []
    for s in samples:
        if s.family == "check" and s.label.startswith("optimizer"):
            p = (check_time(s.label.split()[1], s.threads, bare) if check_time
                 else predicted_sample_time(s, fit, fit.kernel_overhead_s))
            checks.append({"label": s.label, "threads": s.threads, "measured_s": s.time_s, "predicted_s": p,
                           "error_pct": 100 * (p - s.time_s) / s.time_s})
    return checks


def fit_and_profile(samples: list[Sample], machine: dict[str, Any], name: str, wall_s: float | None = None,
                    check_time=None) -> tuple[dict[str, Any], FitResult, list[dict], list[dict]]:
    """Fit the samples and assemble the profile mapping (with sources and notes); `check_time` see
    optimizer_checks."""
    topo = machine["cpu"]
    is_cpu = machine["device"] == "cpu"
    fit = fit_profile(samples, FitOptions(cores=topo["cores"] if is_cpu else 1, is_cpu=is_cpu))
    date = _dt.date.today().isoformat()
    what = topo["model"] if is_cpu else machine.get("gpu") or "cuda device"
    source = f"calibrated on {what} by perfmodel calibrate, {date}, torch {machine['torch']}"
    counts = machine.get("thread_counts", [])
    res = residuals(samples, fit)
    checks = optimizer_checks(samples, fit, check_time)
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
                     f"after {machine.get('retries', 3)} retries (their fastest attempt was kept).")
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
        memory_bytes=topo["memory_bytes"] if is_cpu else float(machine.get("gpu_memory_bytes") or 0.0),
        threads_per_core=topo["threads_per_core"], clock_hz=topo.get("clock_hz") if is_cpu else None,
        simd=", ".join(topo["simd"]) if is_cpu else "", notes=" ".join(notes), eff_source=eff_source,
        ts_source=ts_source,
    )
    if is_cpu and (stack := stack_for_target("cpu")):
        prof["software_stack"] = stack  # what the measured torch build's CPU kernels do (fused attention, RNN steps)
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



def refit(samples_path: str | Path, out: str | Path | None = None, name: str | None = None, record: int = -1,
          allow_busy: bool = False, statistic: str = "median", pool: bool = False, check_time=None
          ) -> CalibrationResult:
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
    prof, fit, res, checks = fit_and_profile(samples, machine, name, machine.get("calibration_wall_s"), check_time)
    path = write_profile(prof, Path(out)) if out else None
    return CalibrationResult(prof, fit, samples, machine.get("calibration_wall_s") or 0.0, path, res, checks)
