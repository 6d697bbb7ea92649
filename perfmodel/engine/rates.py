"""Effective rates of one device for one dtype and thread count: peaks, bandwidth, efficiency curves, CPU thread scaling."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..hardware.schema import Device, Efficiency, EfficiencyCurve
from ..hardware.traits import device_peaks, device_traits, for_threads, gemm_split, thread_speedup
from ..hardware.traits import per_core_bandwidth as cpu_bandwidth
from ..kernels import GpuArch, SoftwareStack, load_arch, load_stack
from ..kernels.gemm import tensor_core_math
from ..kernels.schema import CpuAttention
from .cpu_attention import stack_attention
from .cpu_stack import check_steps

# Whether a GPU's kernel launch overlaps execution: the default of the launch_overlaps trait (hardware/traits.py)
GPU_OVERHEAD_OVERLAPS = True
__all__ = ["GPU_OVERHEAD_OVERLAPS", "Rates", "cpu_bandwidth", "device_rates", "stage_factor", "thread_speedup"]


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
    fresh_bytes: float | None = None  # written bytes per kernel from which a buffer is faulted in afresh (traits)
    fresh_s_per_byte: float = 0.0  # extra seconds per such written byte, at this thread count
    fresh_conv_s_per_byte: float = 0.0  # the same for conv work
    cold_bytes: float | None = None  # buffers from this size up to fresh_bytes are cold heap memory (traits)
    cold_s_per_byte: float = 0.0  # extra seconds per byte of such buffers, at this thread count
    kernel: tuple[GpuArch, SoftwareStack] | None = None  # (architecture, software stack) of the kernel model
    gemm_split: tuple[int, float, float] | None = None  # CPU GEMM thread split (hardware.traits.gemm_split)
    cpu_stack: SoftwareStack | None = None  # the device's CPU software stack (engine.cpu_stack), else None


def device_rates(device: Device, dtype: str, threads: int | None = None) -> Rates:
    """Effective rates for `dtype` on `device` under its traits (hardware.traits.device_peaks): a "cores" thread
    model scales one core's share of the peak by `threads`; calibrated per-op rates scale the same way."""
    if not device.supports(dtype):
        have = ", ".join(k for k in device.peak_flops if k != "fp64")
        raise InputError(f"device '{device.name}' has no {dtype} rate in its profile; it supports: {have}")
    if threads is not None and threads < 1 and device_traits(device).uses_threads:
        raise InputError(f"threads must be >= 1, got {threads}")
    p = device_peaks(device, dtype, threads)
    eff, f = for_threads(device.efficiency, p.threads), p.thread_factor  # per-thread-count curves (CPUs)
    return Rates(
        matrix_flops=p.matrix_flops, vector_flops=p.vector_flops, bandwidth_Bps=p.bandwidth_Bps,
        overhead_s=p.overhead_s, overhead_overlaps=p.overhead_overlaps,
        matrix=eff.curve("matrix", dtype), conv=eff.curve("conv", dtype), memory=eff.memory, thread_factor=f,
        elementwise={k: v * f for k, v in eff.elementwise.items()} if eff.elementwise else None,
        stage_factors=dict(eff.stage_factors) if eff.stage_factors else None, keyed=_keyed(eff), dtype=dtype,
        kernel=kernel_target(device), **_fresh(device, f, p.threads), **_cold(device, p.threads),
        gemm_split=gemm_split(device, p.threads), cpu_stack=cpu_stack(device),
    )


def kernel_target(device: Device) -> tuple[GpuArch, SoftwareStack] | None:
    """(architecture, software stack) when the profile names both (Device.gpu_arch, Device.software_stack):
    its GEMM, convolution, RNN and attention work then takes the kernel model's time; else None."""
    arch, stack = getattr(device, "gpu_arch", None), getattr(device, "software_stack", None)
    if not arch or not stack:
        return None
    return _with_device_peak(load_arch(arch), device), load_stack(stack)


def layout_note(device: Device, dtype: str, memory_format: str) -> str | None:
    """A warning when `memory_format` changes nothing the model prices on `device` at `dtype` (only tensor-core
    convolutions under a stack that names their layout convert NCHW activations), else None."""
    if memory_format == "contiguous":  # the default: nothing to check (evaluate calls this on every prediction)
        return None
    kt = kernel_target(device)
    if kt is not None and kt[1].tensor_core_conv_layout is not None and tensor_core_math(dtype, *kt):
        return None
    return (f"memory_format={memory_format!r} changes nothing here: only tensor-core convolutions on a GPU convert "
            f"NCHW activations (cuDNN), and {dtype} on '{device.name}' runs none")


PEAK_ROUNDING = 0.02  # gpu_arch per-clock figures are the datasheet peak / (SMs x clock), rounded


def _with_device_peak(arch: GpuArch, device: Device) -> GpuArch:
    """`arch` with each dtype's per-clock FLOPs scaled so its peak (SMs x boost clock x per clock) is the device
    profile's `peak_flops`: the profile is the authority (a what-if device with 2x the peak runs 2x the math).
    Ratios within PEAK_ROUNDING of 1 are the rounding of the arch file and are left alone."""
    per_sm = dict(arch.flops_per_clock_per_sm)
    changed = False
    for d, per_clock in arch.flops_per_clock_per_sm.items():
        peak = device.peak_flops.get(d)
        ratio = peak / (arch.sm_count * arch.boost_clock_Hz * per_clock) if peak else 1.0
        if abs(ratio - 1.0) > PEAK_ROUNDING:
            per_sm[d], changed = per_clock * ratio, True
    return arch.model_copy(update={"flops_per_clock_per_sm": per_sm}) if changed else arch


def fused_attention(device: Device) -> bool:
    """Whether the device's software stack runs attention as one fused (flash) kernel, which keeps the output and
    its row statistics but no score, probability or dropout-mask matrix, and recomputes them in backward: a GPU
    stack with the kernel model (both arch and stack named, as kernel_target) or a CPU stack with cpu_attention."""
    stack = getattr(device, "software_stack", None)
    return bool(stack and load_stack(stack).fused_attention and
                (getattr(device, "gpu_arch", None) or cpu_fused_attention(device) is not None))


def fused_core_saved(device: Device, costs) -> list[float]:
    """Per layer cost: the attention-core bytes (ops.attention extra core_saved_bytes: scores, probabilities, mask)
    that a fused kernel does not keep; 0 where attention is not fused: no fused stack, or a layer with dropout on a
    CPU flash kernel that refuses dropout (PyTorch then runs the math path, which keeps them)."""
    if not fused_attention(device):
        return [0.0] * len(costs)
    cpu = cpu_fused_attention(device)
    math_with_dropout = cpu is not None and not cpu.dropout
    return [0.0 if math_with_dropout and c.extra.get("dropout", 0.0) > 0 else c.extra.get("core_saved_bytes", 0.0)
            for c in costs]


def cpu_stack(device: Device) -> SoftwareStack | None:
    """The device's software stack when it is a CPU stack (target cpu; its per-step RNN kernel list checked), else
    None."""
    stack = getattr(device, "software_stack", None)
    s = load_stack(stack) if stack else None
    if s is None or s.target != "cpu":
        return None
    check_steps(s.cpu_rnn_steps)
    return s


def cpu_fused_attention(device: Device) -> CpuAttention | None:
    """The `cpu_attention` block of the device's software stack when it is a CPU stack with fused attention."""
    return stack_attention(cpu_stack(device))


def _at_threads(table: dict, threads: int):
    """The entry of a per-thread-count table at `threads`: the largest listed count <= threads, else the smallest."""
    return table[max((t for t in table if t <= threads), default=min(table))]


def _cold(device: Device, threads: int | None) -> dict:
    """Rates fields of the cold-buffer cost (DeviceTraits.cold_buffer_*) at `threads`: the entry of the largest
    listed thread count <= threads (the smallest when all are above); none without the trait."""
    tr = getattr(device, "traits", None)
    if tr is None or not tr.cold_buffer_bytes or not tr.cold_buffer_s_per_byte or threads is None:
        return {}
    return {"cold_bytes": tr.cold_buffer_bytes, "cold_s_per_byte": _at_threads(tr.cold_buffer_s_per_byte, threads)}


def _fresh(device: Device, thread_factor: float, threads: int | None) -> dict:
    """Rates fields of the fresh-buffer cost (DeviceTraits.fresh_buffer_*): the measured wall cost of the largest
    listed thread count <= threads where the profile has one, else the one-thread cost spread over the threads as
    compute is (a profile without it: no such cost)."""
    tr = getattr(device, "traits", None)
    if tr is None or not tr.fresh_buffer_bytes or not tr.fresh_buffer_s_per_byte:
        return {}
    per = tr.fresh_buffer_s_per_byte / thread_factor
    table = tr.fresh_buffer_wall_s_per_byte
    if table and threads is not None:
        per = _at_threads(table, threads)
    conv = tr.fresh_buffer_conv_s_per_byte / thread_factor if tr.fresh_buffer_conv_s_per_byte else per
    return {"fresh_bytes": tr.fresh_buffer_bytes, "fresh_s_per_byte": per, "fresh_conv_s_per_byte": conv}


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
