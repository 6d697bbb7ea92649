"""Cost rules of lookup tables: embedding (int ids -> vectors) and positional_embedding (learned table add)."""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import INDEX_BYTES, OpCost, Work, cost_rule, numel

# embedding_dense_backward on CUDA: sort the ids, find segment offsets, partial segment sums, sum the
# partials, write rows into the gradient (the zero fill of the full table is counted separately).
EMBEDDING_BWD_SORT_REDUCE_KERNELS = 5


@cost_rule("embedding", tp="vocab")
def embedding(layer: Layer, batch: int, b: int) -> OpCost:
    """Forward gathers one row per id (1 kernel). Ids get no gradient; backward-weight zero-fills the
    vocab x dim gradient then sorts ids and sums dy rows per id. Autograd keeps the ids (int64)."""
    s = layer.spec
    ids = batch * numel(layer.input_shapes[0])
    n_out = ids * s.dim
    fwd = Work("memory", flops=0, bytes_read=ids * INDEX_BYTES + n_out * b, bytes_written=n_out * b,
               efficiency_key="copy/gather")
    zero = Work("memory", flops=0, bytes_read=0, bytes_written=s.vocab * s.dim * b, efficiency_key="copy/fill")
    scatter = Work("memory", flops=n_out, bytes_read=ids * INDEX_BYTES + n_out * b, bytes_written=n_out * b,
                   kernels=EMBEDDING_BWD_SORT_REDUCE_KERNELS, efficiency_key="copy/scatter-add")
    return OpCost(
        forward=(fwd,), backward_weight=(zero, scatter), params=s.vocab * s.dim,
        saved_bytes=ids * INDEX_BYTES, output_bytes=n_out * b, extra={"param_tensors": 1},
    )


@cost_rule("positional_embedding")
def positional_embedding(layer: Layer, batch: int, b: int) -> OpCost:
    """y = x + P[:T] (one broadcast-add kernel; slicing P is a view). dx = dy (aliased, no work);
    dP: sum dy over the batch (1 kernel), then slice_backward zero-fills max_len x D and copies T x D in."""
    t, d = layer.input_shapes[0]
    max_len, n = layer.spec.max_len, batch * t * d
    fwd = Work("memory", flops=n, bytes_read=(n + t * d) * b, bytes_written=n * b, efficiency_key="elementwise/add")
    reduce = Work("memory", flops=n, bytes_read=n * b, bytes_written=t * d * b, efficiency_key="reduce/sum")
    slice_bwd = Work("memory", flops=0, bytes_read=t * d * b, bytes_written=(max_len + t) * d * b, kernels=2,
                     efficiency_key="copy/slice")
    return OpCost(
        forward=(fwd,), backward_weight=(reduce, slice_bwd), params=max_len * d,
        output_bytes=n * b, extra={"param_tensors": 1},
    )
