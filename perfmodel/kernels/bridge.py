"""Bridge from the ops' Work items to kernel times: what the engine calls for a GPU with an arch file.

A Work item carries `shape` (ops.base.GemmShape or ConvShape) and `kernels` (launches of that shape); the
stage (forward, backward_data, backward_weight) says which convolution pass it is. Items without a shape
the kernel model understands get NaN, and the engine keeps its own estimate for them.
"""

from __future__ import annotations

import numpy as np

from .conv import conv_time_s
from .data import as_arch, as_stack
from .gemm import gemm_time_s
from .schema import GpuArch, SoftwareStack

CONV_PHASE = {"forward": "fwd", "backward_data": "bwd_data", "backward_weight": "bwd_filter"}


def _conv_dict(shapes) -> dict:
    """Kernel-model conv dict (2-D; a 1-D convolution is H = 1) from ops ConvShape objects."""
    def dim(t, i, default):
        return t[i] if len(t) > i else default

    col = {k: [] for k in ("N", "C", "K", "H", "W", "R", "S", "stride_h", "stride_w", "pad_h", "pad_w", "groups")}
    for s in shapes:
        two = len(s.in_size) >= 2
        col["N"].append(s.batch)
        col["C"].append(s.c_in)
        col["K"].append(s.c_out)
        col["H"].append(s.in_size[0] if two else 1)
        col["W"].append(s.in_size[-1])
        col["R"].append(s.kernel[0] if two else 1)
        col["S"].append(s.kernel[-1])
        col["stride_h"].append(s.stride[0] if two else 1)
        col["stride_w"].append(s.stride[-1])
        pad = s.padding or (0,) * len(s.in_size)
        col["pad_h"].append(dim(pad, 0, 0) if two else 0)
        col["pad_w"].append(pad[-1] if pad else 0)
        col["groups"].append(s.groups)
    return {k: np.asarray(v, dtype=float) for k, v in col.items()}


def _supported_conv(s) -> bool:
    return (len(s.in_size) in (1, 2) and not s.transposed and all(d == 1 for d in (s.dilation or (1,)))
            and s.groups == 1)


def work_times_s(works, stages, dtype: str, arch: GpuArch | str, stack: SoftwareStack | str) -> np.ndarray:
    """Seconds for each Work (all its `kernels` launches), NaN where the kernel model has no answer.

    works: sequence of ops.base.Work; stages: the stage name of each ("forward", "backward_data",
    "backward_weight"). GEMMs are evaluated together, convolutions grouped by pass.
    """
    a, s = as_arch(arch), as_stack(stack)
    out = np.full(len(works), np.nan)
    gemm_idx = [i for i, w in enumerate(works) if type(w.shape).__name__ == "GemmShape"]
    if gemm_idx:
        sh = [works[i].shape for i in gemm_idx]
        t = gemm_time_s(np.array([x.m for x in sh], float), np.array([x.n for x in sh], float),
                        np.array([x.k for x in sh], float), dtype, a, s, batch=np.array([x.batch for x in sh], float))
        out[gemm_idx] = np.asarray(t) * np.array([max(1, works[i].kernels) for i in gemm_idx])
    for stage, phase in CONV_PHASE.items():
        idx = [i for i, w in enumerate(works) if stages[i] == stage and type(w.shape).__name__ == "ConvShape"
               and _supported_conv(w.shape)]
        if idx:
            t, _, _ = conv_time_s(_conv_dict([works[i].shape for i in idx]), phase, dtype, a, s)
            out[idx] = t
    return out
