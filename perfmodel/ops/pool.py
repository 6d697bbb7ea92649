"""Cost rules of pooling: maxpool2d, avgpool2d and global_avgpool (memory family, one kernel per pass).

A window compare or add counts as one FLOP per window element of every output (padding included).
"""

from __future__ import annotations

from ..graph import spec as S
from ..graph.layer_graph import Layer
from .base import INDEX_BYTES, OpCost, Work, cost_rule, numel


def _sizes(layer: Layer, batch: int) -> tuple[int, int, int]:
    """(input elements, output elements, window size kh*kw) for the whole batch."""
    kh, kw = S.pair(layer.spec.kernel)
    return batch * numel(layer.input_shapes[0]), batch * numel(layer.output_shape), kh * kw


@cost_rule("maxpool2d")
def maxpool(layer: Layer, batch: int, b: int) -> OpCost:
    """max_pool2d_with_indices: writes y and int64 argmax indices; autograd saves x and the indices;
    backward scatters dy to the argmax positions (one gather kernel over dx)."""
    n_in, n_out, win = _sizes(layer, batch)
    key = "pool/maxpool2d"
    fwd = Work("memory", flops=n_out * win, bytes_read=n_in * b, bytes_written=n_out * (b + INDEX_BYTES),
               efficiency_key=key)
    bwd = Work("memory", flops=n_out, bytes_read=n_out * (b + INDEX_BYTES), bytes_written=n_in * b, efficiency_key=key)
    return OpCost(forward=(fwd,), backward_data=(bwd,), saved_bytes=n_in * b + n_out * INDEX_BYTES,
                  output_bytes=n_out * b)


@cost_rule("avgpool2d")
def avgpool(layer: Layer, batch: int, b: int) -> OpCost:
    """Window sum and divide (kh*kw FLOPs per output); backward spreads dy/(kh*kw) over each window.
    Autograd keeps x (avg_pool2d_backward takes `self`), although only its shape is used."""
    n_in, n_out, win = _sizes(layer, batch)
    key = "pool/avgpool2d"
    fwd = Work("memory", flops=n_out * win, bytes_read=n_in * b, bytes_written=n_out * b, efficiency_key=key)
    bwd = Work("memory", flops=n_out * win, bytes_read=n_out * b, bytes_written=n_in * b, efficiency_key=key)
    return OpCost(forward=(fwd,), backward_data=(bwd,), saved_bytes=n_in * b, output_bytes=n_out * b)


@cost_rule("global_avgpool")
def global_avgpool(layer: Layer, batch: int, b: int) -> OpCost:
    """Mean over all spatial positions (PyTorch turns adaptive_avg_pool to 1x1 into `mean`, which saves
    nothing); backward broadcasts dy/N over the input."""
    n_in, n_out = batch * numel(layer.input_shapes[0]), batch * numel(layer.output_shape)
    key = "pool/global_avgpool"
    fwd = Work("memory", flops=n_in, bytes_read=n_in * b, bytes_written=n_out * b, efficiency_key=key)
    bwd = Work("memory", flops=n_in, bytes_read=n_out * b, bytes_written=n_in * b, efficiency_key=key)
    return OpCost(forward=(fwd,), backward_data=(bwd,), output_bytes=n_out * b)
