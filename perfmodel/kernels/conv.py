"""Convolution kernels: the algorithm a library picks and its time, for forward, backward-data, backward-filter.

Shapes are NCHW: batch N, input channels C, image H x W, K filters of R x S, stride, padding, groups.
Each algorithm is expressed as the GEMMs (and memory-bound transforms) it executes:
- implicit GEMM (precomputed indices): fwd M=K, N=N*P*Q, K=C*R*S; bwd-data M=C, N=N*H*W, K=K*ceil(R/stride)
  *ceil(S/stride) (every input pixel visits the taps that can reach it: a strided 1x1 does stride^2 the
  model FLOPs);
  bwd-filter M=K, N=C*R*S, K=N*P*Q (long K: split over CTAs; cuDNN 5/6 always split it into 8-64 slices
  and sum the partial filters through memory: stack conv_bwd_filter_splits).
- Winograd F(m x m, 3 x 3), 3x3 stride 1 only: (m+2)^2 GEMMs over tiles of m x m outputs, so (m+2)^2/(9 m^2)
  of the direct multiplies; backward-data and backward-filter are kernels of their own with their own
  achievable fraction (classes winograd_bwd_data / winograd_bwd_filter, else the forward's). Fused (m = 2) keeps transforms in the kernel; non-fused (m = 4) adds transform
  kernels that stream the transformed tensors through DRAM.
- FFT (tiled), stride 1: per frequency bin a complex channel reduction plus transforms through DRAM.
On a tensor-core dtype only the stack's tensor_core_conv_algorithms (implicit GEMM) run on tensor cores;
Winograd and FFT kernels compute in fp32 on the CUDA cores (cuDNN's 'scudnn_winograd' kernels). A tensor-core
kernel computes in the stack's tensor_core_conv_layout (NHWC); given activations in another layout (PyTorch's
default NCHW), the call converts its inputs, filter and output, each read and written once by a kernel of its
own (cuDNN's nchwToNhwc / nhwcToNchw kernels; channels_last activations skip them).
The library's choice is the fastest applicable allowed algorithm (what cudnnFind measures). A convolution call
pays the stack's conv_overhead per kernel it runs (cuDNN's fixed cost) where cuBLAS calls pay kernel_overhead.
Model FLOPs (direct convolution) and executed FLOPs are reported separately.
"""

from __future__ import annotations

import numpy as np

from .gemm import cuda_core_dtype, dtype_parts, gemm_time_s, tensor_core_math, tiles_for
from .schema import GpuArch, SoftwareStack

PHASES = ("fwd", "bwd_data", "bwd_filter")


def out_size(H, R, pad, stride):
    """Output size of a convolution along one axis."""
    return np.floor((np.asarray(H, float) + 2 * np.asarray(pad, float) - R) / stride) + 1


def model_flops(s: dict):
    """Direct-convolution FLOPs of one phase (all three phases have the same count)."""
    P = out_size(s["H"], s["R"], s["pad_h"], s["stride_h"])
    Q = out_size(s["W"], s["S"], s["pad_w"], s["stride_w"])
    g = np.asarray(s.get("groups", 1), float)
    return 2.0 * s["N"] * s["K"] * P * Q * (np.asarray(s["C"], float) / g) * s["R"] * s["S"]


def _shape(s: dict):
    g = np.asarray(s.get("groups", 1), float)
    P = out_size(s["H"], s["R"], s["pad_h"], s["stride_h"])
    Q = out_size(s["W"], s["S"], s["pad_w"], s["stride_w"])
    return (np.asarray(s["N"], float), np.asarray(s["C"], float) / g, np.asarray(s["H"], float),
            np.asarray(s["W"], float), np.asarray(s["K"], float) / g, np.asarray(s["R"], float),
            np.asarray(s["S"], float), P, Q, g)


def io_bytes(s: dict, dtype: str):
    """DRAM bytes of a convolution that reads its input and filters once and writes its output once."""
    N, C, H, W, K, R, S, P, Q, g = _shape(s)
    _, eb = dtype_parts(dtype)
    return eb * (N * C * g * H * W + K * g * C * R * S + N * K * g * P * Q)


def conv_tiles(dtype: str, arch: GpuArch, stack: SoftwareStack) -> tuple:
    """Implicit-GEMM tiles: the stack's tensor-core tiles for a tensor-core dtype (cuDNN runs those convolutions
    on the same MMA tiles as GEMMs), else its convolution tiles (empty: its GEMM tiles)."""
    return tiles_for(dtype, arch, stack)[0] if tensor_core_math(dtype, arch, stack) else stack.conv_tiles


def layout_conversion_s(s: dict, dtype: str, arch: GpuArch, stack: SoftwareStack):
    """Seconds a tensor-core convolution call spends converting its inputs, filter and output between the
    activation layout and the kernels' (each read and written once, one kernel each); 0 when they agree. A 1-D
    convolution (H = R = 1: 3-D tensors, which channels_last does not reorder) converts whatever the layout."""
    if stack.tensor_core_conv_layout is None or not tensor_core_math(dtype, arch, stack):
        return 0.0
    t = _transform_s(2.0 * io_bytes(s, dtype), arch, stack, kernels=3)
    if stack.activation_layout != stack.tensor_core_conv_layout:
        return t
    one_d = (np.asarray(s["H"]) == 1) & (np.asarray(s["R"]) == 1)
    return np.where(one_d, t, 0.0)


def implicit_gemm(s: dict, phase: str, dtype, arch, stack):
    """(time, executed FLOPs) of the implicit-GEMM algorithm (the unrolled matrix never goes to DRAM)."""
    N, C, H, W, K, R, S, P, Q, g = _shape(s)
    taps = np.ceil(R / s["stride_h"]) * np.ceil(S / s["stride_w"])  # filter taps reaching one input pixel
    mnk = {"fwd": (K, N * P * Q, C * R * S), "bwd_data": (C, N * H * W, K * taps),
           "bwd_filter": (K, C * R * S, N * P * Q)}[phase]
    t = gemm_time_s(*mnk, dtype, arch, stack, cls=f"conv_{phase}", batch=g, split_k=phase == "bwd_filter",
                    tiles=conv_tiles(dtype, arch, stack), io_bytes=io_bytes(s, dtype),
                    cover_m=stack.conv_tile_choice == "cover_filters",
                    splits=stack.conv_bwd_filter_splits if phase == "bwd_filter" else ())
    return t + layout_conversion_s(s, dtype, arch, stack), 2.0 * mnk[0] * mnk[1] * mnk[2] * g


def _transform_s(nbytes, arch: GpuArch, stack: SoftwareStack, kernels: int):
    a = stack.achievable
    return kernels * a.kernel_overhead_s + nbytes / arch.dram_Bps(a.memory_bandwidth)


def winograd(s: dict, phase: str, dtype, arch, stack, m: int, fused: bool):
    """(time, executed FLOPs) of Winograd F(m x m, 3x3); inf where not applicable."""
    N, C, H, W, K, R, S, P, Q, g = _shape(s)
    ok = (R == 3) & (S == 3) & (s["stride_h"] == 1) & (s["stride_w"] == 1) & (g == 1)
    a2 = (m + 2) ** 2
    T_out = N * np.ceil(P / m) * np.ceil(Q / m)
    T_in = N * np.ceil(H / m) * np.ceil(W / m)
    mnk = {"fwd": (K, T_out, C), "bwd_data": (C, T_in, K), "bwd_filter": (K, C, T_out)}[phase]
    cls = "winograd" if phase == "fwd" else f"winograd_{phase}"  # the backward passes run kernels of their own
    t = gemm_time_s(*mnk, dtype, arch, stack, cls=cls, batch=a2, split_k=phase == "bwd_filter")
    if not fused:
        _, eb = dtype_parts(dtype)
        T = T_in if phase == "bwd_data" else T_out
        moved = eb * a2 * (T * C + T * K + K * C) + eb * (N * C * H * W + N * K * P * Q + K * C * 9)
        t = t + _transform_s(2.0 * moved, arch, stack, kernels=3)
    return np.where(ok, t, np.inf), 2.0 * a2 * mnk[0] * mnk[1] * mnk[2]


def fft(s: dict, phase: str, dtype, arch, stack):
    """(time, executed FLOPs) of tiled FFT convolution; inf where not applicable.

    The image is cut into tiles of fft_tile points (fft_tile - R + 1 outputs each). Per frequency bin the
    channels are reduced by a complex product (8 real FLOPs per multiply-add), streamed at the FFT class's
    fraction of peak; the transforms write and read complex spectra of every input, filter and output tile.
    """
    N, C, H, W, K, R, S, P, Q, g = _shape(s)
    T = float(stack.fft_tile)
    ok = ((s["stride_h"] == 1) & (s["stride_w"] == 1) & (g == 1) & (R > 1)
          & (np.maximum(R, S) <= min(stack.fft_max_filter, T - 1)))
    tiles = np.ceil(P / np.maximum(T - R + 1, 1)) * np.ceil(Q / np.maximum(T - S + 1, 1))
    bins = T * (np.floor(T / 2) + 1)
    executed_products = 8.0 * bins * N * tiles * K * C
    a = stack.achievable
    t_prod = executed_products / (arch.peak_flops(dtype_parts(dtype)[0]) * a.fraction("fft", dtype))
    _, eb = dtype_parts(dtype)
    planes = {"fwd": (N * C * tiles, K * C, N * K * tiles), "bwd_data": (N * K * tiles, K * C, N * C * tiles),
              "bwd_filter": (N * C * tiles, N * K * tiles, K * C)}[phase]
    spectra = sum(planes)
    moved = spectra * 2 * 8 * bins + io_bytes(s, dtype)  # complex spectra written and read, real data once
    t = a.kernel_overhead_s * 3 + t_prod + moved / arch.dram_Bps(a.memory_bandwidth)
    executed = executed_products + spectra * 5.0 * T * T * np.log2(T)
    return np.where(ok, t, np.inf), executed


def conv_call_stack(stack: SoftwareStack) -> SoftwareStack:
    """The stack whose per-kernel overhead is the fixed cost of a kernel of a convolution call
    (achievable.conv_overhead, where the stack has one): cuDNN's host work differs from cuBLAS's."""
    a = stack.achievable
    if a.conv_overhead_s is None or a.conv_overhead_s == a.kernel_overhead_s:
        return stack
    return stack.with_achievable(a.model_copy(update={"kernel_overhead_s": a.conv_overhead_s}))


def algorithm_times(s: dict, phase: str, dtype: str, arch: GpuArch, stack: SoftwareStack) -> dict:
    """{algorithm: (time_s, executed FLOPs)} for the algorithms the stack allows in `phase`."""
    stack = conv_call_stack(stack)
    allowed = {"fwd": stack.conv_algorithms_fwd, "bwd_data": stack.conv_algorithms_bwd_data,
               "bwd_filter": stack.conv_algorithms_bwd_filter}[phase]
    out = {}
    tc = tensor_core_math(dtype, arch, stack)
    for algo in allowed:
        dt = dtype if not tc or algo in stack.tensor_core_conv_algorithms else cuda_core_dtype(dtype)
        if algo in ("implicit_gemm", "implicit_precomp_gemm"):
            out[algo] = implicit_gemm(s, phase, dt, arch, stack)
        elif algo == "winograd":
            out[algo] = winograd(s, phase, dt, arch, stack, stack.winograd_fused_output_tile, True)
        elif algo == "winograd_nonfused":
            out[algo] = winograd(s, phase, dt, arch, stack, stack.winograd_nonfused_output_tile, False)
        elif algo == "fft":
            out[algo] = fft(s, phase, dt, arch, stack)
    return out


def conv_time_s(s: dict, phase: str, dtype: str, arch: GpuArch, stack: SoftwareStack):
    """(time_s, chosen algorithm index into the allowed list, executed FLOPs) of the fastest algorithm."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    res = algorithm_times(s, phase, dtype, arch, stack)
    names = list(res)
    times = np.stack([np.broadcast_to(res[n][0], np.shape(res[names[0]][0])) for n in names])
    execd = np.stack([np.broadcast_to(res[n][1], times.shape[1:]) for n in names])
    pick = np.argmin(times, axis=0)
    t = np.take_along_axis(times, pick[None], 0)[0]
    e = np.take_along_axis(execd, pick[None], 0)[0]
    return t, np.asarray(names)[pick], e
