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

Efficiency keys: attention/proj (QKV and output projections, dX), attention/scores (Q K^T),
attention/context (P V), attention/weight-grad, attention/chain (the backward bmm chain), elementwise/softmax/attention,
elementwise/dropout and reduce/bias; the GEMMs carry their shapes (per head for the bmms).
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import GemmShape, OpCost, Work, cost_rule
from .elementwise import DROPOUT_FLOPS, MASK_BYTES, SOFTMAX_BWD_FLOPS, SOFTMAX_FWD_FLOPS

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
               "core_saved_bytes": core},
    )
