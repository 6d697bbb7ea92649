"""GEMM time from (M, N, K): tile choice, wave quantization over SMs, split-K, DRAM bound, launch overhead.

C[M, N] = A[M, K] @ B[K, N], `batch` independent GEMMs of that shape. All functions take numpy arrays
(or scalars) and broadcast. The time of one tile choice is

    ceil(ctas / SMs) * 2 * tm * tn * (k_per_cta + k0) / (sm_peak * fraction(class) * tile_eff * occupancy)

so a partly filled last wave costs as much as a full one (wave quantization). tile_eff is the shared-memory
bound of the tile's register blocking; occupancy counts the warps resident per SM (few CTAs per SM cannot
hide latency); k0 is a CTA's prologue and epilogue in k steps (stack.achievable.cta_overhead_k). The library is assumed to pick the tile and split of K with the least time, as cuBLAS's
heuristics aim to. A split of K adds a reduction kernel (its launch and the fp32 partial sums through DRAM).
The kernel is never faster than moving its operands through DRAM once, and pays a fixed per-kernel overhead of
its software stack. A GEMM whose narrower side is at most the stack's thin_gemm_max_n runs the library's
matrix-vector-like kernel, bound by streaming its operands at the stack's thin_gemm_bandwidth of DRAM.
"""

from __future__ import annotations

import numpy as np

from .schema import GemmTile, GpuArch, SoftwareStack

MIN_K_PER_SPLIT = 256  # smallest K slice a split-K CTA works on (keeps the reduction cheap)


ELEM_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "fp64": 8}


def dtype_parts(dtype: str) -> tuple[str, int]:
    """(math dtype, bytes per element in memory). '<io>_io_fp32_math' stores <io> and computes in fp32
    ('fp16_io_fp32_math' is DeepBench's pseudo-fp16)."""
    if "_io_fp32" in dtype:
        return "fp32", ELEM_BYTES[dtype.split("_io_")[0]]
    return dtype, ELEM_BYTES[dtype]


def cuda_core_dtype(dtype: str) -> str:
    """The dtype of a kernel that computes on the CUDA cores in fp32 math on tensors stored as `dtype`."""
    math, eb = dtype_parts(dtype)
    if math in ("fp32", "fp64"):
        return dtype
    return "fp32" if eb == 4 else f"{dtype}_io_fp32_math"


def tensor_core_math(dtype: str, arch: GpuArch, stack: SoftwareStack) -> bool:
    """Whether the stack runs `dtype`'s GEMM-like kernels on the arch's tensor cores."""
    return bool(stack.tensor_core_tiles) and dtype_parts(dtype)[0] in arch.tensor_core_dtypes


def tiles_for(dtype: str, arch: GpuArch, stack: SoftwareStack) -> tuple[tuple[GemmTile, ...], str]:
    """Tile shapes the stack uses for `dtype` on `arch`, and the math rate key (tensor cores where present)."""
    tiles = stack.tensor_core_tiles if tensor_core_math(dtype, arch, stack) else stack.gemm_tiles
    return tiles, dtype_parts(dtype)[0]


def sm_rate(arch: GpuArch, math: str) -> float:
    """Sustained peak FLOP/s of one SM: datasheet per-clock rate x rated boost x the GPU's clock factor."""
    return arch.sm_peak_flops(math)


def gemm_bytes(M, N, K, batch, elem_bytes: int):
    """Bytes to read A and B and write C once."""
    return batch * elem_bytes * (M * K + K * N + M * N)


SPLITS = (1, 2, 4, 8, 16, 32)  # split-K factors the model lets a library choose from


def k_per_cta(K, s, min_k: float = MIN_K_PER_SPLIT):
    """K slice of one CTA when K is split s ways; a split never works on less than min_k (or K)."""
    return np.maximum(np.ceil(K / s), np.minimum(K, min_k))


def tile_efficiency(tile: GemmTile, arch: GpuArch, math: str) -> float:
    """Fraction of an SM's peak the tile's inner loop can reach: FMAs per shared-memory word vs the SM's ratio."""
    if tile.efficiency is not None:
        return tile.efficiency
    fma_per_clock = arch.flops_per_clock_per_sm.get(math, arch.flops_per_clock_per_sm["fp32"]) / 2
    need = fma_per_clock / arch.smem_words_per_clock_per_sm  # FMAs per loaded word that keep the units busy
    have = tile.thread_m * tile.thread_n / (tile.thread_m + tile.thread_n)
    return min(1.0, have / need)


def _grid_time_s(M, N, K, batch, tm, tn, cps, warps, eff, s, rate_sm: float, arch: GpuArch, k0: float,
                 min_k: float = MIN_K_PER_SPLIT):
    """tile_time_s over arrays of tile choices (tm, tn, CTAs per SM, warps per CTA, efficiency, split s)."""
    ctas = np.ceil(M / tm) * np.ceil(N / tn) * batch * s
    cta_flops = 2.0 * tm * tn * (k_per_cta(K, s, min_k) + k0)
    c = np.ceil(ctas / arch.sm_count)
    full = np.floor(c / cps)
    last = c - full * cps
    occ_full = np.minimum(1.0, cps * warps / arch.warps_to_saturate)
    occ_last = np.minimum(1.0, np.maximum(last, 1) * warps / arch.warps_to_saturate)
    t_rounds = full * cps / occ_full + np.where(last > 0, last / occ_last, 0.0)
    return cta_flops * t_rounds / (rate_sm * eff)


def tile_time_s(M, N, K, batch, tile: GemmTile, rate_sm: float, arch: GpuArch, eff: float, s: int = 1,
                k0: float = 0.0):
    """Compute time of one tile choice with K split `s` ways (without the reduction of the partial sums).

    Each SM gets c = ceil(ctas / SMs) CTAs and runs up to ctas_per_sm of them at once; a round of j
    concurrent CTAs takes j * tile FLOPs / (rate * eff * occupancy(j)), occupancy(j) = min(1, resident warps
    / warps_to_saturate). k0: the CTA's fixed prologue and epilogue in equivalent k steps.
    """
    return _grid_time_s(M, N, K, batch, tile.m, tile.n, tile.ctas_per_sm, max(1, tile.threads // 32), eff, s,
                        rate_sm, arch, k0)


def covering_tile_m(M, tile_ms) -> np.ndarray:
    """The tile height a filter-count heuristic picks: the smallest tile m >= M, else the largest tile m."""
    ms = np.unique(np.asarray(tile_ms, float))
    M = np.asarray(M, float)
    idx = np.minimum(np.searchsorted(ms, M, side="left"), len(ms) - 1)
    return ms[idx]


def gemm_compute_s(M, N, K, dtype: str, arch: GpuArch, stack: SoftwareStack, cls: str = "gemm",
                   batch=1, split_k: bool | None = None, tiles: tuple[GemmTile, ...] = (), cover_m: bool = False,
                   splits: tuple[int, ...] = ()):
    """Best compute time over the stack's tiles (no DRAM bound, no overhead), plus split-K reduction traffic.

    Every (tile, split) choice is evaluated in one array operation: rows are choices, columns shapes.
    cover_m: the library picks the tile height by M alone (covering_tile_m: cuDNN 5/6's implicit-GEMM kernels
    128x32 / 128x64 / 128x128 by filter count), not by the fastest wave count; only the split of K is free.
    splits: a kernel that always splits K into one of these factors, slices of any length (cuDNN 5/6's
    backward-filter: SoftwareStack.conv_bwd_filter_splits); empty: SPLITS with slices >= MIN_K_PER_SPLIT.
    """
    M, N, K, batch = (np.asarray(x, dtype=float) for x in (M, N, K, batch))
    shape = np.broadcast(M, N, K, batch).shape
    M, N, K, batch = (np.broadcast_to(x, shape).reshape(1, -1) for x in (M, N, K, batch))
    default, math = tiles_for(dtype, arch, stack)
    tiles = tiles or default
    rate = sm_rate(arch, math) * stack.achievable.fraction(cls, dtype)
    allow = stack.split_k if split_k is None else split_k
    min_k = 1.0 if splits else MIN_K_PER_SPLIT
    splits = splits or (SPLITS if allow else (1,))
    ch = np.array([(t.m, t.n, t.ctas_per_sm, max(1, t.threads // 32), tile_efficiency(t, arch, math), sp)
                   for t in tiles for sp in splits], dtype=float)
    col = [ch[:, i:i + 1] for i in range(6)]
    t = _grid_time_s(M, N, K, batch, *col, rate, arch, stack.achievable.cta_overhead_k, min_k)
    bw = arch.dram_Bps(stack.achievable.memory_bandwidth)
    sp = col[5]
    # fp32 partial sums written and read back by a reduction kernel of its own
    t = t + np.where(sp > 1, 2.0 * sp * M * N * batch * 4 / bw + stack.achievable.kernel_overhead_s, 0.0)
    if cover_m:
        t = np.where(col[0] == covering_tile_m(M, col[0][:, 0]), t, np.inf)
    return t.min(axis=0).reshape(shape)


def gemm_time_s(M, N, K, dtype: str, arch: GpuArch, stack: SoftwareStack, cls: str = "gemm",
                batch=1, split_k: bool | None = None, tiles: tuple[GemmTile, ...] = (), io_bytes=None,
                cover_m: bool = False, splits: tuple[int, ...] = ()):
    """Time of `batch` GEMMs (M, N, K): max(compute, DRAM) + one kernel overhead; where min(M, N) <=
    stack.thin_gemm_max_n (GEMM classes only) the thin-GEMM kernel's time (thin_gemm_s) replaces max(compute, DRAM).

    io_bytes: DRAM bytes when they are not A, B and C once (an implicit-GEMM convolution reads its image,
    not the unrolled matrix).
    """
    comp = gemm_compute_s(M, N, K, dtype, arch, stack, cls, batch, split_k, tiles, cover_m, splits)
    _, eb = dtype_parts(dtype)
    if io_bytes is None:
        io_bytes = gemm_bytes(np.asarray(M, float), np.asarray(N, float), np.asarray(K, float),
                              np.asarray(batch, float), eb)
    mem = io_bytes / (arch.dram_Bps(stack.achievable.memory_bandwidth))
    t = np.maximum(comp, mem)
    if stack.thin_gemm_max_n and cls in ("gemm", "gemm_tn"):
        thin = np.minimum(M, N) <= stack.thin_gemm_max_n
        if np.any(thin):
            t = np.where(thin, thin_gemm_s(M, N, K, batch, dtype, arch, stack, cls, io_bytes), t)
    return stack.achievable.kernel_overhead_s + t


def thin_gemm_s(M, N, K, batch, dtype: str, arch: GpuArch, stack: SoftwareStack, cls: str, io_bytes):
    """Time of the library's matrix-vector-like kernel (no tiles: every SM at the class's fraction of peak), bound
    by streaming io_bytes at the stack's thin_gemm_bandwidth fraction of DRAM bandwidth."""
    _, math = tiles_for(dtype, arch, stack)
    rate = sm_rate(arch, math) * arch.sm_count * stack.achievable.fraction(cls, dtype)
    bw = arch.dram_Bps(stack.achievable.memory_bandwidth) * stack.achievable.thin_gemm_bandwidth
    return np.maximum(gemm_flops(M, N, K, batch) / rate, io_bytes / bw)


def gemm_flops(M, N, K, batch=1):
    """Model FLOPs of `batch` GEMMs (a multiply-add = 2)."""
    return 2.0 * np.asarray(M, float) * N * K * batch
