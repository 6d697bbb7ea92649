"""torch.nn.Module -> LayerGraph: import a PyTorch model by tracing it on example inputs.

`from_module(module, args, kwargs=..., batch=...)` runs the model once, then tries the tracers in turn and
keeps the first whose graph converts (trace.py, eager.py): torch.fx (modules with a handler are leaves;
nn.Transformer{Encoder,Decoder}[Layer] run plain forwards, transformer.py), torch.export, a dispatch-level
trace (make_fx), an eager trace (a TorchFunctionMode recording one run: branches on tensor values), and fx
with every torch.nn module a leaf. Under export and the dispatch trace, attention, recurrent and
mixture-of-experts modules stay whole through the `perfmodel::leaf` custom op (leaf.py). Outputs of any
pytree are flattened (caches included); arguments that are None stay None; LayerDrop is off while tracing.

The converter (converter.py) runs the traced graph on the example inputs (ShapeProp) and hands each node
to a handler (registry.py): modules.py (torch.nn modules), functions.py (functions, methods, aten ops),
elementwise.py (pointwise ops with constants, pad, slices, addmm), moe.py (mixture-of-experts blocks by
structure). A handler that cannot express a node raises Unmappable; the node becomes a `custom` layer
with its true output shape, the parameters it uses that no other layer owns and its forward FLOPs
measured with FlopCounterMode, listed in `ImportReport.unmapped` with module path and source line.
Values that do not depend on the inputs (parameters, masks, x.shape) are constants; their parameters are
charged to the layer that consumes them. Layers are named by module path (`encoder.layer.3.attention.
self.query`; `path.op` for the other ops of a module).

The batch dim is dim 0 of every tensor, or dim 1 in a sequence-first model (token ids [T, B], or after
x.transpose(0, 1)): per-sample shapes drop it. Choose an example batch no other dim equals (3).
Approximations are listed in `ImportReport.approximations` when they happen (permutes are views,
log_softmax is a softmax, masks do not change attention's cost, LayerDrop not applied, ...).
"""

from __future__ import annotations

from .api import from_module, import_module
from .user import parse_input_shape
from .report import ImportReport, UnmappedOp


__all__ = ["ImportReport", "UnmappedOp", "from_module", "import_module", "parse_input_shape"]
