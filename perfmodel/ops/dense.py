"""Cost rules of matrix ops: dense (fully connected) and matmul."""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import OpCost, Work, cost_rule, gemm, numel


@cost_rule("dense", tp="linear")
def dense(layer: Layer, batch: int, b: int) -> OpCost:
    """y = x W^T + b: GEMM of M=batch*leading dims, K=in, N=units; backward is two GEMMs plus a bias reduction.

    Kernel shapes: forward [M,K]x[K,N], backward-data [M,N]x[N,K], backward-weight [K,M]x[M,N].
    """
    x = layer.input_shapes[0]
    k, n = x[-1], layer.spec.units
    m = batch * numel(x[:-1])
    bias = layer.spec.bias
    fwd = gemm("matmul", m, n, k, flops=2 * m * k * n + (m * n if bias else 0),
               bytes_read=(m * k + k * n + (n if bias else 0)) * b, bytes_written=m * n * b)
    bwd_data = gemm("matmul", m, k, n, flops=2 * m * n * k, bytes_read=(m * n + n * k) * b, bytes_written=m * k * b)
    bwd_w = [gemm("matmul", k, n, m, flops=2 * m * n * k, bytes_read=(m * n + m * k) * b, bytes_written=k * n * b)]
    if bias:
        bwd_w.append(Work("memory", flops=m * n, bytes_read=m * n * b, bytes_written=n * b,
                          efficiency_key="reduce/bias"))
    return OpCost(
        forward=(fwd,), backward_data=(bwd_data,), backward_weight=tuple(bwd_w),
        params=k * n + (n if bias else 0), saved_bytes=m * k * b, output_bytes=m * n * b,
    )
