"""Fused (flash / memory-efficient) scaled-dot-product attention as one kernel per pass.

Per head, the forward computes S = Q K^T and O = softmax(S) V in tiles of `attention_block` query rows
held on chip, so the T x T scores never reach DRAM: 4 T^2 d_h FLOPs (two GEMMs), DRAM traffic Q, K, V and
O once. The backward recomputes S from Q and K and runs dV = P^T dO, dP = dO V^T, dQ = dS K and
dK = dS^T Q: 10 T^2 d_h FLOPs (five GEMMs), traffic Q, K, V, O, dO, dQ, dK, dV. Each CTA owns one block
of queries of one (sample, head): B h ceil(T / block) CTAs, one per SM at a time, so a partly filled
last wave costs a full one (as gemm.tile_time_s). The main loop reaches the stack's
attention_fraction_fwd / _bwd of the SM's peak (FlashAttention-2, Dao 2023: up to 73% forward and 63%
backward of A100's fp16 peak). Causal masking is not modelled (the ops cost all T^2 scores).
"""

from __future__ import annotations

import numpy as np

from .gemm import dtype_parts, sm_rate
from .schema import GpuArch, SoftwareStack

FWD_GEMMS, BWD_GEMMS = 2, 5  # T x T x d_h GEMMs per head: forward S and O; backward S again, dV, dP, dQ, dK


def flash_times_s(t, d_head, heads_x_batch, dtype: str, arch: GpuArch, stack: SoftwareStack):
    """(forward, backward) seconds of fused attention over `heads_x_batch` (sample, head) pairs of T x d_h."""
    T, dh, bh = (np.asarray(x, dtype=float) for x in (t, d_head, heads_x_batch))
    math, eb = dtype_parts(dtype)
    block = float(stack.attention_block)
    waves = np.ceil(bh * np.ceil(T / block) / arch.sm_count)
    rows = np.minimum(T, block)  # query rows of one CTA
    bw = arch.dram_Bps(stack.achievable.memory_bandwidth)
    out = []
    for gemms, frac, tensors in ((FWD_GEMMS, stack.attention_fraction_fwd, 4),
                                 (BWD_GEMMS, stack.attention_fraction_bwd, 8)):
        comp = waves * 2.0 * gemms * rows * T * dh / (sm_rate(arch, math) * frac)
        mem = tensors * bh * T * dh * eb / bw
        out.append(stack.achievable.kernel_overhead_s + np.maximum(comp, mem))
    return tuple(float(x) if np.ndim(x) == 0 else x for x in out)
