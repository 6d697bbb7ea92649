"""CPU fused attention: the rows of an attention layer as a CPU software stack with fused attention runs them.

The ops price nn.MultiheadAttention's unfused path (ops.attention: Q K^T, softmax, P V as separate kernels with
the score matrix in memory). A device whose software stack has `fused_attention` and a `cpu_attention` block
(hardware_profiles/stacks/pytorch-cpu.yaml; Rates.cpu_stack) runs PyTorch's cpu_flash_attention instead
when the layer has no dropout (the fused kernel refuses dropout unless the stack says otherwise). Then, per layer:

- the forward scores row takes the flash forward (block GEMMs at the calibrated GEMM efficiency of their own
  size, with no dispatch of their own; the score pass at the calibrated softmax rate; one dispatch for the call)
  plus nn.MultiheadAttention's forward layout copies (ops.attention.mha_layout_cpu); softmax, dropout and P V
  rows are absorbed (time 0, no launch);
- the backward chain row takes the output-projection data GEMM dCtx = dY W_out^T [B T, D, D], the flash backward
  (recomputation included) and the backward layout kernels; the backward softmax row is absorbed.

Block GEMMs run on one thread each inside the call's parallel loop; their thread scaling is the engine's GEMM
split over the blocks' rows. Causal layers are priced as full (the rows do not say causal).

A layer with dropout (when the stack's fused kernel refuses it) runs the math path: its unfused rows stay, and its
scores and chain rows also carry nn.MultiheadAttention's layout kernels and the Q, K scaling (ops.attention
mha_math_cpu); its softmax and dropout rows take the calibrated rates of those ops (the same aten kernels as the
softmax and dropout layers; the layer's own op key, "attention", has none).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ..kernels.schema import CpuAttention, SoftwareStack
from ..ops.attention import cpu_flash, mha_layout_cpu, mha_math_cpu
from ..ops.base import DTYPE_BYTES, GemmShape, Work

SCORES_KEY, CHAIN_KEY, DROPOUT_KEY = "attention/scores", "attention/chain", "elementwise/dropout"
ABSORBED = ("elementwise/softmax/attention", DROPOUT_KEY, "attention/context")
OP_RATE = {"elementwise/softmax/attention": "softmax", DROPOUT_KEY: "dropout"}  # math path: rate keys of its rows
CHAIN_GEMMS = 8  # the unfused chain's bmm FLOPs are 8 B h T^2 dh besides dCtx (ops.attention._backward_weight)


def chain_dims(chain_flops: float, t: int, dh: int, bh: int) -> tuple[int, int]:
    """(B T, D) of a layer from its chain row's FLOPs 2 B T D^2 + 8 B h T^2 dh and its scores shape."""
    big_s = bh * t * t * dh
    d = (chain_flops - CHAIN_GEMMS * big_s) * t / (2.0 * big_s) if big_s else 0.0
    d = max(int(round(d)), 1)
    return max(int(round(big_s / (t * d))), 1), d


def _layers(t) -> dict[int, dict]:
    """Attention layers of table `t` with a scores row and no dropout row: per layer its row indices by role."""
    found: dict[int, dict] = {}
    for i, (k, sh) in enumerate(zip(t.keys, t.shapes)):
        if k == SCORES_KEY and isinstance(sh, GemmShape) and t.stage[i] == 0:
            found.setdefault(int(t.layer[i]), {"scores": i, "absorbed": [], "chain": None, "shape": sh})
    if not found:
        return {}
    for i, k in enumerate(t.keys):
        lay = found.get(int(t.layer[i]))
        if lay is None:
            continue
        if k == DROPOUT_KEY:
            lay["dropout"] = True
        if k in ABSORBED:
            lay["absorbed"].append(i)
        elif k == CHAIN_KEY and t.stage[i] > 0:
            lay["chain"] = i
    return found


Price = Callable[..., dict]  # engine.worktime.work_times(works, rates, key) -> per item time, compute, memory, roof


def _sum(price: Price, works, r, key: str | None) -> tuple[float, float, float]:
    """(roof seconds, compute seconds, memory seconds) of `works` under `r` (no launch overhead: roof)."""
    if not works:
        return 0.0, 0.0, 0.0
    w = price(tuple(works), r, key)
    return float(w["roof"].sum()), float(w["compute"].sum()), float(w["memory"].sum())


def stack_attention(stack: SoftwareStack | None) -> CpuAttention | None:
    """The `cpu_attention` block of a CPU software stack that fuses attention, else None."""
    return stack.cpu_attention if stack is not None and stack.fused_attention else None


def fused_parts(bh: int, t: int, dh: int, bt: int, d: int, stack: CpuAttention, b: int, r, price: Price) -> dict:
    """Seconds (roof, compute, memory) and dispatches of the fused forward and backward of one layer."""
    f = cpu_flash(bh, t, dh, stack.q_block(t), min(stack.kv_split, t), b)
    fwd_lay, bwd_lay = mha_layout_cpu(bt * d, b)
    inner = replace(r, overhead_s=0.0, cpu_stack=None)  # block GEMMs and passes: no dispatch, no stack rewrite
    parts = {"fwd": [_sum(price, f.fwd_gemm, inner, None), _sum(price, (f.fwd_scores,), inner, "softmax"),
                     _sum(price, fwd_lay, r, "add")],
             "bwd": [_sum(price, f.bwd_gemm, inner, None), _sum(price, (f.bwd_exp,), inner, "softmax"),
                     _sum(price, (f.bwd_ds,), inner, "softmax.backward"), _sum(price, bwd_lay, r, "add"),
                     _sum(price, (Work("matrix", flops=2.0 * bt * d * d, bytes_read=(bt * d + d * d) * b,
                                       bytes_written=bt * d * b, efficiency_key="attention/proj",
                                       shape=GemmShape(bt, d, d)),), r, None)]}
    out = {s: tuple(sum(x[j] for x in v) for j in range(3)) for s, v in parts.items()}
    out["fwd_kernels"] = 1 + sum(w.kernels for w in fwd_lay)
    out["bwd_kernels"] = 2 + sum(w.kernels for w in bwd_lay)  # flash backward and dCtx
    return out


def math_parts(bt: int, d: int, b: int, r, price: Price) -> dict:
    """Seconds (roof, compute, memory) and dispatches the math path adds to the unfused rows of one layer."""
    (fl, bl), (fm, bm) = mha_layout_cpu(bt * d, b), mha_math_cpu(bt * d, b)
    out = {"fwd": _sum(price, fl, r, "add"), "bwd": _sum(price, bl, r, "add")}
    for stage, works in (("fwd", fm), ("bwd", bm)):
        out[stage] = tuple(x + y for x, y in zip(out[stage], _sum(price, works, r, "mul")))
    out["fwd_kernels"] = sum(w.kernels for w in fl + fm)
    out["bwd_kernels"] = sum(w.kernels for w in bl + bm)
    return out


def _math_rows(t, rows, r, price: Price, roof, compute, memory, s: float) -> None:
    """In place: the math path's softmax and dropout rows priced at their ops' calibrated rates (OP_RATE)."""
    for i in rows:
        op = OP_RATE.get(t.keys[i])
        if op is None:
            continue
        w = Work("memory", flops=float(t.flops[i]), bytes_read=float(t.bytes[i] - t.written[i]),
                 bytes_written=float(t.written[i]), kernels=int(t.kernels[i]), efficiency_key=t.keys[i],
                 allocs=tuple(t.allocs[i]))
        x = price((w,), r, op if t.stage[i] == 0 else f"{op}.backward")
        roof[i], compute[i], memory[i] = (float(x[k][0]) * s for k in ("roof", "compute", "memory"))


def cpu_attention_rows(t, r, roof, compute, memory, kern, scale, price: Price):
    """(roof, compute, memory, kernels) per row of table `t` with its attention layers fused as the CPU stack of
    `r` runs them (module docstring); unchanged arrays when it has none. `scale` (per layer) divides the work."""
    stack = stack_attention(r.cpu_stack)
    found = _layers(t) if stack is not None and t.keys is not None and t.shapes is not None else {}
    if not found:
        return roof, compute, memory, kern
    roof, compute, memory, kern = (np.array(a, dtype=float, copy=True) for a in (roof, compute, memory, kern))
    b = DTYPE_BYTES.get(r.dtype, 4)
    for layer, lay in found.items():
        sh, chain = lay["shape"], lay["chain"]
        bt, d = chain_dims(float(t.flops[chain]), sh.m, sh.k, sh.batch) if chain is not None else (1, sh.k)
        fused = stack.dropout or not lay.get("dropout")
        p = fused_parts(sh.batch, sh.m, sh.k, bt, d, stack, b, r, price) if fused else math_parts(bt, d, b, r, price)
        s = 1.0 if scale is None else float(scale[layer])
        rows = [(lay["scores"], p["fwd"], p["fwd_kernels"])]
        if chain is not None:
            rows.append((chain, p["bwd"], p["bwd_kernels"]))
        if fused:
            for i in lay["absorbed"]:
                roof[i] = compute[i] = memory[i] = kern[i] = 0.0
            for i, (secs, comp, mem), k in rows:
                roof[i], compute[i], memory[i], kern[i] = secs * s, comp * s, mem * s, k
            continue
        _math_rows(t, lay["absorbed"], r, price, roof, compute, memory, s)
        for i, (secs, comp, mem), k in rows:  # math path: its unfused rows plus the layout and scaling kernels
            roof[i], compute[i], memory[i], kern[i] = roof[i] + secs * s, compute[i] + comp * s, \
                memory[i] + mem * s, kern[i] + k
    return roof, compute, memory, kern
