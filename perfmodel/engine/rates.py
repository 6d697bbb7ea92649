"""Effective rates of one device for one dtype and thread count: peaks, bandwidth, efficiency curves, CPU thread scaling."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..hardware.schema import Device, Efficiency, EfficiencyCurve

# Fraction of the per-kernel dispatch cost hidden behind device execution. GPUs run kernels
# asynchronously, so a launch overlaps the previous kernel; CPUs dispatch and compute on the same core.
GPU_OVERHEAD_OVERLAPS = True


@dataclass(frozen=True, slots=True)
class Rates:
    """Effective peak rates of one device for one dtype and thread count."""

    matrix_flops: float  # FLOP/s for matrix/conv work in the compute dtype (tensor cores where used)
    vector_flops: float  # FLOP/s for elementwise work
    bandwidth_Bps: float
    overhead_s: float
    overhead_overlaps: bool
    matrix: EfficiencyCurve
    conv: EfficiencyCurve
    memory: EfficiencyCurve
    thread_factor: float  # compute speed relative to one core (CPUs) or 1 (GPUs)
    # FLOP/s of memory-family arithmetic by op key ("<op>", "<op>.backward", "default"), at this thread
    # count; None: vector_flops x memory efficiency (see Efficiency.elementwise)
    elementwise: dict[str, float] | None = None
    stage_factors: dict[str, float] | None = None  # see Efficiency.stage_factors
    keyed: Efficiency | None = None  # the profile's Efficiency when it has keyed curves (curves / lowp_curves)
    dtype: str = "fp32"  # the dtype these rates are for (keyed curves look up low-precision data first)


def thread_speedup(device: Device, threads: int) -> float:
    """Compute speed at `threads` relative to one thread: Amdahl up to physical cores, then a hyper-thread penalty."""
    cores = device.cores or 1
    ts = device.thread_scaling
    n = min(threads, cores)
    s = n / (1.0 + ts.serial_fraction * (n - 1))
    extra = max(0, threads - cores)
    if extra:
        s *= max(0.05, 1.0 - ts.hyperthread_penalty * extra / cores)
    return s


def cpu_bandwidth(device: Device, threads: int) -> float:
    """Memory bandwidth reachable with `threads`: per-core limited until the socket limit (2x fair share if unset)."""
    cores = device.cores or 1
    per_core = device.thread_scaling.per_core_bandwidth_Bps or 2.0 * device.memory_bandwidth_Bps / cores
    bw = min(device.memory_bandwidth_Bps, per_core * min(threads, cores))
    extra = max(0, threads - cores)
    if extra:
        bw *= max(0.05, 1.0 - device.thread_scaling.hyperthread_penalty * extra / cores)
    return bw


def device_rates(device: Device, dtype: str, threads: int | None = None) -> Rates:
    """Effective rates for `dtype` on `device`; CPUs scale from one core's share of the peak by `threads`."""
    if not device.supports(dtype):
        have = ", ".join(k for k in device.peak_flops if k != "fp64")
        raise InputError(f"device '{device.name}' has no {dtype} rate in its profile; it supports: {have}")
    peak = device.peak(dtype)
    vector = device.peak("fp32")
    lowp = dtype in ("fp16", "bf16", "fp8", "int8")
    eff = device.efficiency
    if device.is_cpu:
        cores = device.cores or 1
        t = threads if threads is not None else cores
        if t < 1:
            raise InputError(f"threads must be >= 1, got {t}")
        f = thread_speedup(device, t)
        return Rates(
            matrix_flops=peak / cores * f, vector_flops=vector / cores * f, bandwidth_Bps=cpu_bandwidth(device, t),
            overhead_s=device.kernel_overhead_s, overhead_overlaps=False,
            matrix=eff.curve("matrix", dtype), conv=eff.curve("conv", dtype), memory=eff.memory, thread_factor=f,
            elementwise={k: v * f for k, v in eff.elementwise.items()} if eff.elementwise else None,
            stage_factors=dict(eff.stage_factors) if eff.stage_factors else None,
            keyed=_keyed(eff), dtype=dtype,
        )
    return Rates(
        matrix_flops=peak, vector_flops=vector * (2.0 if lowp and device.supports("fp16") else 1.0),
        bandwidth_Bps=device.memory_bandwidth_Bps, overhead_s=device.kernel_overhead_s,
        overhead_overlaps=GPU_OVERHEAD_OVERLAPS,
        matrix=eff.curve("matrix", dtype), conv=eff.curve("conv", dtype), memory=eff.memory, thread_factor=1.0,
        elementwise=dict(eff.elementwise) if eff.elementwise else None,
        stage_factors=dict(eff.stage_factors) if eff.stage_factors else None, keyed=_keyed(eff), dtype=dtype,
    )


def _keyed(eff: Efficiency) -> Efficiency | None:
    """The profile's Efficiency when it maps efficiency keys to curves, else None (family curves only)."""
    return eff if (eff.curves or eff.lowp_curves) else None


def stage_factor(factors: dict[str, float], key: str) -> float:
    """The factor for `key`; a "/strided-1x1" key a profile lacks falls back to its "/strided" one, then 1."""
    if key in factors:
        return factors[key]
    if key.endswith("/strided-1x1"):
        return factors.get(key.removesuffix("-1x1"), 1.0)
    return 1.0
