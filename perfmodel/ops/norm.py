"""Cost rules of normalisation: batchnorm (over channel dim 0) and layernorm (over the last dim).

FLOPs per element are nominal (named below); both ops are bandwidth bound. Mean and inverse std are
kept in fp32 (PyTorch's accumulate type) even for fp16/bf16 activations.
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import OpCost, Work, cost_rule, numel

STATS_BYTES = 4  # fp32 mean / inverse std per channel (batchnorm) or per row (layernorm)
NORM_STATS_FLOPS = 3  # per element: add to sum, square, add to sum of squares
NORM_APPLY_FLOPS = 4  # per element: (x - mean) * rstd * gamma + beta
NORM_BWD_REDUCE_FLOPS = 5  # per element: recompute xhat (2), dy * xhat, accumulate sum(dy) and sum(dy*xhat)
NORM_BWD_APPLY_FLOPS = 5  # per element: dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy*xhat))


def stream_key(op: str, backward: bool) -> str:
    """Efficiency key of a normalisation's forward or backward kernels: "norm/<op>/forward" or "norm/<op>/backward".

    They have their own bandwidth curves where a profile has them (calibrated CPUs): PyTorch's CPU batchnorm walks
    each channel's N runs of H x W elements (backward twice: sums, then dx) and layernorm reduces rows, which reach
    well under the streaming bandwidth once the tensors leave the caches while their in-cache per-op rates say
    nothing of it; the keys fall back to "norm/<op>", then "norm", elsewhere."""
    return f"norm/{op}/{'backward' if backward else 'forward'}"


BATCHNORM_FORWARD_KEY = stream_key("batchnorm", False)
BATCHNORM_BACKWARD_KEY = stream_key("batchnorm", True)


@cost_rule("batchnorm")
def batchnorm(layer: Layer, batch: int, b: int) -> OpCost:
    """Training-mode batchnorm: a statistics kernel then a normalise kernel (cuDNN / native CUDA).

    Backward: one reduction kernel (sum dy, sum dy*xhat) then one elementwise dx kernel. The reduction
    yields dgamma/dbeta, so with affine it is charged to backward_weight (it runs even when no dx is
    needed); without affine it is part of backward_data. Autograd saves x and per-channel mean/invstd. Kernels are
    keyed BATCHNORM_FORWARD_KEY / BATCHNORM_BACKWARD_KEY.
    """
    n, c = batch * numel(layer.input_shapes[0]), layer.input_shapes[0][0]
    affine = layer.spec.affine
    stats, key = 2 * c * STATS_BYTES, BATCHNORM_FORWARD_KEY
    fwd = (Work("memory", flops=NORM_STATS_FLOPS * n, bytes_read=n * b, bytes_written=stats, efficiency_key=key),
           Work("memory", flops=NORM_APPLY_FLOPS * n, bytes_read=n * b, bytes_written=n * b, efficiency_key=key))
    reduce = Work("memory", flops=NORM_BWD_REDUCE_FLOPS * n, bytes_read=2 * n * b,
                  bytes_written=(2 * c * b if affine else stats), efficiency_key=BATCHNORM_BACKWARD_KEY)
    apply = Work("memory", flops=NORM_BWD_APPLY_FLOPS * n, bytes_read=2 * n * b, bytes_written=n * b,
                 efficiency_key=BATCHNORM_BACKWARD_KEY)
    return OpCost(
        forward=fwd, backward_data=(apply,) if affine else (reduce, apply),
        backward_weight=(reduce,) if affine else (),
        params=2 * c if affine else 0, saved_bytes=n * b + stats, output_bytes=n * b,
        extra={"param_tensors": 2 if affine else 0},
    )


@cost_rule("layernorm")
def layernorm(layer: Layer, batch: int, b: int) -> OpCost:
    """One fused kernel forward (row stats + normalise); backward: one dx kernel (row reductions +
    apply) and, with affine, one column-reduction kernel for dgamma/dbeta. Saves x and row mean/rstd. Kernels are
    keyed stream_key("layernorm", backward)."""
    x = layer.input_shapes[0]
    rows, d = batch * numel(x[:-1]), x[-1]
    n, affine = rows * d, layer.spec.affine
    stats, weights, key = 2 * rows * STATS_BYTES, (2 * d if affine else 0), stream_key("layernorm", True)
    fwd = Work("memory", flops=(NORM_STATS_FLOPS + NORM_APPLY_FLOPS) * n, bytes_read=(n + weights) * b,
               bytes_written=n * b + stats, efficiency_key=stream_key("layernorm", False))
    bwd_d = Work("memory", flops=(NORM_BWD_REDUCE_FLOPS + NORM_BWD_APPLY_FLOPS) * n,
                 bytes_read=2 * n * b + stats, bytes_written=n * b, efficiency_key=key)
    bwd_w = Work("memory", flops=NORM_BWD_REDUCE_FLOPS * n, bytes_read=2 * n * b + stats, bytes_written=weights * b,
                 efficiency_key=key)
    return OpCost(
        forward=(fwd,), backward_data=(bwd_d,), backward_weight=(bwd_w,) if affine else (),
        params=weights, saved_bytes=n * b + stats, output_bytes=n * b,
        extra={"param_tensors": 2 if affine else 0},
    )
