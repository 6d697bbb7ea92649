"""Bridge from the ops' Work items to kernel times: what the engine calls for a device with an arch and a stack.

A Work item carries `shape` (ops.base.GemmShape or ConvShape of one kernel) and its FLOPs; the item stands
for flops / flops(shape) kernels of that shape (a matmul backward is two GEMMs of its shape, a stacked
RNN's recurrent GEMMs are T per layer). The stage (forward, backward_data, backward_weight) says which
convolution pass it is; a transposed convolution runs the passes of the convolution it transposes
(forward = that convolution's backward-data). Recurrent GEMMs (efficiency key "rnn/gemm/recurrent...") are
one time step each (kernels.rnn.step_s). Items the model has no kernel for get NaN, and the engine keeps its
own estimate for them.

An unfused recurrent cell (stack.rnn_cell_kernels > 1) launches that many elementwise kernels where the ops
count one fused gate kernel per step (`launches_per_kernel`).

Fused attention (stack.fused_attention): a layer with an "attention/scores" GEMM runs scores, softmax,
dropout and P x V as one flash kernel (kernels.attention) in forward, and the backward chain as the
output-projection data GEMM plus one flash backward kernel that recomputes the scores; the absorbed items get
time 0 and no launches (the `fused` mask).

The stack's per-kernel overheads (`achievable.kernel_overhead`, `conv_overhead`, `rnn_step_overhead`) are the
cost of timing one kernel alone as DeepBench does; a training step launches asynchronously, so the engine's
launch model (the device's kernel_overhead, overlapping execution) applies instead: `launch_free` drops them.
"""

from __future__ import annotations

import math

import numpy as np

from .attention import flash_times_s
from .conv import conv_time_s
from .data import as_arch, as_stack
from .gemm import gemm_time_s
from .rnn import step_s
from .schema import GpuArch, SoftwareStack

CONV_PHASE = {"forward": "fwd", "backward_data": "bwd_data", "backward_weight": "bwd_filter"}
TRANSPOSED_PHASE = {"forward": "bwd_data", "backward_data": "fwd", "backward_weight": "bwd_filter"}
STAGE_NAMES = ("forward", "backward_data", "backward_weight")
RECURRENT_KEY = "rnn/gemm/recurrent"
CELL_KEY = "elementwise/rnn-cell"  # the ops' fused gate kernel of a recurrent step (stack.rnn_cell_kernels launches)
SCORES_KEY, CONTEXT_KEY, CHAIN_KEY = "attention/scores", "attention/context", "attention/chain"
FUSED_AWAY = ("elementwise/softmax/attention", "elementwise/dropout", CONTEXT_KEY)
_CONV_FIELDS = ("N", "C", "K", "H", "W", "R", "S", "stride_h", "stride_w", "pad_h", "pad_w", "groups")
_LAUNCH_FREE: dict[int, tuple[SoftwareStack, SoftwareStack]] = {}


def launch_free(stack: SoftwareStack) -> SoftwareStack:
    """The stack without its per-kernel, per-convolution-call and per-RNN-step overheads (memoised per stack)."""
    hit = _LAUNCH_FREE.get(id(stack))
    if hit is None or hit[0] is not stack:
        ach = stack.achievable.model_copy(update={"kernel_overhead_s": 0.0, "rnn_step_overhead_s": 0.0,
                                                  "conv_overhead_s": 0.0})
        hit = _LAUNCH_FREE[id(stack)] = (stack, stack.with_achievable(ach))
    return hit[1]


def conv_dims(s, transposed_as_conv: bool = True) -> tuple:
    """(N, C, K, H, W, R, S, stride_h, stride_w, pad_h, pad_w, groups) of an ops ConvShape (1-D: H = 1); a
    transposed convolution as the convolution it transposes (input its output, channels swapped)."""
    two = len(s.in_size) >= 2
    c_in, c_out, size = s.c_in, s.c_out, s.in_size
    if s.transposed and transposed_as_conv:
        c_in, c_out, size = s.c_out, s.c_in, s.out_size
    pad = s.padding or (0,) * len(s.in_size)
    return (s.batch, c_in, c_out, size[0] if two else 1, size[-1], s.kernel[0] if two else 1, s.kernel[-1],
            s.stride[0] if two else 1, s.stride[-1], pad[0] if two else 0, pad[-1], s.groups)


def supported_conv(s) -> bool:
    """A 1-D or 2-D, undilated, ungrouped convolution (transposed or not): the kernels conv.py models."""
    return len(s.in_size) in (1, 2) and all(d == 1 for d in (s.dilation or (1,))) and s.groups == 1


def _unique(keys: list) -> tuple[list, np.ndarray]:
    """Distinct keys in first-seen order and the index of each input into them."""
    seen: dict = {}
    idx = np.array([seen.setdefault(k, len(seen)) for k in keys], dtype=np.int64)
    return list(seen), idx


def _gemm_rows(rows, shapes, keys, dtype, a, s) -> np.ndarray:
    """Seconds of one kernel of each GEMM row (recurrent GEMMs: one time step)."""
    uniq, idx = _unique([(sh.m, sh.n, sh.k, sh.batch, keys[i].startswith(RECURRENT_KEY))
                         for i, sh in zip(rows, (shapes[i] for i in rows))])
    u = np.array([x[:4] for x in uniq], dtype=float)
    rec = np.array([x[4] for x in uniq], dtype=bool)
    t = np.asarray(gemm_time_s(u[:, 0], u[:, 1], u[:, 2], dtype, a, s, batch=u[:, 3]), dtype=float)
    if rec.any():  # the ops' GEMM is [batch, k] x [k, n] with the weights k x n: the kernel model's M = n, N = batch
        t[rec] = step_s(u[rec, 1], u[rec, 0], u[rec, 2], dtype, a, s)
    return t[idx]


def _conv_rows(rows, shapes, stages, dtype, a, s) -> np.ndarray:
    """Seconds of one kernel of each convolution row (its pass from the row's stage)."""
    out = np.empty(len(rows))
    phases = [(TRANSPOSED_PHASE if shapes[i].transposed else CONV_PHASE)[STAGE_NAMES[stages[i]]] for i in rows]
    for phase in set(phases):
        sel = [j for j, p in enumerate(phases) if p == phase]
        uniq, idx = _unique([conv_dims(shapes[rows[j]]) for j in sel])
        cols = np.array(uniq, dtype=float)
        t, _, _ = conv_time_s({k: cols[:, c] for c, k in enumerate(_CONV_FIELDS)}, phase, dtype, a, s)
        out[sel] = np.asarray(t, dtype=float)[idx]
    return out


def _shape_flops(shape) -> float:
    """Model FLOPs of one kernel of an ops shape: a GEMM's 2 m n k batch; a convolution's direct count over
    the ops' output positions (a transposed one: over its input positions), as ops/conv.py counts them."""
    if type(shape).__name__ == "GemmShape":
        return 2.0 * shape.m * shape.n * shape.k * shape.batch
    positions = shape.in_size if shape.transposed else shape.out_size
    return 2.0 * shape.batch * shape.c_in * shape.c_out / shape.groups * math.prod(positions) * math.prod(shape.kernel)


def launches_per_kernel(keys, stack: SoftwareStack | str) -> np.ndarray:
    """Per row: launches the stack makes for one of the ops' kernels (an unfused recurrent cell: rnn_cell_kernels
    for the ops' one fused gate kernel; their extra DRAM traffic is not modelled), else 1."""
    n = as_stack(stack).rnn_cell_kernels
    return np.array([n if k.startswith(CELL_KEY) else 1 for k in keys], dtype=float)


def row_kernel_times(shapes, keys, stages, layers, flops, dtype: str, arch: GpuArch | str,
                     stack: SoftwareStack | str) -> tuple[np.ndarray, np.ndarray]:
    """(seconds of each row's whole Work, NaN where the kernel model has none; mask of rows a fused kernel
    absorbs). shapes/keys: per row the Work's shape and efficiency key; stages: 0 forward, 1 backward-data,
    2 backward-weight; layers: layer index per row; flops: the Work's FLOPs (kernels = flops / flops(shape))."""
    a, s = as_arch(arch), launch_free(as_stack(stack))
    n = len(shapes)
    out, fused = np.full(n, np.nan), np.zeros(n, dtype=bool)
    names = [type(x).__name__ for x in shapes]
    gemm = [i for i in range(n) if names[i] == "GemmShape"]
    conv = [i for i in range(n) if names[i] == "ConvShape" and supported_conv(shapes[i])]
    if not gemm and not conv:
        return out, fused
    if gemm:
        out[gemm] = _gemm_rows(gemm, shapes, keys, dtype, a, s)
    if conv:
        out[conv] = _conv_rows(conv, shapes, stages, dtype, a, s)
    rows = gemm + conv
    per = np.array([_shape_flops(shapes[i]) for i in rows])
    out[rows] = out[rows] * np.where(per > 0, np.asarray(flops, dtype=float)[rows] / np.where(per > 0, per, 1.0), 0.0)
    if s.fused_attention:
        _fuse_attention(out, fused, shapes, keys, stages, layers, flops, dtype, a, s)
    return out, fused


def _fuse_attention(out, fused, shapes, keys, stages, layers, flops, dtype, a, s) -> None:
    """In place: flash forward on the scores row, output-projection GEMM + flash backward on the chain row,
    the absorbed rows of those layers (softmax, dropout, P x V) at zero time and marked in `fused`."""
    first = {}
    for i, k in enumerate(keys):
        if k == SCORES_KEY and shapes[i] is not None:
            first.setdefault(layers[i], i)
    if not first:
        return
    att = list(first.values())
    sh = np.array([(shapes[i].m, shapes[i].k, shapes[i].batch) for i in att], dtype=float)
    fwd, bwd = (np.atleast_1d(x) for x in flash_times_s(sh[:, 0], sh[:, 1], sh[:, 2], dtype, a, s))
    where = {layer: j for j, layer in enumerate(first)}
    chains, chain_dims = [], []
    for i, key in enumerate(keys):
        j = where.get(layers[i])
        if j is None:
            continue
        if key == SCORES_KEY:
            out[i] = fwd[j]
        elif key in FUSED_AWAY:
            out[i], fused[i] = 0.0, True
        elif key == CHAIN_KEY and stages[i] > 0:
            t, dh, bh = sh[j]
            big_s = bh * t * t * dh  # B h T^2 d_h
            proj = max(float(flops[i]) - 8.0 * big_s, 0.0)  # the chain's dCtx = dY W_out^T GEMM: 2 B T d^2
            d = proj * t / (2.0 * big_s) if big_s else 0.0
            chains.append((i, j))
            chain_dims.append((big_s / (t * d) if d else 0.0, d))
    if chains:
        bt, d = (np.array(x) for x in zip(*chain_dims))
        ok = (bt >= 1) & (d >= 1)
        g = np.where(ok, gemm_time_s(np.maximum(bt, 1), np.maximum(d, 1), np.maximum(d, 1), dtype, a, s), 0.0)
        for (i, j), gs in zip(chains, np.atleast_1d(g)):
            out[i] = bwd[j] + gs


def work_times_s(works, stages, dtype: str, arch: GpuArch | str, stack: SoftwareStack | str) -> np.ndarray:
    """Seconds for each ops Work (stage names per item, one layer), NaN where the kernel model has no answer."""
    codes = [STAGE_NAMES.index(st) for st in stages]
    t, _ = row_kernel_times([w.shape for w in works], [w.efficiency_key for w in works], codes, [0] * len(works),
                            [w.flops for w in works], dtype, arch, stack)
    return t
