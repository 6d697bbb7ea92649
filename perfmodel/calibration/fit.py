"""Fit a device profile from microbenchmark timings: a pure function from samples to profile numbers.

No torch here (the benchmarks that produce the samples live in `perfmodel.torch.calibrate`), so the
fit can be tested on synthetic timings generated from a known profile.

The fitted numbers mean exactly what `perfmodel.compute` does with them. On a CPU with t threads a
kernel group of `kernels` launches takes

    time = max(flops / (P_t * eff(size)), bytes / (B_t * eff_mem(bytes / kernels))) + kernels * overhead
    P_t  = peak / cores * speedup(t),  speedup(t) = t / (1 + serial_fraction * (t - 1))  (t <= cores)
    B_t  = min(memory_bandwidth, per_core_bandwidth * t)

with size = FLOPs per kernel for matrix/conv work and bytes per kernel for memory work. On a GPU
P_t = peak, B_t = memory_bandwidth and a kernel costs max(its roofline time, the launch overhead).
So, from a timed sample:

    CPU  eff = flops / (P_t * (time - kernels * overhead))      (matrix, conv)
         eff = bytes / (B_t * (time - kernels * overhead))      (memory)
    GPU  eff = flops / (P * time),  eff = bytes / (B * time)

Choices (each a named parameter of `FitOptions`):
- peak = cores x the best single-thread FLOP rate measured over the GEMM (and convolution) samples,
  unless a nominal per-core peak is given; efficiencies are fractions of that fitted peak, so the
  best-measured kernel has efficiency 1. Same for bf16 (and fp16) from their own samples.
- memory_bandwidth = the best rate at the most threads measured (up to the physical cores);
  per_core_bandwidth = the best single-thread rate. Cache-resident sizes usually give the best
  rate; the memory curve then falls for sizes that stream from DRAM.
- kernel_overhead = the median per-kernel time of the dispatch samples (tiny ops whose roofline
  time is negligible), taken with autograd on, as in a training step. The benchmarks themselves
  call ops without autograd; what they pay per call is the (smaller) raw dispatch time, which is
  what is subtracted from them before computing an efficiency. So a predicted training kernel costs
  its roofline time at the fitted efficiency plus the autograd-context overhead.
- The peak comes only from samples whose time is at least `min_busy_share` roofline work (not
  dominated by the call overhead).
- serial_fraction from the speedup over one thread (the median of the samples' speedups weighted by
  their single-thread times) of the GEMM and convolution samples taking at least `speedup_min_time_s`
  on one thread, at each thread count t <= cores (Amdahl, averaged over t). Time-weighted, so that the
  kernels that dominate a training step dominate it; a median, so that a pair disturbed by another
  process on a shared machine does not; small kernels scale worse and their loss shows in the curves. Threads beyond the physical cores (only when measured)
  give the hyperthread/oversubscription penalty.
- GEMM thread split (CPU, calibration.threads): gemm_split_rows from the GEMM samples at 1 and n threads; a GEMM
  sample's P_t is then peak / cores x speedup(t) x gemm_split_speedup(rows, t) / speedup(t) (split_factor).
- Curves: every sample gives an (size, efficiency) pair; pairs are grouped in log-size bins
  (`bins_per_decade`); within a bin, the median efficiency per thread count, then the geometric
  mean over thread counts (one curve serves all thread counts, as compute.py has one curve).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from .threads import fit_gemm_split, split_factor

# benchmark families -> the compute.py family whose curve they fit
FIT_FAMILIES = ("matrix", "conv", "memory")
LOWP_DTYPES = ("bf16", "fp16")
EFF_MIN = 1e-3  # efficiencies below this are clipped (a sample dominated by overhead)


@dataclass(frozen=True)
class Sample:
    """One timed microbenchmark: the median time of one call doing `flops` and `bytes` in `kernels` kernels.

    family: "matrix", "conv", "memory" (fit the curves), "elementwise" (one op kind's forward or
    backward at a realistic size: fits Efficiency.elementwise[key]), "dispatch" (tiny ops with autograd, forward
    and backward: fits kernel_overhead, the per-kernel cost inside a training step), "dispatch_raw"
    (one tiny op without autograd: the call overhead inside the other benchmarks, which call ops
    directly), "cold" (a stream writing long-unused outputs: fits the cold-buffer cost against its "fresh" pair)
    or "check" (not fitted; compared with the fitted profile's prediction, e.g. an optimizer step).
    """

    family: str
    threads: int
    time_s: float
    flops: float = 0.0
    bytes: float = 0.0
    kernels: int = 1
    dtype: str = "fp32"
    label: str = ""
    times_s: tuple[float, ...] = ()  # every repeat, for the record
    key: str = ""  # family "elementwise": the op key ("relu", ...); "conv": a stage-factor key (strided convs)
    ekey: str = ""  # an efficiency key (conv/depthwise, matmul/thin, elementwise, ...): fits curves[ekey], not the family curve
    written: float = 0.0  # bytes of freshly allocated outputs per call (0: preallocated or not recorded)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["times_s"] = list(self.times_s)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sample":
        d = dict(d)
        d["times_s"] = tuple(d.get("times_s", ()))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class FitOptions:
    cores: int = 1  # physical cores (CPU); 1 for a GPU
    is_cpu: bool = True
    bins_per_decade: float = 2.0
    speedup_min_time_s: float = 50e-6  # samples shorter than this on one thread do not set the thread speedup
    min_busy_share: float = 0.8  # a sample sets the peak only if overhead is <= 20% of its time
    nominal_peak_per_core: dict[str, float] | None = None  # per-core peak by dtype; else the best measured
    default_serial_fraction: float = 0.03
    default_hyperthread_penalty: float = 0.10


@dataclass
class FitResult:
    """Profile numbers in SI, and what they were fitted from."""

    peak_flops: dict[str, float]
    memory_bandwidth_Bps: float
    bench_overhead_s: float  # per-call overhead inside the benchmarks (subtracted before fitting)
    per_core_bandwidth_Bps: float | None
    kernel_overhead_s: float
    serial_fraction: float | None
    hyperthread_penalty: float | None
    curves: dict[str, list[tuple[float, float]]]
    cores: int
    is_cpu: bool
    speedups: dict[int, float] = field(default_factory=dict)  # measured GEMM speedup over 1 thread
    notes: list[str] = field(default_factory=list)
    n_samples: dict[str, int] = field(default_factory=dict)
    elementwise: dict[str, float] | None = None  # per-core nominal FLOP/s by op key
    stage_factors: dict[str, float] | None = None  # efficiency multipliers of strided-convolution stages
    keyed_curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # Efficiency.curves by key
    fresh_s_per_byte: float | None = None  # one thread's extra time per freshly mapped output byte (traits)
    fresh_conv_s_per_byte: float | None = None  # the same for convolutions
    fresh_wall_s_per_byte: dict[int, float] | None = None  # per thread count: measured wall extra per fresh byte
    cold_s_per_byte: dict[int, float] | None = None  # per thread count: extra time per cold output byte (traits)
    gemm_split_rows: float | None = None  # CPU GEMM thread split (traits, calibration.threads)

    def speedup(self, threads: int) -> float:
        """Compute speed at `threads` relative to one thread, as compute.thread_speedup does."""
        return amdahl(threads, self.cores, self.serial_fraction or 0.0, self.hyperthread_penalty or 0.0)

    def matrix_rate(self, threads: int, dtype: str = "fp32") -> float:
        if not self.is_cpu:
            return self.peak_flops[dtype]
        return self.peak_flops[dtype] / self.cores * self.speedup(threads)

    def bandwidth(self, threads: int) -> float:
        if not self.is_cpu:
            return self.memory_bandwidth_Bps
        return cpu_bw(threads, self.cores, self.memory_bandwidth_Bps, self.per_core_bandwidth_Bps,
                      self.hyperthread_penalty or 0.0)


# --- the formulas of perfmodel.compute, restated on plain numbers --------------------------------

def amdahl(threads: int, cores: int, serial_fraction: float, ht_penalty: float) -> float:
    """compute.thread_speedup on plain numbers."""
    n = min(threads, cores)
    s = n / (1.0 + serial_fraction * (n - 1))
    extra = max(0, threads - cores)
    if extra:
        s *= max(0.05, 1.0 - ht_penalty * extra / cores)
    return s


def cpu_bw(threads: int, cores: int, bw: float, per_core: float | None, ht_penalty: float) -> float:
    """compute.cpu_bandwidth on plain numbers."""
    pc = per_core or 2.0 * bw / cores
    b = min(bw, pc * min(threads, cores))
    extra = max(0, threads - cores)
    if extra:
        b *= max(0.05, 1.0 - ht_penalty * extra / cores)
    return b


def sample_size(s: Sample) -> float:
    """The size the efficiency curve is looked up at: FLOPs per kernel (matrix/conv), bytes per kernel (memory)."""
    k = max(1, s.kernels)
    return (s.bytes if s.family == "memory" else s.flops) / k


# --- fitting steps --------------------------------------------------------------------------------

def fit_overhead(samples: Sequence[Sample], family: str = "dispatch") -> float | None:
    """Median per-kernel time of the samples of `family` ("dispatch" or "dispatch_raw"); None if there are none."""
    per = [s.time_s / max(1, s.kernels) for s in samples if s.family == family]
    return statistics.median(per) if per else None


def _busy(s: Sample, overhead: float, is_cpu: bool) -> float:
    """Time the roofline part of a sample took: the time minus exposed overhead (CPU), at least 10% of it."""
    if not is_cpu:
        return s.time_s
    return max(s.time_s - s.kernels * overhead, 0.1 * s.time_s)


def _compute_samples(samples: Sequence[Sample], dtype: str) -> list[Sample]:
    return [s for s in samples if s.family in ("matrix", "conv") and s.dtype == dtype and s.flops > 0]


def fit_peak_per_core(samples: Sequence[Sample], dtype: str, overhead: float, is_cpu: bool,
                      min_busy_share: float = 0.8) -> float | None:
    """Best FLOP rate of one thread (CPU; or the device, GPU) over the matrix and conv samples of `dtype`."""
    cand = [s for s in _compute_samples(samples, dtype) if (s.threads == 1 or not is_cpu)
            and s.kernels * overhead <= (1.0 - min_busy_share) * s.time_s]
    if not cand:
        return None
    return max(s.flops / _busy(s, overhead, is_cpu) for s in cand)


def measured_speedups(samples: Sequence[Sample], overhead: float, min_time_s: float) -> dict[int, float]:
    """Speedup over one thread, per thread count, of the fp32 matrix/conv samples (no kernel-class key) paired
    with their single-thread run (same label) whose single-thread roofline time is at least `min_time_s`: the
    median of the pairs' speedups weighted by their single-thread times (so the kernels that dominate a
    training step dominate it, and one pair slowed by another process on a shared machine does not)."""
    g = [s for s in samples if s.family in ("matrix", "conv") and s.dtype == "fp32" and s.flops > 0 and not s.ekey]
    one = {s.label: s for s in g if s.threads == 1 and _busy(s, overhead, True) >= min_time_s}
    by_t: dict[int, list[tuple[float, float]]] = {}
    for s in g:
        if s.threads > 1 and s.label in one:
            a = _busy(one[s.label], overhead, True)
            by_t.setdefault(s.threads, []).append((a / _busy(s, overhead, True), a))
    return {t: weighted_median(v) for t, v in sorted(by_t.items())}


def weighted_median(pairs: Sequence[tuple[float, float]]) -> float:
    """The value at which the (value, weight) pairs' cumulative weight first reaches half of the total."""
    xs = sorted(pairs)
    half, acc = sum(w for _, w in xs) / 2.0, 0.0
    for x, w in xs:
        acc += w
        if acc >= half:
            return x
    return xs[-1][0]


def fit_thread_scaling(speedups: dict[int, float], cores: int) -> tuple[float | None, float | None]:
    """Amdahl serial fraction from speedups at 1 < t <= cores; the penalty per extra thread beyond the cores."""
    sf_vals = [((t / s) - 1.0) / (t - 1) for t, s in speedups.items() if 1 < t <= cores and s > 0]
    serial = min(1.0, max(0.0, statistics.mean(sf_vals))) if sf_vals else None
    pen_vals = []
    base = speedups.get(cores) if cores > 1 else 1.0
    for t, s in speedups.items():
        if t > cores and base:
            pen_vals.append((1.0 - s / base) * cores / (t - cores))
    penalty = min(0.95, max(0.0, statistics.mean(pen_vals))) if pen_vals else None
    return serial, penalty


def efficiency_pairs(samples: Iterable[Sample], family: str, dtype: str | None, res: FitResult,
                     overhead: float, keyed: bool = False, clip: bool = True, ekey: str = ""
                     ) -> list[tuple[float, float, int]]:
    """(size, efficiency, threads) of each sample of `family` (and `dtype`, when given) with efficiency key
    `ekey` ("" for the family curve); samples with a stage-factor key only when `keyed` (and then only those)."""
    out = []
    for s in samples:
        if s.family != family or (dtype is not None and s.dtype != dtype) or bool(s.key) != keyed:
            continue
        if s.ekey != ekey or fresh_sample(s):
            continue
        busy = _busy(s, overhead, res.is_cpu)
        if family == "memory":
            if s.bytes <= 0:
                continue
            eff = s.bytes / (res.bandwidth(s.threads) * busy)
        else:
            if s.flops <= 0:
                continue
            eff = s.flops / (res.matrix_rate(s.threads, s.dtype) * busy * split_factor(s, res))
        out.append((sample_size(s), min(1.0, max(EFF_MIN, eff)) if clip else eff, s.threads))
    return out


def fit_stage_factors(samples: Sequence[Sample], res: FitResult, overhead: float) -> dict[str, float] | None:
    """Per stage-factor key: the efficiency of its samples over the conv curve's at their size (per thread
    count the median ratio, then the geometric mean over thread counts)."""
    from ..hardware.schema import EfficiencyCurve

    if "conv" not in res.curves:
        return None
    curve = EfficiencyCurve(points=tuple(res.curves["conv"]))
    by_key: dict[str, dict[int, list[float]]] = {}
    for s in samples:
        if s.family != "conv" or not s.key or s.dtype != "fp32":
            continue
        (size, eff, t), = efficiency_pairs([s], "conv", "fp32", res, overhead, keyed=True, clip=False)
        by_key.setdefault(s.key, {}).setdefault(t, []).append(eff / curve.at(size))
    if not by_key:
        return None
    out = {}
    for k, per_t in sorted(by_key.items()):
        meds = [statistics.median(v) for v in per_t.values()]
        out[k] = round(min(5.0, max(0.05, math.exp(statistics.fmean(math.log(m) for m in meds)))), 4)
    return out


def bin_curve(pairs: Sequence[tuple[float, float, int]], bins_per_decade: float) -> list[tuple[float, float]]:
    """Log-size bins -> [size, efficiency] points: per bin, the median per thread count, then their geometric mean."""
    bins: dict[int, list[tuple[float, float, int]]] = {}
    for size, eff, t in pairs:
        bins.setdefault(math.floor(math.log10(size) * bins_per_decade), []).append((size, eff, t))
    points = []
    for _, items in sorted(bins.items()):
        size = math.exp(statistics.fmean(math.log(s) for s, _, _ in items))
        per_t = {}
        for _, e, t in items:
            per_t.setdefault(t, []).append(e)
        effs = [statistics.median(v) for v in per_t.values()]
        eff = math.exp(statistics.fmean(math.log(e) for e in effs))
        points.append((float(f"{size:.4g}"), round(min(1.0, max(EFF_MIN, eff)), 4)))
    return points


def fit_elementwise(samples: Sequence[Sample], res: FitResult) -> dict[str, float] | None:
    """Per-core nominal FLOP rate of each elementwise op key (and "default": their median).

    A sample's rate is its FLOPs (as the cost rule counts them) over its time less the autograd
    per-kernel overhead, divided by the thread speedup; per key, the median per thread count, then the
    geometric mean over thread counts.
    """
    by_key: dict[str, dict[int, list[float]]] = {}
    for s in samples:
        if s.family != "elementwise" or s.flops <= 0 or not s.key:
            continue
        busy = max(s.time_s - s.kernels * res.kernel_overhead_s, 0.1 * s.time_s)
        per_core = s.flops / busy / (res.speedup(s.threads) if res.is_cpu else 1.0)
        by_key.setdefault(s.key, {}).setdefault(s.threads, []).append(per_core)
    if not by_key:
        return None
    from .kernels import THREADS_SEP

    out, by_t = {}, {}
    for k, per_t in sorted(by_key.items()):
        meds = [statistics.median(v) for v in per_t.values()]
        out[k] = math.exp(statistics.fmean(math.log(m) for m in meds))
        for t, v in per_t.items():
            by_t[f"{k}{THREADS_SEP}{t}"] = statistics.median(v)
    out["default"] = statistics.median(out.values())
    if len({t for per_t in by_key.values() for t in per_t}) > 1:  # per thread count too (traits.for_threads)
        out.update(by_t)
    return out


def fit_bandwidth(samples: Sequence[Sample], overhead: float, cores: int, is_cpu: bool, min_busy_share: float,
                  notes: list[str]) -> tuple[float, float | None]:
    """(memory bandwidth, per-core bandwidth): the best rate at the most threads measured (<= cores) and the best
    single-thread rate over the plain (in-place) memory samples; a GPU: the best rate, no per-core figure."""
    plain = [s for s in samples if s.family == "memory" and s.bytes > 0 and not s.ekey]
    mem = [s for s in plain if s.kernels * overhead <= (1.0 - min_busy_share) * s.time_s] or plain
    if not mem:
        raise ValueError("no memory samples: cannot fit a memory bandwidth")
    rate = [(s.threads, s.bytes / _busy(s, overhead, is_cpu)) for s in mem]
    if not is_cpu:
        return max(r for _, r in rate), None
    one = [r for t, r in rate if t == 1]
    per_core_bw = max(one) if one else None
    within = [t for t, _ in rate if t <= cores]
    tmax = max(within) if within else 1
    bw = max(r for t, r in rate if t == tmax)
    if tmax < cores:
        notes.append(f"memory bandwidth measured up to {tmax} of {cores} cores")
    return (max(bw, per_core_bw) if per_core_bw is not None else bw), per_core_bw


def fit_profile(samples: Sequence[Sample], options: FitOptions) -> FitResult:
    """Fit peak rates, bandwidths, overhead, thread scaling and efficiency curves from timed samples."""
    cores = options.cores if options.is_cpu else 1
    is_cpu = options.is_cpu
    notes: list[str] = []
    train_overhead = fit_overhead(samples, "dispatch")
    raw = fit_overhead(samples, "dispatch_raw")
    if train_overhead is None:
        train_overhead = raw or 0.0
        notes.append("no autograd dispatch samples: kernel_overhead is the raw per-call time" if raw
                     else "no dispatch samples: kernel_overhead set to 0")
    # what each benchmark call pays besides its roofline work (GPUs: launches overlap, nothing to subtract)
    overhead = (raw if raw is not None else train_overhead) if is_cpu else 0.0

    # thread scaling first: the per-core peak uses single-thread samples only
    speedups = measured_speedups(samples, overhead, options.speedup_min_time_s) if is_cpu else {}
    serial, penalty = fit_thread_scaling(speedups, cores) if is_cpu else (None, None)
    if is_cpu and serial is None:
        serial = options.default_serial_fraction
        notes.append(f"serial_fraction not measured (one thread count): default {serial}")
    if is_cpu and penalty is None:
        penalty = options.default_hyperthread_penalty
        notes.append(f"hyperthread_penalty not measured (no thread count beyond the {cores} physical cores): "
                     f"default {penalty}")

    peaks: dict[str, float] = {}
    nominal = options.nominal_peak_per_core or {}
    for dtype in ("fp32",) + LOWP_DTYPES:
        per_core = nominal.get(dtype) or fit_peak_per_core(samples, dtype, overhead, is_cpu, options.min_busy_share)
        if per_core:
            peaks[dtype] = per_core * cores
    if "fp32" not in peaks:
        raise ValueError("no fp32 matrix or conv samples: cannot fit a peak FLOP rate")

    bw, per_core_bw = fit_bandwidth(samples, overhead, cores, is_cpu, options.min_busy_share, notes)
    res = FitResult(peak_flops=peaks, memory_bandwidth_Bps=bw, bench_overhead_s=overhead,
                    per_core_bandwidth_Bps=per_core_bw, kernel_overhead_s=train_overhead, serial_fraction=serial, hyperthread_penalty=penalty, curves={},
                    cores=cores, is_cpu=is_cpu, speedups=speedups, notes=notes)
    res.gemm_split_rows = fit_gemm_split(samples, overhead, options.speedup_min_time_s) if is_cpu else None
    for fam in FIT_FAMILIES:
        pairs = efficiency_pairs(samples, fam, "fp32" if fam != "memory" else None, res, overhead)
        res.n_samples[fam] = len(pairs)
        if pairs:
            res.curves[fam] = bin_curve(pairs, options.bins_per_decade)
    for dtype in LOWP_DTYPES:
        if dtype not in peaks:
            continue
        for fam in ("matrix", "conv"):
            key = f"lowp_{fam}"
            if key in res.curves:
                continue  # bf16 first; fp16 only where bf16 gave nothing
            pairs = efficiency_pairs(samples, fam, dtype, res, overhead)
            if pairs:
                res.n_samples[key] = len(pairs)
                res.curves[key] = bin_curve(pairs, options.bins_per_decade)
    from .kernels import fit_cold_cost, fit_fresh_cost, fit_fresh_wall, fit_keyed_curves

    res.keyed_curves = fit_keyed_curves(samples, res, overhead, options.bins_per_decade)
    res.fresh_wall_s_per_byte = fit_fresh_wall(samples, res) if is_cpu else None
    res.fresh_s_per_byte = fit_fresh_cost(samples, res, ("memory",))
    res.cold_s_per_byte = fit_cold_cost(samples)
    conv_check = fit_fresh_cost(samples, res, ("conv",))  # one fault cost for every kernel: the conv residual is a check
    if conv_check is not None and res.fresh_s_per_byte:
        notes.append(f"fresh-buffer check: convolution samples' residual over their curves per fresh byte "
                     f"{conv_check * 1e9:.3g} ns/B vs streaming {res.fresh_s_per_byte * 1e9:.3g} ns/B (not fitted)")
    res.stage_factors = fit_stage_factors(samples, res, overhead)
    res.elementwise = fit_elementwise(samples, res)
    if res.elementwise:
        res.n_samples["elementwise"] = sum(1 for s in samples if s.family == "elementwise")
    from .lstm import add_lstm_fit

    add_lstm_fit(samples, res)
    if "conv" not in res.curves and "matrix" in res.curves:
        res.curves["conv"] = list(res.curves["matrix"])
        notes.append("no conv samples: the conv curve is the matrix curve")
    return res


# --- profile file ---------------------------------------------------------------------------------

def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _human(x: float, unit: str, digits: int = 5) -> str:
    """A quantity with a decimal prefix, e.g. 1.261e11, 'B/s' -> '126.1 GB/s' (parsed back by perfmodel.units)."""
    if unit == "s":
        for f, p in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n")):
            if abs(x) >= f:
                return f"{x / f:.{digits}g} {p}s"
        return f"{x / 1e-9:.{digits}g} ns"
    for f, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= f:
            return f"{x / f:.{digits}g} {p}{unit}"
    return f"{x:.{digits}g} {unit}"


def profile_dict(fit: FitResult, *, name: str, source: str, model: str = "", vendor: str = "",
                 memory_bytes: float, threads_per_core: int = 1, clock_hz: float | None = None, simd: str = "",
                 notes: str = "", eff_source: str = "", ts_source: str = "",
                 runtime_reserved_bytes: float = 0.0) -> dict[str, Any]:
    """The fitted numbers as a device profile mapping (SI numbers), ready for YAML and the Device schema."""
    d: dict[str, Any] = {
        "kind": "device", "name": name, "type": "cpu" if fit.is_cpu else "gpu", "vendor": vendor, "model": model,
        "source": source, "notes": notes,
        "peak_flops": {k: _human(v, "FLOPS") for k, v in fit.peak_flops.items()},
        "memory_bandwidth": _human(fit.memory_bandwidth_Bps, "B/s"),
        "memory": _human(memory_bytes, "B"),
        "kernel_overhead": _human(fit.kernel_overhead_s, "s"),
        "runtime_reserved": _human(runtime_reserved_bytes, "B") if runtime_reserved_bytes else "0 B",
    }
    if fit.is_cpu:
        d.update(sockets=1, cores=fit.cores, threads_per_core=threads_per_core)
        if clock_hz:
            d["clock"] = _human(clock_hz, "Hz")
        if simd:
            d["simd"] = simd
        ts: dict[str, Any] = {
            "serial_fraction": round(fit.serial_fraction or 0.0, 4),
            "hyperthread_penalty": round(fit.hyperthread_penalty or 0.0, 4),
        }
        if fit.per_core_bandwidth_Bps:
            ts["per_core_bandwidth"] = _human(fit.per_core_bandwidth_Bps, "B/s")
        ts["source"] = ts_source or "calibrated"
        d["thread_scaling"] = ts
    eff: dict[str, Any] = {}
    for fam, pts in fit.curves.items():
        eff[fam] = {"points": [[s, e] for s, e in pts]}
    if fit.elementwise:
        eff["elementwise"] = {k: _sig(v) for k, v in fit.elementwise.items()}
    if fit.stage_factors:
        eff["stage_factors"] = dict(fit.stage_factors)
    if fit.fresh_s_per_byte:
        from .kernels import FRESH_BYTES

        d["traits"] = {"fresh_buffer_bytes": FRESH_BYTES, "fresh_buffer_s_per_byte": _sig(fit.fresh_s_per_byte),
                       **({"fresh_buffer_conv_s_per_byte": _sig(fit.fresh_conv_s_per_byte)}
                          if fit.fresh_conv_s_per_byte else {}),
                       **({"fresh_buffer_wall_s_per_byte": {t: _sig(v) for t, v in fit.fresh_wall_s_per_byte.items()}}
                          if fit.fresh_wall_s_per_byte and len(fit.fresh_wall_s_per_byte) > 1 else {}),
                       "source": "calibrated: freshly allocated outputs of at least 32 MiB (glibc's largest mmap "
                                 "threshold) in streaming microbenchmarks"}
    if fit.cold_s_per_byte:
        from .kernels import COLD_BYTES_MIN

        d.setdefault("traits", {"source": "calibrated"})
        d["traits"].update(cold_buffer_bytes=COLD_BYTES_MIN,
                           cold_buffer_s_per_byte={t: _sig(v) for t, v in fit.cold_s_per_byte.items()})
        d["traits"]["source"] += "; cold buffers from streams writing into long-unused vs just-freed outputs"
    if fit.gemm_split_rows is not None:
        d.setdefault("traits", {"source": "calibrated"})
        d["traits"]["gemm_split_rows"] = _sig(fit.gemm_split_rows)
        d["traits"]["source"] += "; GEMM thread split from GEMM samples at 1 and n threads (calibration.threads)"
    if fit.keyed_curves:
        eff["curves"] = {k: {"points": [[x, e] for x, e in pts]} for k, pts in sorted(fit.keyed_curves.items())}
    eff["source"] = eff_source or "calibrated"
    d["efficiency"] = eff
    return d


def fresh_sample(s: Sample) -> bool:
    """A sample with buffers at or above the allocator's mmap threshold (calibration.kernels.written_bytes): it fits
    the fresh-buffer cost, not the curves."""
    from .kernels import written_bytes

    return written_bytes(s) > 0


def fresh_time(s: Sample, fit: FitResult) -> float:
    """The fresh-buffer cost of a sample under `fit` (0 below the threshold or without a fitted cost)."""
    from .kernels import written_bytes

    per = (fit.fresh_conv_s_per_byte if s.family == "conv" else None) or fit.fresh_s_per_byte
    if not per or not fresh_sample(s):
        return 0.0
    wall = fit.fresh_wall_s_per_byte or {}
    if s.threads in wall and not (s.family == "conv" and fit.fresh_conv_s_per_byte):
        return written_bytes(s) * wall[s.threads]
    return written_bytes(s) * per / (fit.speedup(s.threads) if fit.is_cpu else 1.0)


def predicted_sample_time(s: Sample, fit: FitResult, overhead_s: float | None = None) -> float:
    """What the fitted profile predicts for a sample, with compute.py's formulas (for residuals and tests).

    `overhead_s` is the per-kernel overhead to add (default: the benchmarks' own call overhead; pass
    fit.kernel_overhead_s for the time the same work would take inside a training step).
    """
    from ..hardware.schema import EfficiencyCurve
    from .lstm import lstm_sample_time

    if (lstm := lstm_sample_time(s, fit)) is not None:
        return lstm
    curves = {k: EfficiencyCurve(points=tuple(v)) for k, v in fit.curves.items()}
    keyed = {k: EfficiencyCurve(points=tuple(v)) for k, v in fit.keyed_curves.items()}
    mem_curve = keyed.get(s.ekey, curves.get("memory")) if s.family in ("memory", "elementwise") else curves.get("memory")
    k = max(1, s.kernels)
    lowp = s.dtype in LOWP_DTYPES
    if s.family == "elementwise":
        rate = (fit.elementwise or {}).get(s.key) or (fit.elementwise or {}).get("default")
        comp = s.flops / (rate * fit.speedup(s.threads)) if (rate and s.flops) else 0.0
        memt = s.bytes / (fit.bandwidth(s.threads) * mem_curve.at(s.bytes / k)) if (s.bytes and mem_curve) else 0.0
        return max(comp, memt) + fresh_time(s, fit) + k * (fit.kernel_overhead_s if overhead_s is None else overhead_s)
    if s.family in ("matrix", "conv"):
        curve = curves.get(f"lowp_{s.family}") if lowp else None
        curve = curve or keyed.get(s.ekey) or curves[s.family]
        factor = (fit.stage_factors or {}).get(s.key, 1.0) if s.key else 1.0
        comp = s.flops / (fit.matrix_rate(s.threads, s.dtype if s.dtype in fit.peak_flops else "fp32")
                          * curve.at(s.flops / k) * factor * split_factor(s, fit)) if s.flops else 0.0
    else:
        vec = fit.matrix_rate(s.threads, "fp32")
        comp = s.flops / (vec * mem_curve.at(s.bytes / k)) if s.flops else 0.0
    memt = s.bytes / (fit.bandwidth(s.threads) * mem_curve.at(s.bytes / k)) if s.bytes and mem_curve else 0.0
    roof = max(comp, memt) + fresh_time(s, fit)
    launch = k * (fit.bench_overhead_s if overhead_s is None else overhead_s)
    if fit.is_cpu:
        return roof + launch
    return max(roof, launch)


def residuals(samples: Sequence[Sample], fit: FitResult) -> list[dict[str, Any]]:
    """Per-sample predicted vs measured time (signed % error), for the calibration report."""
    out = []
    for s in samples:
        if s.family.startswith("dispatch") or (s.family in ("matrix", "conv") and s.dtype not in fit.peak_flops):
            continue
        if s.family in ("check", "cold"):
            continue
        p = predicted_sample_time(s, fit)
        out.append({"label": s.label, "family": s.family, "dtype": s.dtype, "threads": s.threads,
                    "measured_s": s.time_s, "predicted_s": p, "error_pct": 100.0 * (p - s.time_s) / s.time_s})
    return out
