"""Cost rules of data-layout ops: input, flatten, reshape, select and concat.

Views (flatten, reshape, select) launch nothing in forward; their output aliases the input, which
`extra["view"]` records (output_bytes still gives the output's size). Integer id tensors (token ids,
labels) take INDEX_BYTES per element instead of the compute dtype.
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import INDEX_BYTES, OpCost, Work, cost_rule, numel


def _elem_bytes(layer: Layer, b: int) -> int:
    """Bytes per element of this layer's output: int64 for integer ids, else the compute dtype."""
    return INDEX_BYTES if layer.int_input else b


@cost_rule("input")
def input_(layer: Layer, batch: int, b: int) -> OpCost:
    """The mini-batch itself: no work; output_bytes is its size (int64 ids take INDEX_BYTES)."""
    eb = INDEX_BYTES if layer.spec.dtype == "int64" else b
    return OpCost(forward=(), output_bytes=batch * numel(layer.output_shape) * eb)


@cost_rule("flatten", "reshape")
def view(layer: Layer, batch: int, b: int) -> OpCost:
    """A view of a contiguous tensor: no kernels either way, nothing saved."""
    return OpCost(forward=(), output_bytes=batch * numel(layer.output_shape) * _elem_bytes(layer, b),
                  extra={"view": True})


@cost_rule("select")
def select(layer: Layer, batch: int, b: int) -> OpCost:
    """Forward is a view; backward (select_backward) zero-fills dx and copies dy into the slice: 2 kernels."""
    n_in, n_out = batch * numel(layer.input_shapes[0]), batch * numel(layer.output_shape)
    bwd = Work("memory", flops=0, bytes_read=n_out * b, bytes_written=(n_in + n_out) * b, kernels=2,
               efficiency_key="copy/slice")
    return OpCost(forward=(), backward_data=(bwd,), output_bytes=n_out * _elem_bytes(layer, b),
                  extra={"view": True})


@cost_rule("concat")
def concat(layer: Layer, batch: int, b: int) -> OpCost:
    """torch.cat copies every input into the output (one batched-copy kernel). Backward hands each input a
    slice of dy; slices along a per-sample axis are strided, so each consumer copies its slice (1 kernel each)."""
    n, k = batch * numel(layer.output_shape), len(layer.input_shapes)
    eb = _elem_bytes(layer, b)
    fwd = Work("memory", flops=0, bytes_read=n * eb, bytes_written=n * eb, efficiency_key="copy/concat")
    bwd = Work("memory", flops=0, bytes_read=n * b, bytes_written=n * b, kernels=k, efficiency_key="copy/slice")
    return OpCost(forward=(fwd,), backward_data=(bwd,), output_bytes=n * eb)
