"""Cost rule of the `moe` op (mixture of experts, token choice), written for the PyTorch importer.

A router (a dense map D -> experts, softmax, top-k) picks `top_k` experts per token; every expert is a
feed-forward map D -> hidden -> D (`gated`: gate and up projections then a down projection, as in
SwiGLU experts). The expected load is uniform: each expert receives tokens * top_k / experts tokens
(EXPECTED TOKENS PER EXPERT), so the expert GEMMs of one layer are `experts` GEMMs of that many rows.
With a `capacity_factor` c (GShard / Switch Transformer), every expert computes a padded buffer of
c x the expected tokens (`expert_slots` = tokens * top_k * c): expert GEMMs, their activation, the
dispatch buffer and the saved expert activations scale with c; the router and the combine do not.
Expert FLOPs per token (forward) = top_k x c x the FLOPs of one expert FFN (`expert_flops_per_token`).

Assumptions (named):
- EXPERT_ACT_FLOPS: FLOPs per element of the experts' activation (a transcendental plus the gating multiply).
- ROUTER_FLOPS: FLOPs per router logit for softmax and top-k selection.
- Dispatch (gather the tokens of each expert) and combine (weighted scatter-add) are each one memory pass
  over tokens * top_k rows of D elements; the combine costs COMBINE_FLOPS per element.
- Backward: each GEMM's data and weight gradients cost what its forward costs (as for dense).
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import INDEX_BYTES, OpCost, Work, cost_rule, gemm, numel

EXPERT_ACT_FLOPS = 5
ROUTER_FLOPS = 6
COMBINE_FLOPS = 2


def moe_params(d: int, experts: int, hidden: int, gated: bool, bias: bool, router_bias: bool) -> int:
    """Parameters: router D*E (+E) and, per expert, (3 if gated else 2) D*hidden matrices (+ their biases)."""
    mats = 3 if gated else 2
    per_expert = mats * d * hidden + (((mats - 1) * hidden + d) if bias else 0)
    return d * experts + (experts if router_bias else 0) + experts * per_expert


def capacity(spec) -> float:
    """The capacity factor a moe spec computes with: its `capacity_factor`, 1 (dropless, expected load) if None."""
    return 1.0 if spec.capacity_factor is None else float(spec.capacity_factor)


def expert_slots(tokens: float, spec) -> float:
    """Token slots the experts of one layer compute for `tokens` tokens: tokens * top_k * capacity."""
    return tokens * spec.top_k * capacity(spec)


def expert_flops_per_token(d: int, spec) -> float:
    """Forward GEMM FLOPs of the experts per token: top_k x capacity x 2 x (3 if gated else 2) x D x hidden."""
    return expert_slots(1.0, spec) * 2 * (3 if spec.gated else 2) * d * spec.hidden


def _expert_gemms(tokens: float, d: int, f: int, e: int, mats: int, b: int, stage: str) -> list[Work]:
    """The experts' GEMMs of one stage: `e` GEMMs per matrix, each over the expected rows per expert."""
    rows = tokens / e
    m = max(1, round(rows))
    out = []
    for k_dim, n_dim, count in ((d, f, mats - 1), (f, d, 1)):  # up (and gate) projections, then down
        flops = 2 * tokens * k_dim * n_dim * count
        if stage == "forward":
            shape = (m, n_dim, k_dim)
        elif stage == "backward_data":
            shape = (m, k_dim, n_dim)
        else:
            shape = (k_dim, n_dim, m)
        w_bytes = e * count * k_dim * n_dim * b
        out.append(gemm("matmul/moe", *shape, batch=e * count, flops=flops, kernels=e * count,
                        bytes_read=tokens * count * k_dim * b + w_bytes, bytes_written=tokens * count * n_dim * b))
    return out


@cost_rule("moe")
def moe(layer: Layer, batch: int, b: int) -> OpCost:
    """Router GEMM + softmax/top-k, dispatch, expert GEMMs at the expected tokens per expert, activation, combine."""
    s = layer.spec
    x = layer.input_shapes[0]
    d, e, f, k = x[-1], s.experts, s.hidden, s.top_k
    n = batch * numel(x[:-1])  # tokens
    routed = n * k  # token-expert pairs
    slots = expert_slots(n, s)  # padded to the capacity (= routed when dropless)
    mats = 3 if s.gated else 2
    router = gemm("matmul", n, e, d, flops=2 * n * d * e + (n * e if s.router_bias else 0),
                  bytes_read=(n * d + d * e) * b, bytes_written=n * e * b)
    select = Work("memory", flops=ROUTER_FLOPS * n * e, bytes_read=n * e * b, bytes_written=n * k * (b + INDEX_BYTES),
                  efficiency_key="elementwise/router")
    dispatch = Work("memory", bytes_read=routed * d * b, bytes_written=slots * d * b, efficiency_key="elementwise/gather")
    act = Work("memory", flops=EXPERT_ACT_FLOPS * slots * f, bytes_read=(mats - 1) * slots * f * b,
               bytes_written=slots * f * b, efficiency_key="elementwise/moe-activation")
    combine = Work("memory", flops=COMBINE_FLOPS * routed * d, bytes_read=routed * d * b + n * k * b,
                   bytes_written=n * d * b, efficiency_key="elementwise/scatter")
    fwd = (router, select, dispatch, *_expert_gemms(slots, d, f, e, mats, b, "forward"), act, combine)
    bwd_data = (*_expert_gemms(slots, d, f, e, mats, b, "backward_data"), act, dispatch, combine,
                gemm("matmul", n, d, e, flops=2 * n * d * e, bytes_read=(n * e + d * e) * b, bytes_written=n * d * b))
    bwd_w = (*_expert_gemms(slots, d, f, e, mats, b, "backward_weight"),
             gemm("matmul", d, e, n, flops=2 * n * d * e, bytes_read=(n * e + n * d) * b, bytes_written=d * e * b))
    saved = (n * d + n * e + slots * d + slots * f * mats) * b
    return OpCost(forward=fwd, backward_data=bwd_data, backward_weight=bwd_w,
                  params=moe_params(d, e, f, s.gated, s.bias, s.router_bias), saved_bytes=saved,
                  output_bytes=n * d * b, extra={"tokens_per_expert": routed / e, "expert_slots": slots})
