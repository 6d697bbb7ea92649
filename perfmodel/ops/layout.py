"""Cost rules of the importer's generic kinds: `elementwise` (a broadcast pointwise op), `pad` and `slice`.

- elementwise: one kernel reads every input once and writes the output; `flops_per_element` per output
  element. Backward reads dy and the saved inputs and writes one gradient per input (one kernel each);
  the inputs are saved (most pointwise ops need them). A learned tensor broadcast in (`params`, e.g. a
  scale) gets its gradient as a reduction of dy * x over the output (one kernel, 2 FLOPs per element).
- pad: one copy into a larger zero-filled tensor; backward is a slice of dy copied out (one kernel); a
  learned fill (`params`) gets its gradient by summing dy over the padded elements.
- slice: a view in forward; backward zero-fills dx and copies dy into the slice (two kernels), like select.
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import OpCost, Work, cost_rule, numel


@cost_rule("elementwise", tp="elementwise")
def elementwise(layer: Layer, batch: int, b: int) -> OpCost:
    """y = f(x1, ..., xk) with broadcasting: reads all inputs, writes y; backward writes k gradients."""
    n_out = batch * numel(layer.output_shape)
    n_in = sum(batch * numel(s) for s in layer.input_shapes)
    k = len(layer.input_shapes)
    fpe = layer.spec.flops_per_element
    fwd = Work("memory", flops=fpe * n_out, bytes_read=n_in * b, bytes_written=n_out * b, efficiency_key="elementwise")
    bwd = Work("memory", flops=fpe * n_out * k, bytes_read=(n_out * k + n_in) * b, bytes_written=n_in * b, kernels=k,
               efficiency_key="elementwise")
    p = layer.spec.params
    bwd_w = (Work("memory", flops=2 * n_out, bytes_read=2 * n_out * b, bytes_written=p * b,
                  efficiency_key="reduce/param"),) if p else ()
    return OpCost(forward=(fwd,), backward_data=(bwd,), backward_weight=bwd_w, params=p, saved_bytes=n_in * b,
                  output_bytes=n_out * b)


@cost_rule("pad")
def pad(layer: Layer, batch: int, b: int) -> OpCost:
    """Zero-fill the output and copy the input in (one kernel); backward copies the slice of dy out."""
    n_in, n_out = batch * numel(layer.input_shapes[0]), batch * numel(layer.output_shape)
    fwd = Work("memory", bytes_read=n_in * b, bytes_written=n_out * b, efficiency_key="copy/pad")
    bwd = Work("memory", bytes_read=n_in * b, bytes_written=n_in * b, efficiency_key="copy/slice")
    p = layer.spec.params  # a learned fill: its gradient sums dy over the padded part
    bwd_w = (Work("memory", flops=n_out - n_in, bytes_read=(n_out - n_in) * b, bytes_written=p * b,
                  efficiency_key="reduce/param"),) if p else ()
    return OpCost(forward=(fwd,), backward_data=(bwd,), backward_weight=bwd_w, params=p, output_bytes=n_out * b)


@cost_rule("slice")
def slice_(layer: Layer, batch: int, b: int) -> OpCost:
    """A view forward; backward zero-fills dx and copies dy into it: 2 kernels."""
    n_in, n_out = batch * numel(layer.input_shapes[0]), batch * numel(layer.output_shape)
    bwd = Work("memory", bytes_read=n_out * b, bytes_written=(n_in + n_out) * b, kernels=2, efficiency_key="copy/slice")
    return OpCost(forward=(), backward_data=(bwd,), output_bytes=n_out * b, extra={"view": True})


def free_custom_layers(graph) -> list[str]:
    """Warnings for `custom` layers with no FLOPs and no bytes (they cost nothing: likely a mistake), for
    `perfmodel import`, `show` and `predict`."""
    from .custom import custom as custom_rule

    out = []
    for layer in graph.layers:
        if layer.op != "custom":
            continue
        c = custom_rule(layer, 1, 4)
        if c.flops("forward") == 0 and c.bytes("forward") == 0:
            out.append(f"custom layer '{layer.name}' has no FLOPs and no bytes: it is costed as free"
                       + (f" ({layer.spec.note})" if layer.spec.note else ""))
    return out
