"""Cost rule of the `custom` op: an op whose forward cost is given (measured), not derived from a formula.

The PyTorch importer (perfmodel.torch.from_module) writes one for every op it cannot map to a kind;
its forward FLOPs per sample come from torch.utils.flop_counter.FlopCounterMode run on that op alone
(which counts matrix products, convolutions and attention, and 0 for elementwise ops and for
recurrent kernels such as aten.lstm).

Assumptions (named, documented, overridable by editing the layer):
- BACKWARD_DATA_RATIO: the gradient w.r.t. the inputs costs this many times the forward FLOPs and
  bytes (1.0, as for a linear map: dX = dY W^T costs what Y = X W costs).
- BACKWARD_WEIGHT_RATIO: the gradient w.r.t. the parameters (only when the op owns parameters) costs
  this many times the forward FLOPs (1.0, dW = X^T dY), and writes one gradient per parameter.
- `bytes_per_sample` is written at 4-byte elements and scaled to the training dtype; when absent the
  op reads its inputs and writes its output once.
- The inputs are kept for backward (saved_bytes), as most ops need them.
Efficiency key: custom/<family> (falls back to the family's curve).
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import INDEX_BYTES, OpCost, Work, cost_rule, numel

BACKWARD_DATA_RATIO = 1.0
BACKWARD_WEIGHT_RATIO = 1.0
REFERENCE_ELEMENT_BYTES = 4  # `bytes_per_sample` is stated at fp32


@cost_rule("custom")
def custom(layer: Layer, batch: int, b: int) -> OpCost:
    """Given forward FLOPs and bytes; backward estimated by the ratios above."""
    spec = layer.spec
    family = spec.family or ("matrix" if spec.forward_flops_per_sample > 0 else "memory")
    in_bytes = 0.0
    for i, shape in enumerate(layer.input_shapes):
        elem = INDEX_BYTES if (i == 0 and layer.int_input) else b
        in_bytes += numel(shape) * batch * elem
    out_bytes = float(numel(layer.output_shape) * batch * b)
    if spec.bytes_per_sample is None:
        read, written = in_bytes, out_bytes
    else:
        total = spec.bytes_per_sample * batch * b / REFERENCE_ELEMENT_BYTES
        written = min(out_bytes, total)
        read = total - written
    flops = spec.forward_flops_per_sample * batch
    key = f"custom/{family}"
    fwd = Work(family, flops=flops, bytes_read=read, bytes_written=written, efficiency_key=key)
    bwd_data = Work(family, flops=flops * BACKWARD_DATA_RATIO, bytes_read=(written + read) * BACKWARD_DATA_RATIO,
                    bytes_written=in_bytes * BACKWARD_DATA_RATIO, efficiency_key=key)
    bwd_w: tuple[Work, ...] = ()
    if spec.params:
        bwd_w = (Work(family, flops=flops * BACKWARD_WEIGHT_RATIO, bytes_read=(read + written) * BACKWARD_WEIGHT_RATIO,
                      bytes_written=spec.params * b, efficiency_key=key),)
    return OpCost(
        forward=(fwd,), backward_data=(bwd_data,), backward_weight=bwd_w, params=spec.params,
        saved_bytes=in_bytes, output_bytes=out_bytes,
        extra={"note": spec.note} if spec.note else {},
    )
