"""Device behaviour as data (traits) and efficiency lookup by a work item's efficiency key.

Traits say how a device runs kernels, where code used to ask "is it a CPU?". A profile may set any of
them under `traits:`; an unset trait takes the default of the device's `type` (TRAIT_DEFAULTS), so
every profile written before traits existed behaves as before:

- launch_overlaps: a kernel's launch overlaps the previous kernel's execution (an asynchronous queue:
  GPUs, accelerators), so each kernel costs max(roofline, overhead); otherwise dispatch adds to compute
  (CPUs run the framework and the kernel on the same core).
- optimizer_kernels: how the optimizer step is launched: "per-tensor" (PyTorch's for-loop, one kernel
  per pass per tensor: CPUs), "foreach" (multi-tensor kernels over chunks of tensors: GPUs), "fused"
  (one kernel per chunk doing every pass: fused optimizers, XLA).
- thread_model: "cores": the `threads` option applies; compute scales by Amdahl's law up to the physical
  cores, threads beyond them cost a little (ThreadScaling), and the device peak is shared by its cores;
  "none": one device-wide rate, `threads` is ignored.
- bandwidth_model: "per-core": memory bandwidth grows with threads up to the socket limit (CPUs);
  "device": the device reaches its bandwidth on its own (GPUs, accelerators).
- lowp_vector_factor: elementwise FLOP rate for low-precision dtypes (fp16, bf16, fp8, int8) relative
  to fp32 (GPUs with fp16: 2, packed half-precision math; CPUs: 1).
- host_memory_is_device_memory: the device computes out of host memory (CPUs): no host-to-device copy
  of the input, and an implicit node's devices exchange data through that memory.

Efficiency keys ("/"-separated, most specific last, e.g. "conv/depthwise") look up curves in a
profile's `efficiency.curves` along the chain key, its prefixes, the family curve set in the profile
(matrix, conv, memory), the profile's "default" curve, the family's built-in curve; low-precision dtypes
walk the same chain in `efficiency.lowp_curves` / lowp_<family> first. A new kernel class is a key in a
cost rule plus profile data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

LOWP_DTYPES = ("tf32", "fp16", "bf16", "fp8", "int8")  # dtypes that use the lowp_ efficiency curves
LOWP_VECTOR_DTYPES = ("fp16", "bf16", "fp8", "int8")  # dtypes whose elementwise math may run packed


class DeviceTraits(BaseModel):
    """Behaviour traits as written in a profile; None: the default of the device type (see module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    launch_overlaps: bool | None = None
    optimizer_kernels: Literal["per-tensor", "foreach", "fused"] | None = None
    thread_model: Literal["cores", "none"] | None = None
    bandwidth_model: Literal["per-core", "device"] | None = None
    lowp_vector_factor: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    host_memory_is_device_memory: bool | None = None
    # A work buffer of at least fresh_buffer_bytes is mapped afresh by the allocator on every call (glibc: 32 MiB,
    # its largest mmap threshold) and its pages are faulted in and zeroed: each such written byte costs
    # fresh_buffer_s_per_byte more (calibrated on CPUs; None: no such cost). The same cost per byte prices the heap
    # pages a step faults in again after the allocator gave them back (engine.heap, the stack's host_heap)
    fresh_buffer_bytes: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    fresh_buffer_s_per_byte: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    fresh_buffer_conv_s_per_byte: float | None = Field(default=None, ge=0, allow_inf_nan=False)  # conv work (its
    # work buffers are faulted in too, so more per output byte); None: fresh_buffer_s_per_byte
    # Measured wall seconds per such byte per thread count (faulting speeds up less than compute with threads); a
    # thread count not listed takes the largest listed below it; None: fresh_buffer_s_per_byte / thread speedup
    fresh_buffer_wall_s_per_byte: dict[int, float] | None = None
    # A smaller work buffer (cold_buffer_bytes up to the fresh threshold) comes from the allocator's heap, memory a
    # training step last touched long ago: each written line is first read from DRAM (write-allocate), which a
    # microbenchmark re-using its just-freed output never pays. Extra seconds per written byte, per thread count
    # (calibrated on CPUs from streams with cold vs just-freed outputs; a thread count not listed takes the
    # largest listed below it)
    cold_buffer_bytes: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    cold_buffer_s_per_byte: dict[int, float] | None = None
    # A CPU GEMM library (oneDNN/MKL) splits a GEMM's output rows between threads, and each thread also pays a
    # fixed share that does not split (it packs/streams the other operand whole): worth gemm_split_rows output
    # rows of one thread's work (calibrated from GEMM samples at several row counts and thread counts; None: the
    # thread model's speedup for every GEMM). See gemm_split_speedup.
    gemm_split_rows: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    source: str = ""


@dataclass(frozen=True, slots=True)
class Traits:
    """Resolved traits of one device: every field set."""

    launch_overlaps: bool
    optimizer_kernels: str
    thread_model: str
    bandwidth_model: str
    lowp_vector_factor: float
    host_memory_is_device_memory: bool

    @property
    def uses_threads(self) -> bool:
        """The `threads` option applies (compute and bandwidth scale with threads over physical cores)."""
        return self.thread_model == "cores"


_GPU = dict(launch_overlaps=True, optimizer_kernels="foreach", thread_model="none", bandwidth_model="device",
            host_memory_is_device_memory=False)
TRAIT_DEFAULTS: dict[str, dict] = {
    "cpu": dict(launch_overlaps=False, optimizer_kernels="per-tensor", thread_model="cores",
                bandwidth_model="per-core", lowp_vector_factor=1.0, host_memory_is_device_memory=True),
    "gpu": _GPU,
    "accelerator": _GPU,
}
# GPUs (and accelerators) with fp16 math run low-precision elementwise work at twice the fp32 rate.
PACKED_LOWP_VECTOR_FACTOR = 2.0


def _default_lowp_vector_factor(device) -> float:
    return PACKED_LOWP_VECTOR_FACTOR if device.supports("fp16") else 1.0


def device_traits(device) -> Traits:
    """The device's traits: those its profile sets, the defaults of its type for the rest."""
    cache = _TRAITS_CACHE.get(id(device))
    if cache is not None and cache[0] is device:
        return cache[1]
    given = getattr(device, "traits", None) or DeviceTraits()
    vals = dict(TRAIT_DEFAULTS[device.type])
    vals.setdefault("lowp_vector_factor", None)
    for k in vals:
        v = getattr(given, k)
        if v is not None:
            vals[k] = v
    if vals["lowp_vector_factor"] is None:
        vals["lowp_vector_factor"] = _default_lowp_vector_factor(device)
    t = Traits(**vals)
    if len(_TRAITS_CACHE) > _CACHE_SIZE:
        _TRAITS_CACHE.clear()
    _TRAITS_CACHE[id(device)] = (device, t)  # holds the device, so its id is not reused while cached
    return t


_TRAITS_CACHE: dict[int, tuple] = {}
_CURVE_CACHE: dict[tuple, tuple] = {}
_CACHE_SIZE = 256


def vector_factor(device, dtype: str) -> float:
    """Elementwise FLOP rate of `dtype` relative to fp32 on `device` (lowp_vector_factor for low precision)."""
    return device_traits(device).lowp_vector_factor if dtype in LOWP_VECTOR_DTYPES else 1.0


# ---------------------------------------------------------------------------------------------
# peak rates under the thread and bandwidth models


@dataclass(frozen=True, slots=True)
class Peaks:
    """Rates one device reaches for one dtype and thread count, before efficiency curves."""

    matrix_flops: float  # FLOP/s of matrix/conv work in the dtype
    vector_flops: float  # FLOP/s of elementwise arithmetic
    bandwidth_Bps: float
    overhead_s: float  # per-kernel launch/dispatch cost
    overhead_overlaps: bool  # launch_overlaps
    thread_factor: float  # compute speed relative to one core ("cores" thread model) or 1
    threads: int | None  # threads used ("cores" thread model), else None


def thread_speedup(device, threads: int) -> float:
    """Compute speed at `threads` relative to one thread: Amdahl up to physical cores, then a hyper-thread penalty."""
    cores = device.cores or 1
    ts = device.thread_scaling
    n = min(threads, cores)
    s = n / (1.0 + ts.serial_fraction * (n - 1))
    extra = max(0, threads - cores)
    if extra:
        s *= max(0.05, 1.0 - ts.hyperthread_penalty * extra / cores)
    return s


def gemm_split_speedup(rows, threads, split_rows: float):
    """Speedup at `threads` over one thread of a GEMM with `rows` output rows (scalar or array) when its rows are
    split evenly between the threads and each thread pays a fixed share worth `split_rows` rows that does not
    split (packing the other operand): time ~ rows / threads + split_rows, so speedup = (rows + split_rows) /
    (rows / threads + split_rows): 1 at one thread, towards `threads` for rows >> split_rows. Example: 32 rows,
    2 threads, split_rows 16: 48 / 32 = 1.5."""
    r = np.asarray(rows, dtype=float)
    return (r + split_rows) / (r / threads + split_rows)


def gemm_split(device, threads: int | None) -> tuple[int, float, float] | None:
    """(physical threads used n, gemm_split_rows, thread_speedup at n) when the device's traits give
    gemm_split_rows and a "cores" thread model applies at `threads` > 1; else None (every GEMM scales as
    thread_speedup says). A GEMM's rate is then the thread-model rate x gemm_split_speedup(rows, n, split_rows) /
    thread_speedup(n): the split replaces Amdahl's speedup over the physical cores (a hyper-thread penalty stays)."""
    tr = getattr(device, "traits", None)
    rows = getattr(tr, "gemm_split_rows", None) if tr is not None else None
    if rows is None or threads is None or threads <= 1 or not device_traits(device).uses_threads:
        return None
    n = min(threads, device.cores or 1)
    return n, rows, thread_speedup(device, n)


def per_core_bandwidth(device, threads: int) -> float:
    """Memory bandwidth reachable with `threads`: per-core limited until the socket limit (2x fair share if unset)."""
    cores = device.cores or 1
    per_core = device.thread_scaling.per_core_bandwidth_Bps or 2.0 * device.memory_bandwidth_Bps / cores
    bw = min(device.memory_bandwidth_Bps, per_core * min(threads, cores))
    extra = max(0, threads - cores)
    if extra:
        bw *= max(0.05, 1.0 - device.thread_scaling.hyperthread_penalty * extra / cores)
    return bw


def device_peaks(device, dtype: str, threads: int | None = None) -> Peaks:
    """Peak rates of `device` for `dtype` under its traits.

    "cores" thread model: the peak is shared by the physical cores and `threads` (default: all cores) scale
    one core's share by thread_speedup; "none": the device-wide peak, `threads` ignored. Elementwise math
    runs at the fp32 peak x vector_factor. Bandwidth: "per-core" grows with threads (per_core_bandwidth),
    "device" is the profile's memory bandwidth. The caller checks that the device supports `dtype`.
    """
    t = device_traits(device)
    peak, vector = device.peak(dtype), device.peak("fp32") * vector_factor(device, dtype)
    used, f = None, 1.0
    if t.uses_threads:
        cores = device.cores or 1
        used = threads if threads is not None else cores
        f = thread_speedup(device, used)
        peak, vector = peak / cores * f, vector / cores * f
    if t.bandwidth_model == "per-core":
        bw = per_core_bandwidth(device, used if used is not None else (device.cores or 1))
    else:
        bw = device.memory_bandwidth_Bps
    return Peaks(peak, vector, bw, device.kernel_overhead_s, t.launch_overlaps, f, used)


# ---------------------------------------------------------------------------------------------
# efficiency by key


def key_prefixes(key: str) -> tuple[str, ...]:
    """"conv/strided/1x1" -> ("conv/strided/1x1", "conv/strided", "conv")."""
    parts = key.split("/")
    return tuple("/".join(parts[:i]) for i in range(len(parts), 0, -1))


def key_chain(key: str, family: str) -> tuple[str, ...]:
    """Names tried for `key` of `family` work, most specific first: prefixes, family, "default"."""
    chain = [k for k in key_prefixes(key) if k != family] if key else []
    return tuple(chain) + (family, "default")


def efficiency_curve(eff, key: str, family: str, dtype: str = "fp32"):
    """The EfficiencyCurve for work of `family` keyed `key` in Efficiency `eff`, at `dtype`.

    Low-precision dtypes first walk key_chain in `lowp_curves` (the family step: the profile's
    lowp_<family>), so low-precision data beats fp32 data; then, as fp32 dtypes do, key_chain in `curves`
    (the family step: the <family> field when the profile sets it), and finally the family's built-in curve.
    A profile without keyed curves answers as Efficiency.curve(family, dtype). Memoised per (Efficiency, key).
    """
    lowp = dtype in LOWP_DTYPES
    ck = (id(eff), key, family, lowp)
    hit = _CURVE_CACHE.get(ck)
    if hit is not None and hit[0] is eff:
        return hit[1]
    curve = _lookup(eff, key, family, lowp)
    if len(_CURVE_CACHE) > 16 * _CACHE_SIZE:
        _CURVE_CACHE.clear()
    _CURVE_CACHE[ck] = (eff, curve)
    return curve


def _lookup(eff, key: str, family: str, lowp: bool):
    chain = key_chain(key, family)
    if lowp:
        lowp_curves = getattr(eff, "lowp_curves", None) or {}
        for name in chain:
            if name in lowp_curves:
                return lowp_curves[name]
            if name == family and getattr(eff, f"lowp_{family}", None) is not None:
                return getattr(eff, f"lowp_{family}")
    curves, given = getattr(eff, "curves", None) or {}, eff.model_fields_set
    for name in chain:
        if name in curves:
            return curves[name]
        if name == family and family in given:
            return getattr(eff, family)
    return getattr(eff, family)


THREADS_SEP = "@t"  # "<key>@t<threads>": a curve or per-op rate a calibration fitted at that thread count only
_THREADS_CACHE: dict[tuple, tuple] = {}


def _pick_threads(table: dict, threads: int) -> dict:
    """`table` without its "@t<n>" entries, each key taking its entry of the largest fitted n <= threads (its
    pooled entry when it has none): the keys fitted per thread count answer for `threads`."""
    out = {k: v for k, v in table.items() if THREADS_SEP not in k}
    best: dict[str, int] = {}
    for k in table:
        if THREADS_SEP in k:
            base, n = k.rsplit(THREADS_SEP, 1)
            if int(n) <= threads and int(n) > best.get(base, 0):
                best[base] = int(n)
    out.update({base: table[f"{base}{THREADS_SEP}{n}"] for base, n in best.items()})
    return out


def for_threads(eff, threads: int | None):
    """The Efficiency `eff` as it holds at `threads` (CPUs): where a calibration fitted curves or per-op rates per
    thread count ("<key>@t<n>" in `curves` / `elementwise`), they replace the pooled ones, the family curves
    (matrix, conv, memory) included; shared caches and memory bandwidth make memory-bound kernels scale with
    threads unlike compute, which pooled curves cannot say. Unchanged without such entries or threads. Memoised."""
    curves, rates = getattr(eff, "curves", None) or {}, getattr(eff, "elementwise", None) or {}
    if threads is None or not any(THREADS_SEP in k for k in (*curves, *rates)):
        return eff
    ck = (id(eff), threads)
    hit = _THREADS_CACHE.get(ck)
    if hit is not None and hit[0] is eff:
        return hit[1]
    upd: dict = {}
    if curves:
        upd["curves"] = _pick_threads(curves, threads)
        upd.update({f: upd["curves"][f] for f in ("matrix", "conv", "memory") if f in upd["curves"]})
    if rates:
        upd["elementwise"] = _pick_threads(rates, threads)
    out = eff.model_copy(update=upd)
    if len(_THREADS_CACHE) > _CACHE_SIZE:
        _THREADS_CACHE.clear()
    _THREADS_CACHE[ck] = (eff, out)
    return out


def efficiency_at(curve, sizes) -> np.ndarray:
    """curve.at(size) for an array of sizes (the same numbers, vectorised)."""
    s = np.asarray(sizes, dtype=float)
    if curve.points:
        xs = np.log(np.array([p[0] for p in curve.points]))
        ys = np.array([p[1] for p in curve.points])
        with np.errstate(divide="ignore"):
            ls = np.log(np.maximum(s, 1e-300))
        return np.interp(ls, xs, ys)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = curve.max * s / (s + curve.half)
    return np.where(s <= 0, curve.max, e)


def curve_table(eff, keys, families, dtype: str = "fp32") -> tuple[tuple, np.ndarray]:
    """The distinct curves that rows (keys[i], families[i]) use, and each row's index into them.

    Work it out once per (work table, device, dtype); efficiency_by_index then costs a few numpy passes.
    """
    curves: list = []
    where: dict[int, int] = {}
    index = np.empty(len(keys), dtype=np.int64)
    for i, (k, f) in enumerate(zip(keys, families)):
        c = efficiency_curve(eff, k, f, dtype)
        j = where.get(id(c))
        if j is None:
            j = where[id(c)] = len(curves)
            curves.append(c)
        index[i] = j
    return tuple(curves), index


def efficiency_by_index(curves, index: np.ndarray, sizes) -> np.ndarray:
    """Efficiency of row i = curves[index[i]] at sizes[i]."""
    sizes = np.asarray(sizes, dtype=float)
    if len(curves) == 1:
        return efficiency_at(curves[0], sizes)
    out = np.empty(len(sizes))
    for j, c in enumerate(curves):
        m = index == j
        out[m] = efficiency_at(c, sizes[m])
    return out


def efficiency_lookup(eff, keys, families, sizes, dtype: str = "fp32") -> np.ndarray:
    """Efficiencies of many work items at once: item i has key keys[i], family families[i], size sizes[i]."""
    curves, index = curve_table(eff, keys, families, dtype)
    return efficiency_by_index(curves, index, sizes)


# ---------------------------------------------------------------------------------------------
# calibrated per-op rates and stage factors, by the legacy op key or by efficiency key


def rate_keys(key: str, op: str | None, stage: str) -> tuple[str, ...]:
    """Keys of Efficiency.elementwise tried for memory work: "<op>[.backward]", then the efficiency key's
    prefixes with the same suffix, then "default" (the op key first, so calibrated profiles keep their numbers)."""
    sfx = "" if stage == "forward" else ".backward"
    names = [f"{op}{sfx}"] if op else []
    if key:
        names += [f"{k}{sfx}" for k in key_prefixes(key)]
    return tuple(names) + ("default",)


def elementwise_rate(eff, key: str, op: str | None, stage: str) -> float | None:
    """Calibrated FLOP/s (one core) of memory work's arithmetic, or None when the profile has no per-op rates."""
    return rate_in(eff.elementwise, key, op, stage)


def rate_in(table: dict | None, key: str, op: str | None, stage: str) -> float | None:
    """The first rate of `table` along rate_keys(key, op, stage), or None."""
    if not table:
        return None
    for name in rate_keys(key, op, stage):
        v = table.get(name)
        if v:
            return v
    return None


def stage_factor_keys(key: str, op: str | None, stage: str) -> tuple[str, ...]:
    """Keys of Efficiency.stage_factors tried for a conv's stage: the legacy "<op>.<stage>/strided[-1x1]"
    (from a conv key with a "strided" part, "-1x1" first for a 1x1 kernel), then "<key prefix>@<stage>" for each prefix."""
    legacy: list[str] = []
    parts = key.split("/")
    if op and parts[0] == "conv" and "strided" in parts:
        if "1x1" in parts:
            legacy.append(f"{op}.{stage}/strided-1x1")
        legacy.append(f"{op}.{stage}/strided")
    return tuple(legacy) + tuple(f"{k}@{stage}" for k in key_prefixes(key))


def stage_factor(eff, key: str, op: str | None, stage: str) -> float:
    """Multiplier on the efficiency of one stage of `key` work (1 when the profile gives none)."""
    return factor_in(eff.stage_factors, key, op, stage)


def factor_in(table: dict | None, key: str, op: str | None, stage: str) -> float:
    """The first factor of `table` along stage_factor_keys(key, op, stage), or 1."""
    if not table:
        return 1.0
    for name in stage_factor_keys(key, op, stage):
        if name in table:
            return table[name]
    return 1.0
