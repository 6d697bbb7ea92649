"""Cost rule of matmul: a batched product of two activations (no parameters), e.g. attention scores."""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import OpCost, cost_rule, gemm, numel


@cost_rule("matmul")
def matmul(layer: Layer, batch: int, b: int) -> OpCost:
    """[..., M, K] x [..., K, N] as one bmm over L = batch * leading dims; backward is two bmms
    (dA = dY B^T, dB = A^T dY), both charged to backward_data. Autograd keeps both inputs.

    Efficiency key "matmul/batched" (thin when M or N <= 16); the backward's shape is dA's [M,N]x[N,K].
    """
    a, out = layer.input_shapes[0], layer.output_shape
    lead, m, k, n = batch * numel(a[:-2]), a[-2], a[-1], out[-1]
    sa, sb, sy = lead * m * k, lead * k * n, lead * m * n
    fwd = gemm("matmul/batched", m, n, k, lead, flops=2 * lead * m * k * n, bytes_read=(sa + sb) * b,
               bytes_written=sy * b)
    bwd = gemm("matmul/batched", m, k, n, lead, flops=4 * lead * m * k * n, bytes_read=2 * (sy * b) + (sa + sb) * b,
               bytes_written=(sa + sb) * b, kernels=2)
    return OpCost(forward=(fwd,), backward_data=(bwd,), saved_bytes=(sa + sb) * b, output_bytes=sy * b)
