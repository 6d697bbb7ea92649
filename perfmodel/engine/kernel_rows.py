"""Kernel-model times of the rows of a WorkTable, computed once per (table, architecture, stack, dtype).

The table's GEMM, convolution, recurrent-step and attention rows go through perfmodel.kernels.bridge
(one vectorised call per kernel kind over the table's distinct shapes); the result is memoised on the
table, which is itself memoised per graph and costs, so a repeated question costs one dictionary lookup.
"""

from __future__ import annotations

import numpy as np

from ..kernels.bridge import CELL_KEY, launches_per_kernel, row_kernel_times


def kernel_row_times(t, r) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(seconds per row, NaN where the kernel model has no kernel; rows a fused kernel absorbs; launches per ops
    kernel) for table `t` (engine.worktime.WorkTable with shapes) under rates `r` (Rates.kernel set); None when
    no row is a kernel the model knows (optimizer and cast tables: nothing to look up)."""
    if not any(x is not None for x in t.shapes) and CELL_KEY not in t.keys:
        return None
    arch, stack = r.kernel
    cache = t.__dict__.setdefault("_kernel_times", {})
    key = (id(arch), id(stack), r.dtype)
    hit = cache.get(key)
    if hit is None or hit[0] is not arch or hit[1] is not stack:
        secs, fused = row_kernel_times(t.shapes, t.keys, t.stage, t.layer, t.flops, r.dtype, arch, stack)
        launches = launches_per_kernel(t.keys, stack)
        for a in (secs, fused, launches):
            a.flags.writeable = False
        hit = cache[key] = (arch, stack, secs, fused, launches)
    return hit[2], hit[3], hit[4]
