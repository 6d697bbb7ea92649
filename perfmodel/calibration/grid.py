"""The microbenchmark grid as plain shapes (no torch): GEMM shapes, convolution shapes and their passes, memory
sizes. Nothing here comes from a validation network: seeded random GEMM shapes, a generic list of CNN layer types,
power-of-two sizes."""

from __future__ import annotations

import math
import random

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
    # training-sized batches: activations and work buffers beyond the allocator's 32 MiB mmap threshold are
    # page-faulted afresh on every call, as in a training step at such sizes
    (128, 32, 32, 32, 3, 1, 1, False), (64, 64, 32, 64, 3, 1, 1, False), (256, 16, 32, 16, 3, 1, 1, False),
    (64, 128, 16, 128, 3, 1, 1, False), (128, 32, 32, 64, 3, 2, 1, False),
)
QUICK_CONV = (0, 3, 5, 8, 10, 12, 14, 17, 19, 20)


CONV_STAGE = {"fwd": "forward", "bwd_data": "backward_data", "bwd_weight": "backward_weight"}


def conv_passes(shape) -> list[tuple[str, str]]:
    """(pass, stage-factor key) of a conv shape: stride 1 -> forward and the combined backward (they fit the
    conv curve); strided -> forward, backward-data and backward-weight each, keyed for Efficiency.stage_factors
    ("/strided-1x1" for 1x1 kernels, "/strided" for the others)."""
    nb, c, hw, ko, kr, st, pd, tr = shape
    if st == 1:
        return [("fwd", ""), ("bwd", "")]
    op = "conv_transpose2d" if tr else "conv2d"
    suffix = "/strided-1x1" if kr == 1 else "/strided"  # as perfmodel.step.stage_factor_key keys layers
    return [(w, f"{op}.{CONV_STAGE[w]}{suffix}") for w in ("fwd", "bwd_data", "bwd_weight")]


def memory_sizes(quick: bool) -> list[int]:
    """Element counts from 4 KiB to 128 MiB per fp32 tensor, about three per factor of ten (fewer when quick)."""
    exps = [10 + 1.5 * i for i in range(12)] if not quick else [10 + 3 * i for i in range(6)]
    return [int(2 ** e) for e in exps if e <= 25]


# Kernel classes (stride 1): (batch, in_channels, height=width, out_channels, kernel, groups). A generic list of
# the depthwise (groups = channels, 3x3 and 5x5), grouped (2-16 groups) and 1x1 (narrow to wide) layers of
# mobile and ResNeXt-style CNNs, small to large images; each keyed by calibration.kernels.conv_ekey
KERNEL_CONVS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (16, 16, 64, 16, 3, 16), (8, 32, 56, 32, 3, 32), (16, 48, 48, 48, 3, 48), (8, 96, 28, 96, 3, 96),
    (16, 144, 14, 144, 3, 144), (8, 256, 14, 256, 3, 256), (32, 384, 7, 384, 3, 384), (8, 96, 28, 96, 5, 96),
    (2, 24, 32, 24, 3, 24),
    (16, 32, 32, 32, 3, 2), (8, 64, 32, 64, 3, 4), (8, 128, 16, 128, 3, 8), (4, 256, 14, 256, 3, 16),
    (16, 48, 24, 96, 3, 4), (4, 32, 16, 32, 3, 8),
    (8, 16, 64, 32, 1, 1), (8, 48, 64, 48, 1, 1), (16, 24, 56, 96, 1, 1), (16, 96, 28, 24, 1, 1),
    (8, 64, 32, 256, 1, 1), (8, 256, 32, 64, 1, 1), (4, 128, 28, 128, 1, 1), (8, 384, 14, 96, 1, 1),
    (2, 32, 16, 32, 1, 1),
    # large batches and images: the kernels' work buffers exceed the allocator's 32 MiB mmap threshold, so every
    # call page-faults fresh memory (as in training steps at such sizes)
    (64, 48, 32, 48, 3, 48), (128, 32, 32, 32, 3, 32), (32, 96, 28, 96, 3, 96), (16, 64, 56, 64, 3, 64),
    (64, 64, 32, 64, 3, 4), (32, 128, 28, 128, 3, 8),
    (64, 48, 32, 48, 1, 1), (32, 64, 56, 64, 1, 1),
    (256, 48, 32, 48, 3, 48), (128, 96, 16, 96, 3, 96), (128, 64, 32, 64, 3, 4), (256, 32, 32, 64, 3, 8),
    (256, 32, 32, 64, 1, 1), (128, 96, 16, 96, 1, 1),
    # grouped convs whose channels per group are not whole 16-channel blocks: 8- and 4-channel blocks and the
    # im2col + GEMM path (2, 3, 6, 9 channels per group; ops.conv.grouped_path)
    (16, 48, 32, 48, 3, 8), (32, 64, 16, 64, 3, 8), (8, 96, 28, 96, 3, 4), (16, 40, 32, 40, 3, 5),
    (64, 48, 32, 48, 3, 8), (4, 24, 16, 24, 3, 2),
    (16, 32, 32, 32, 3, 16), (8, 48, 32, 48, 3, 16), (32, 64, 16, 64, 3, 32), (8, 96, 16, 96, 3, 16),
    (16, 16, 32, 16, 3, 8), (4, 72, 28, 72, 3, 8), (16, 64, 32, 64, 3, 16),
)
QUICK_KERNEL_CONVS = (1, 3, 6, 10, 12, 16, 18, 21, 24, 28, 30, 38, 40, 41, 43, 47)


# (m, k, n): small GEMMs of 0.13-2.1 MFLOP (both sides >= 32, so not thin), below the random grid's smallest: the
# block products of a fused attention kernel, small-batch layers
SMALL_GEMM_SHAPES = ((32, 32, 64), (64, 64, 64), (32, 128, 128), (128, 32, 128), (64, 128, 64), (64, 64, 256))


def thin_gemm_shapes(n: int, seed: int = 20240602) -> list[tuple[int, int, int]]:
    """`n` (m, k, n) GEMM shapes with min(m, n) <= 16 (batch-1 to batch-16 layers, 10-class heads, their
    weight gradients): the thin side 1-16, the others log-uniform in 64-4096, alternately M or N thin."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        thin = int(round(math.exp(rng.uniform(0.0, math.log(16)))))
        k = int(round(math.exp(rng.uniform(math.log(64), math.log(4096)))))
        wide = int(round(math.exp(rng.uniform(math.log(64), math.log(8192)))))
        out.append((thin, k, wide) if i % 2 else (wide, k, thin))
    return out


def cold_sizes(quick: bool) -> list[int]:
    """Element counts of the cold-output streams: fp32 outputs from COLD_BYTES_MIN up to, not including, the 32 MiB
    at which buffers are mapped afresh (calibration.kernels)."""
    from .kernels import COLD_BYTES_MIN, FRESH_BYTES

    return [n for n in stream_sizes(quick) if COLD_BYTES_MIN <= 4 * n < FRESH_BYTES]


def stream_sizes(quick: bool) -> list[int]:
    """Element counts for the fresh-allocation streaming kernels: 16 KiB to 128 MiB per fp32 tensor."""
    exps = [12 + 1.0 * i for i in range(14)] if not quick else [12 + 2.5 * i for i in range(6)]
    return [int(2 ** e) for e in exps if e <= 25]


# sizes (elements) of the parameter tensors of the optimizer benchmark: a mix of weights and biases
OPT_TENSORS = (1 << 20, 1 << 18, 1 << 16, 4096, 1024, 256, 3 << 18, 512, 1 << 14, 128)


def optimizer_label(name: str) -> str:
    """The label of the optimizer-step check of `name` over OPT_TENSORS."""
    return f"optimizer {name} step, {sum(OPT_TENSORS)} params"
