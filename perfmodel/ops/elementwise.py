"""Cost rules of elementwise ops: activations, softmax, dropout, add, mul and upsample.

All are "memory" family work: one pass that reads its operands and writes its result. FLOP counts per
element are nominal (a transcendental such as exp or erf counts as a few FLOPs, named below); they
matter little because these ops are bandwidth bound. Kernel counts follow PyTorch on CUDA, where each
op below is one fused elementwise kernel unless stated otherwise. Efficiency keys: elementwise/<op>
(activations, dropout, add, mul, upsample, softmax).
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import OpCost, Work, cost_rule, numel

# Nominal FLOPs per element, forward and backward-data. A transcendental (exp, tanh, erf) counts
# TRANSCENDENTAL_FLOPS; sigmoid = exp + add + divide; tanh ~ one transcendental; gelu (erf form)
# = x * 0.5 * (1 + erf(x / sqrt 2)).
TRANSCENDENTAL_FLOPS = 2
ACT_FWD_FLOPS: dict[str, int] = {
    "relu": 1,  # max(x, 0)
    "leaky_relu": 2,  # compare, multiply
    "sigmoid": TRANSCENDENTAL_FLOPS + 2,  # exp, add 1, divide
    "tanh": TRANSCENDENTAL_FLOPS,
    "gelu": TRANSCENDENTAL_FLOPS + 4,  # erf, scale, add, two multiplies
}
ACT_BWD_FLOPS: dict[str, int] = {
    "relu": 1,  # dy where y > 0
    "leaky_relu": 2,  # dy * (x > 0 ? 1 : slope)
    "sigmoid": 3,  # dy * y * (1 - y)
    "tanh": 3,  # dy * (1 - y^2)
    "gelu": 2 * TRANSCENDENTAL_FLOPS + 6,  # erf and exp (the Gaussian pdf), then a few multiply-adds
}
# What autograd keeps for the backward of each activation: its output ("out") or its input ("in").
ACT_SAVES: dict[str, str] = {"relu": "out", "leaky_relu": "in", "sigmoid": "out", "tanh": "out", "gelu": "in"}

SOFTMAX_FWD_FLOPS = 3 + TRANSCENDENTAL_FLOPS  # max, subtract, exp, sum, divide
SOFTMAX_BWD_FLOPS = 4  # dx = y * (dy - sum(dy * y)): multiply, sum, subtract, multiply
DROPOUT_FLOPS = 2  # compare a random draw with p, scale by 1/(1-p) (the RNG itself is not counted)
MASK_BYTES = 1  # PyTorch's fused dropout keeps a bool mask, one byte per element
LINEAR_INTERP_FLOPS = 2  # per neighbour of an interpolated point: multiply by its weight, add


def pointwise(n: float, flops_per_elem: float, n_read: float, n_written: float, b: int, kernels: int = 1,
              key: str = "elementwise") -> Work:
    """A memory-family pass over n elements: reads n_read*n and writes n_written*n elements of b bytes."""
    return Work("memory", flops=flops_per_elem * n, bytes_read=n_read * n * b, bytes_written=n_written * n * b,
                kernels=kernels, efficiency_key=key)


def _n_out(layer: Layer, batch: int) -> int:
    return batch * numel(layer.output_shape)


@cost_rule("relu", "leaky_relu", "sigmoid", "tanh", "gelu", tp="elementwise")
def activation(layer: Layer, batch: int, b: int) -> OpCost:
    """y = f(x): one read, one write per element; backward reads dy and the saved x or y (ACT_SAVES)."""
    n, op = _n_out(layer, batch), layer.op
    return OpCost(
        forward=(pointwise(n, ACT_FWD_FLOPS[op], 1, 1, b, key=f"elementwise/{op}"),),
        backward_data=(pointwise(n, ACT_BWD_FLOPS[op], 2, 1, b, key=f"elementwise/{op}"),),
        saved_bytes=n * b, output_bytes=n * b, extra={"saves": ACT_SAVES[op]},
    )


@cost_rule("softmax")
def softmax(layer: Layer, batch: int, b: int) -> OpCost:
    """Fused softmax along one axis (one kernel each way); autograd keeps the output y."""
    n = _n_out(layer, batch)
    return OpCost(
        forward=(pointwise(n, SOFTMAX_FWD_FLOPS, 1, 1, b, key="elementwise/softmax"),),
        backward_data=(pointwise(n, SOFTMAX_BWD_FLOPS, 2, 1, b, key="elementwise/softmax"),),
        saved_bytes=n * b, output_bytes=n * b,
    )


@cost_rule("dropout", tp="elementwise", inference="alias")
def dropout(layer: Layer, batch: int, b: int) -> OpCost:
    """PyTorch's fused dropout: one kernel writes y and a 1-byte mask; backward is dy * mask / (1-p).

    With p == 0 PyTorch returns the input unchanged, so nothing runs and nothing is saved.
    """
    n = _n_out(layer, batch)
    if layer.spec.p == 0:
        return OpCost(forward=(), output_bytes=n * b, extra={"view": True})
    key = "elementwise/dropout"
    fwd = Work("memory", flops=DROPOUT_FLOPS * n, bytes_read=n * b, bytes_written=n * (b + MASK_BYTES),
               efficiency_key=key)
    bwd = Work("memory", flops=DROPOUT_FLOPS * n, bytes_read=n * (b + MASK_BYTES), bytes_written=n * b,
               efficiency_key=key)
    return OpCost(forward=(fwd,), backward_data=(bwd,), saved_bytes=n * MASK_BYTES, output_bytes=n * b)


@cost_rule("add")
def add(layer: Layer, batch: int, b: int) -> OpCost:
    """Sum of k inputs as k-1 binary add kernels; backward passes dy to every input unchanged (no work).

    The summation of gradients where a tensor fans out to several consumers is not charged here.
    """
    n, k = _n_out(layer, batch), len(layer.input_shapes)
    fwd = pointwise(n, k - 1, 2 * (k - 1), k - 1, b, kernels=k - 1, key="elementwise/add")
    return OpCost(forward=(fwd,), output_bytes=n * b)


@cost_rule("mul")
def mul(layer: Layer, batch: int, b: int) -> OpCost:
    """y = a * b (one kernel); autograd saves both inputs; backward is two kernels dy*b and dy*a."""
    n = _n_out(layer, batch)
    return OpCost(
        forward=(pointwise(n, 1, 2, 1, b, key="elementwise/mul"),),
        backward_data=(pointwise(n, 2, 4, 2, b, kernels=2, key="elementwise/mul"),),
        saved_bytes=2 * n * b, output_bytes=n * b,
    )


@cost_rule("upsample")
def upsample(layer: Layer, batch: int, b: int) -> OpCost:
    """Nearest: a gather (no FLOPs), backward sums scale^d gradients per input; (bi)linear interpolates
    2^d neighbours per output, backward zero-fills dx then scatters (2 kernels). Nothing is saved."""
    n_in, n_out = batch * numel(layer.input_shapes[0]), _n_out(layer, batch)
    spatial, key = len(layer.output_shape) - 1, "elementwise/upsample"
    if layer.spec.mode == "nearest":
        fwd = Work("memory", flops=0, bytes_read=n_in * b, bytes_written=n_out * b, efficiency_key=key)
        bwd = Work("memory", flops=n_out, bytes_read=n_out * b, bytes_written=n_in * b, efficiency_key=key)
    else:
        flops = LINEAR_INTERP_FLOPS * 2**spatial * n_out
        fwd = Work("memory", flops=flops, bytes_read=n_in * b, bytes_written=n_out * b, efficiency_key=key)
        bwd = Work("memory", flops=flops, bytes_read=n_out * b, bytes_written=2 * n_in * b, kernels=2,
                   efficiency_key=key)
    return OpCost(forward=(fwd,), backward_data=(bwd,), output_bytes=n_out * b)
