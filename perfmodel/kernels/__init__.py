"""Kernel-level GPU time model: GEMM tiles and waves, convolution algorithms, RNN steps, all-reduce tiers.

Public entry for the engine: `kernel_time_s(kind, shape, dtype, arch, stack)`; architecture and software
stack files load with `load_arch` / `load_stack` (hardware_profiles/gpu_arch, hardware_profiles/stacks).
"""

from .api import KINDS, conv_algorithm, kernel_flops, kernel_time_s
from .data import arch_for_device, list_archs, list_stacks, load_arch, load_stack
from .schema import Achievable, GemmTile, GpuArch, SoftwareStack

__all__ = ["KINDS", "Achievable", "GemmTile", "GpuArch", "SoftwareStack", "arch_for_device", "conv_algorithm",
           "kernel_flops", "kernel_time_s", "list_archs", "list_stacks", "load_arch", "load_stack"]
