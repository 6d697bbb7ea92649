"""One entry point for the engine: the time of a kernel from its kind, shape, dtype, GPU architecture and stack."""

from __future__ import annotations

import numpy as np

from .allreduce import Tier, ring_allreduce_s
from .conv import conv_time_s, model_flops
from .data import as_arch, as_stack
from .gemm import gemm_flops, gemm_time_s
from .rnn import rnn_model_flops, rnn_time_s
from .schema import GpuArch, SoftwareStack

KINDS = ("gemm", "conv_fwd", "conv_bwd_data", "conv_bwd_filter", "rnn_fwd", "rnn_bwd_data",
         "rnn_bwd_weights", "allreduce")
_CONV_DEFAULTS = {"groups": 1, "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0}


def kernel_time_s(kind: str, shape: dict, dtype: str, arch: GpuArch | str, stack: SoftwareStack | str,
                  tiers: tuple[Tier, ...] = ()):
    """Time in seconds (float or numpy array, broadcast over the arrays in `shape`).

    shape keys: gemm {M, N, K, batch?, transpose_a?, transpose_b?}; conv_* {N, C, H, W, K, R, S, stride_h?, stride_w?, pad_h?, pad_w?,
    groups?}; rnn_* {cell: vanilla|lstm|gru, hidden, batch, timesteps}; allreduce {size_bytes, gpus, nodes?}
    with `tiers` = (intra-node Tier, inter-node Tier).
    """
    a, s = as_arch(arch), as_stack(stack)
    if kind == "gemm":
        cls = "gemm_tn" if shape.get("transpose_a") and not shape.get("transpose_b") else "gemm"
        t = gemm_time_s(shape["M"], shape["N"], shape["K"], dtype, a, s, cls=cls, batch=shape.get("batch", 1))
    elif kind.startswith("conv_"):
        t, _, _ = conv_time_s({**_CONV_DEFAULTS, **shape}, kind[5:], dtype, a, s)
    elif kind.startswith("rnn_"):
        t = rnn_time_s(shape["cell"], kind[4:], shape["hidden"], shape["batch"], shape["timesteps"], dtype, a, s)
    elif kind == "allreduce":
        if not tiers:
            raise ValueError("allreduce needs tiers=(intra-node Tier[, inter-node Tier])")
        t = ring_allreduce_s(shape["size_bytes"], shape["gpus"], shape.get("nodes", 1), *tiers[:2])
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return float(t) if np.ndim(t) == 0 else t


def kernel_flops(kind: str, shape: dict):
    """Model FLOPs (the layer's arithmetic, a multiply-add = 2) of a kernel; executed work may differ."""
    if kind == "gemm":
        return gemm_flops(shape["M"], shape["N"], shape["K"], shape.get("batch", 1))
    if kind.startswith("conv_"):
        return model_flops({**_CONV_DEFAULTS, **shape})
    if kind.startswith("rnn_"):
        return rnn_model_flops(shape["cell"], shape["hidden"], shape["batch"], shape["timesteps"])
    return 0.0


def conv_algorithm(phase: str, shape: dict, dtype: str, arch: GpuArch | str, stack: SoftwareStack | str):
    """(algorithm name(s), executed FLOPs) the stack would pick for a convolution phase."""
    _, algo, executed = conv_time_s({**_CONV_DEFAULTS, **shape}, phase, dtype, as_arch(arch), as_stack(stack))
    return algo, executed
