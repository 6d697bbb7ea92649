"""Cost rule of multi-head self-attention on [T, D], as torch.nn.MultiheadAttention's unfused path runs it.

Forward: QKV projection GEMM (2*T*D*3D per sample), scores Q K^T (2*T*T*D), softmax over
[heads, T, T], optional dropout on the probabilities, probs x V (2*T*T*D), output projection
(2*T*D*D); one kernel each. The 1/sqrt(d) scale and the causal mask are fused into the scores GEMM
(baddbmm), and a causal layer still computes all T*T scores (the non-flash path does), so `causal`
changes no cost. Head split/merge are assumed to be views.

Backward: the GEMMs do twice the forward's FLOPs. op_cost drops backward_data when the layer's input
needs no gradient, yet the chain from dy back to dQKV is still needed for the in-projection weight
gradient; so backward_data holds only dX = dQKV W_in, and backward_weight holds dW_out, dW_in, the bias
reductions and that chain (extra["data_chain_flops"] gives the chain's FLOPs).

Selective recomputation (Megatron): the attention core (scores, softmax, dropout, probs x V: the forward
Work keyed CORE_KEYS) runs again in backward instead of keeping its saved bytes (extra["core_saved_bytes"]).

CPU fused attention (cpu_flash, mha_layout_cpu): what a CPU stack with fused attention runs instead of the core
(engine.cpu_attention applies it; the stack file names the block sizes). PyTorch's cpu_flash_attention
(aten/src/ATen/native/cpu/FlashAttentionKernel.cpp) splits each head's queries into blocks of q rows and keys into
blocks of kv rows; per (query block, key block) the forward runs a GEMM Q K^T [q, kv, dh], a fused pass over the
q x kv scores (scale and row max, exp(x - max) and row sum: _mul_reduce_max_fusion_kernel and
_exp_reduce_sum_fusion_kernel) and a GEMM P V [q, dh, kv]; the backward recomputes Q K^T and exp(x - lse) and
runs four more GEMMs (dV += P^T dO, dP = dO V^T, dQ += dS K, dK += dS^T Q) and dS = P (dP - rowsum(dO O)) per
score. No score matrix reaches memory. nn.MultiheadAttention's own layout work around it (torch.profiler on
torch 2.13 CPU, batch_first self-attention): forward copies the packed [T, B, 3, D] projection and the
[B, T, H, dh] output to contiguous layouts; backward zero-fills dQ, dK, dV (3 x B T D), copies the head
gradients back twice (6 x B T D), and the unbind of the packed projection zero-fills three [3, T, B, D] buffers,
adds them (2 adds) and copies the result once. With dropout the CPU runs the math path
(aten/src/ATen/native/transformers/attention.cpp, _scaled_dot_product_attention_math): the unfused kernels this rule
prices, plus Q and K each scaled by sqrt(1/sqrt(dh)) in forward and their gradients in backward (mha_math_cpu), and
the same layout kernels.

Efficiency keys: attention/proj (QKV and output projections, dX), attention/scores (Q K^T),
attention/context (P V), attention/weight-grad, attention/chain (the backward bmm chain), elementwise/softmax/attention,
elementwise/dropout and reduce/bias; the GEMMs carry their shapes (per head for the bmms).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..graph.layer_graph import Layer
from .base import GemmShape, OpCost, Work, cost_rule
from .elementwise import DROPOUT_FLOPS, MASK_BYTES, SOFTMAX_BWD_FLOPS, SOFTMAX_FWD_FLOPS, TRANSCENDENTAL_FLOPS

FLASH_SCORE_FLOPS = 4 + TRANSCENDENTAL_FLOPS  # scale, max, subtract, exp, sum per score (forward pass)
FLASH_RECOMPUTE_FLOPS = 1 + TRANSCENDENTAL_FLOPS  # exp(x - lse) per score (backward)
FLASH_DS_FLOPS = 2  # dS = P * (dP - d) per score (backward)
FLASH_KEY = "attention/flash"

# forward Work of the attention core (what Megatron's selective recomputation runs again in backward)
CORE_KEYS = ("attention/scores", "elementwise/softmax/attention", "elementwise/dropout", "attention/context")


def _forward(batch: int, t: int, d: int, h: int, s: int, bias: int, p: float, b: int) -> tuple[Work, ...]:
    """QKV GEMM, scores, softmax, (dropout), probs x V, output projection; s = score elements, h heads."""
    btd, dh = batch * t * d, d // h
    works = [
        Work("matrix", flops=2 * btd * 3 * d + bias * 3 * btd, bytes_read=(btd + 3 * d * d + bias * 3 * d) * b,
             bytes_written=3 * btd * b, efficiency_key="attention/proj", shape=GemmShape(batch * t, 3 * d, d)),
        Work("matrix", flops=2 * btd * t, bytes_read=2 * btd * b, bytes_written=s * b,
             efficiency_key="attention/scores", shape=GemmShape(t, t, dh, batch * h)),
        Work("memory", flops=SOFTMAX_FWD_FLOPS * s, bytes_read=s * b, bytes_written=s * b,
             efficiency_key="elementwise/softmax/attention"),
    ]
    if p > 0:
        works.append(Work("memory", flops=DROPOUT_FLOPS * s, bytes_read=s * b, bytes_written=s * (b + MASK_BYTES),
                          efficiency_key="elementwise/dropout"))
    works += [
        Work("matrix", flops=2 * btd * t, bytes_read=(s + btd) * b, bytes_written=btd * b,
             efficiency_key="attention/context", shape=GemmShape(t, dh, t, batch * h)),
        Work("matrix", flops=2 * btd * d + bias * btd, bytes_read=(btd + d * d + bias * d) * b,
             bytes_written=btd * b, efficiency_key="attention/proj", shape=GemmShape(batch * t, d, d)),
    ]
    return tuple(works)


def _backward_weight(batch: int, t: int, d: int, s: int, bias: int, p: float, b: int) -> tuple[Work, ...]:
    """dW_out and dW_in GEMMs; chain GEMMs dCtx, dP, dV, dQ, dK; softmax (and dropout) backward; bias sums."""
    btd = batch * t * d
    works = [
        Work("matrix", flops=2 * btd * d + 2 * btd * 3 * d, bytes_read=(2 * btd + 4 * btd) * b,
             bytes_written=4 * d * d * b, kernels=2, efficiency_key="attention/weight-grad",
             shape=GemmShape(d, 3 * d, batch * t)),
        Work("matrix", flops=2 * btd * d + 8 * btd * t, bytes_read=(btd + d * d + 5 * btd + 3 * s) * b,
             bytes_written=(btd + s + 3 * btd) * b, kernels=5, efficiency_key="attention/chain"),
        Work("memory", flops=SOFTMAX_BWD_FLOPS * s, bytes_read=2 * s * b, bytes_written=s * b,
             efficiency_key="elementwise/softmax/attention"),
    ]
    if p > 0:
        works.append(Work("memory", flops=DROPOUT_FLOPS * s, bytes_read=s * (b + MASK_BYTES), bytes_written=s * b,
                          efficiency_key="elementwise/dropout"))
    if bias:
        works.append(Work("memory", flops=4 * btd, bytes_read=4 * btd * b, bytes_written=4 * d * b, kernels=2,
                          efficiency_key="reduce/bias"))
    return tuple(works)


@cost_rule("attention", tp="heads")
def attention(layer: Layer, batch: int, b: int) -> OpCost:
    """Self-attention cost; saves x, Q, K, V, the probabilities, the context (and the dropout mask and
    dropped probabilities when dropout > 0). Params as nn.MultiheadAttention: 4*D*D (+ 4*D bias)."""
    sp = layer.spec
    t, d = layer.input_shapes[0]
    bias, p = int(sp.bias), sp.dropout
    s, btd = batch * sp.heads * t * t, batch * t * d
    bwd_w = _backward_weight(batch, t, d, s, bias, p, b)
    dx = Work("matrix", flops=2 * btd * 3 * d, bytes_read=(3 * btd + 3 * d * d) * b, bytes_written=btd * b,
              efficiency_key="attention/proj", shape=GemmShape(batch * t, d, 3 * d))
    chain = sum(w.flops for w in bwd_w[1:3 + (p > 0)])  # chain GEMMs, softmax and dropout backward
    core = s * b + (s * (MASK_BYTES + b) if p > 0 else 0)  # probabilities (+ mask, dropped): the attention core
    return OpCost(
        forward=_forward(batch, t, d, sp.heads, s, bias, p, b), backward_data=(dx,), backward_weight=bwd_w,
        params=4 * d * d + bias * 4 * d, saved_bytes=5 * btd * b + core, output_bytes=btd * b,
        extra={"param_tensors": 4 if bias else 2, "score_bytes": s * b, "data_chain_flops": chain,
               "core_saved_bytes": core, "dropout": p},
    )


def blocks(n: int, size: int) -> dict[int, int]:
    """Block lengths of n rows split into blocks of `size` rows: {length: count} (full blocks, then the tail)."""
    full, tail = divmod(n, size)
    out = {size: full} if full else {}
    if tail:
        out[tail] = out.get(tail, 0) + 1
    return out


@dataclass(frozen=True)
class FlashCpu:
    """Work of one CPU flash-attention call (forward and backward) by pricing class: block GEMMs (no dispatch of
    their own), score passes at the softmax rates, and the tensor traffic of the call."""

    fwd_gemm: tuple[Work, ...]
    fwd_scores: Work
    bwd_gemm: tuple[Work, ...]
    bwd_exp: Work
    bwd_ds: Work


def _block_gemm(m: int, n: int, k: int, count: int, b: int, part: str) -> Work:
    """`count` GEMMs [m, k] x [k, n] of flash blocks; their operands stay in cache (the call's DRAM traffic is
    on its score pass), so no bytes. `kernels` counts the GEMM calls (for their size), not dispatches."""
    return Work("matrix", flops=2.0 * m * n * k * count, kernels=count, efficiency_key=f"{FLASH_KEY}/{part}",
                shape=GemmShape(m, n, k, count), allocs=(0.0,))


def cpu_flash(bh: int, t: int, dh: int, q_block: int, kv_block: int, b: int) -> FlashCpu:
    """PyTorch's cpu_flash_attention over bh heads of [t, dh] (self-attention, not causal) with query blocks of
    q_block rows and key/value blocks of kv_block rows: per block pair 2 GEMMs forward, 5 backward (module
    docstring). The forward reads Q once and K, V once per query block and writes O and the row log-sum-exp; the
    backward reads Q, K, V, O, dO and writes dQ, dK, dV."""
    fwd, bwd = [], []
    qb, kb = blocks(t, q_block), blocks(t, kv_block)
    for q, nq in qb.items():
        for kv, nk in kb.items():
            c = bh * nq * nk
            fwd += [_block_gemm(q, kv, dh, c, b, "scores"), _block_gemm(q, dh, kv, c, b, "context")]
            bwd += [_block_gemm(q, kv, dh, c, b, "scores"), _block_gemm(kv, dh, q, c, b, "dv"),
                    _block_gemm(q, kv, dh, c, b, "dp"), _block_gemm(q, dh, kv, c, b, "dq"),
                    _block_gemm(kv, dh, q, c, b, "dk")]
    s, x = bh * t * t, bh * t * dh  # score elements, elements of one of Q, K, V, O
    rescale = bh * t * dh * (sum(kb.values()) - 1)  # dst *= exp(max_old - max) for every key block after the first
    key = "elementwise/softmax/attention"
    scores = Work("memory", flops=FLASH_SCORE_FLOPS * s + rescale, bytes_read=(1 + 2 * sum(qb.values())) * x * b,
                  bytes_written=x * b + bh * t * 4, efficiency_key=key, allocs=(x * b, bh * t * 4))
    exp = Work("memory", flops=FLASH_RECOMPUTE_FLOPS * s + 2 * x, bytes_read=5 * x * b, bytes_written=3 * x * b,
               efficiency_key=key, allocs=(0.0,))  # dQ, dK, dV: buffers of mha_layout_cpu's fills
    ds = Work("memory", flops=FLASH_DS_FLOPS * s, efficiency_key=key, allocs=(0.0,))
    return FlashCpu(tuple(fwd), scores, tuple(bwd), exp, ds)


def _copy(n: float, b: int, kernels: int = 1) -> Work:
    return Work("memory", bytes_read=n * b, bytes_written=n * b, kernels=kernels, efficiency_key="layout/copy",
                allocs=(n * b,))


def _fill(n: float, b: int, kernels: int) -> Work:
    return Work("memory", bytes_written=n * b * kernels, kernels=kernels, efficiency_key="layout/fill",
                allocs=(n * b,))


def mha_layout_cpu(btd: int, b: int) -> tuple[tuple[Work, ...], tuple[Work, ...]]:
    """(forward, backward) layout kernels nn.MultiheadAttention runs around the fused kernel on a CPU for B T D
    = `btd` elements per Q, K, V (module docstring): every copy, fill and add as one kernel writing a fresh buffer."""
    fwd = (_copy(3 * btd, b), _copy(btd, b))
    bwd = (_fill(btd, b, 3), _copy(btd, b, 6), _fill(3 * btd, b, 3),
           Work("memory", flops=2 * 3 * btd, bytes_read=4 * 3 * btd * b, bytes_written=2 * 3 * btd * b, kernels=2,
                efficiency_key="elementwise/add", allocs=(0.0,)), _copy(3 * btd, b))
    return fwd, bwd


def mha_math_cpu(btd: int, b: int) -> tuple[tuple[Work, ...], tuple[Work, ...]]:
    """(forward, backward) kernels the CPU math path runs besides the unfused rule's and mha_layout_cpu's: Q and K
    scaled before Q K^T (2 multiplies over B T D each way)."""
    mul = Work("memory", flops=2 * btd, bytes_read=2 * btd * b, bytes_written=2 * btd * b, kernels=2,
               efficiency_key="elementwise/mul")
    return (mul,), (mul,)
