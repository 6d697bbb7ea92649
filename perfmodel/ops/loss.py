"""Cost rules of losses: softmax_cross_entropy, mse and bce (with logits), mean-reduced as PyTorch does.

Forward computes the loss (memory family); backward_data produces the gradient of the logits/input.
Labels of softmax_cross_entropy are implicit int64, one per position of the logits' leading dims;
targets of mse and bce are implicit tensors of the input's shape in the compute dtype.
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import INDEX_BYTES, OpCost, Work, cost_rule, numel
from .elementwise import ACT_FWD_FLOPS, SOFTMAX_FWD_FLOPS, TRANSCENDENTAL_FLOPS, pointwise

LOG_SOFTMAX_BWD_FLOPS = TRANSCENDENTAL_FLOPS + 3  # dx = dy - exp(y) * sum(dy): exp, sum, multiply, subtract
MSE_FLOPS = 3  # per element, forward and backward: subtract, square (or scale by 2/n), accumulate
MSE_FWD_KERNELS = 2  # (x - t)^2 into a temporary, then the mean
# bce with logits (PyTorch 2.x composite): log_sigmoid(x), 1 - t, (1 - t) * x, minus log_sigmoid, mean.
BCE_FWD_KERNELS = 5
BCE_FWD_FLOPS = 2 * TRANSCENDENTAL_FLOPS + 6  # log(1 + exp(-|x|)) and min (2 transcendental + 2), 4 simple ops
BCE_FWD_READS, BCE_FWD_WRITES = 7, 4  # elements moved per input element over those five kernels
# backward: sigmoid(x), minus t, times dy, divide by n.
BCE_BWD_KERNELS = 4
BCE_BWD_FLOPS = ACT_FWD_FLOPS["sigmoid"] + 3
BCE_BWD_READS, BCE_BWD_WRITES = 5, 4


@cost_rule("softmax_cross_entropy", inference="skip")
def softmax_cross_entropy(layer: Layer, batch: int, b: int) -> OpCost:
    """log_softmax (1 kernel) + nll_loss gather-and-mean (1 kernel). Saves the log-probabilities and the
    labels. Backward: nll_loss_backward zero-fills and scatters -1/R (2 kernels), then log_softmax backward."""
    x = layer.input_shapes[0]
    rows = batch * numel(x[:-1])
    n = rows * x[-1]
    key = "loss/softmax_cross_entropy"
    fwd = (pointwise(n, SOFTMAX_FWD_FLOPS, 1, 1, b, key=key),
           Work("memory", flops=rows, bytes_read=rows * (INDEX_BYTES + b), bytes_written=b, efficiency_key=key))
    bwd = (Work("memory", flops=rows, bytes_read=rows * INDEX_BYTES + b, bytes_written=n * b + rows * b, kernels=2,
                efficiency_key=key),
           pointwise(n, LOG_SOFTMAX_BWD_FLOPS, 2, 1, b, key=key))
    return OpCost(forward=fwd, backward_data=bwd, saved_bytes=n * b + rows * INDEX_BYTES,
                  output_bytes=batch * numel(layer.output_shape) * b)


@cost_rule("mse", inference="skip")
def mse(layer: Layer, batch: int, b: int) -> OpCost:
    """mean((x - t)^2): elementwise kernel into a temporary, then a mean; saves x and t; backward is one
    kernel dx = 2 (x - t) dy / n."""
    n = batch * numel(layer.input_shapes[0])
    fwd = Work("memory", flops=MSE_FLOPS * n, bytes_read=3 * n * b, bytes_written=n * b, kernels=MSE_FWD_KERNELS,
               efficiency_key="loss/mse")
    bwd = pointwise(n, MSE_FLOPS, 2, 1, b, key="loss/mse")
    return OpCost(forward=(fwd,), backward_data=(bwd,), saved_bytes=2 * n * b,
                  output_bytes=batch * numel(layer.output_shape) * b)


@cost_rule("bce", inference="skip")
def bce(layer: Layer, batch: int, b: int) -> OpCost:
    """Binary cross-entropy with logits as PyTorch's composite forward (BCE_FWD_KERNELS kernels); saves x
    and t; backward dx = (sigmoid(x) - t) dy / n in BCE_BWD_KERNELS kernels."""
    n = batch * numel(layer.input_shapes[0])
    fwd = pointwise(n, BCE_FWD_FLOPS, BCE_FWD_READS, BCE_FWD_WRITES, b, kernels=BCE_FWD_KERNELS, key="loss/bce")
    bwd = pointwise(n, BCE_BWD_FLOPS, BCE_BWD_READS, BCE_BWD_WRITES, b, kernels=BCE_BWD_KERNELS, key="loss/bce")
    return OpCost(forward=(fwd,), backward_data=(bwd,), saved_bytes=2 * n * b,
                  output_bytes=batch * numel(layer.output_shape) * b)
