"""torch.nn.Module -> LayerGraph: import a PyTorch model by tracing it on example inputs (handler modules).

`from_module(module, example_inputs)` traces the module with torch.fx (symbolic tracing; standard
torch.nn modules that have an op kind are leaves, other torch.nn modules such as
TransformerEncoderLayer are traced through, with the fused inference fast path of attention turned
off), falls back to fx with every torch.nn module as a leaf, then to torch.export (whose ATen graph
maps the same way for linear, convolution, batch norm, pooling, activations, softmax, matmul, SDPA,
embedding and views; attention modules decompose there into seq-first ops, most of which become
custom layers), and runs the traced graph on the example inputs (a ShapeProp pass) to learn every
tensor's shape. Each traced node becomes zero or more layers:

- mapped modules: Linear, Conv1d/2d, ConvTranspose2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool1d/2d to 1
  (global_avgpool), BatchNorm1d/2d, LayerNorm, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Softmax,
  LogSoftmax (as softmax), Dropout, Embedding, RNN/LSTM/GRU (batch_first), MultiheadAttention
  (self-attention, batch_first), Flatten, Upsample (integer scale), Identity, CrossEntropyLoss,
  MSELoss, BCEWithLogitsLoss, and the bridge modules of perfmodel.torch.to_module;
- mapped functions and tensor methods: +/add, */mul, cat, flatten, reshape/view/unsqueeze/squeeze
  (reshape), permute/transpose (reshape: a view, see below), relu/gelu/sigmoid/tanh/leaky_relu,
  softmax/log_softmax, dropout, matmul/@/bmm (a transposed second operand becomes transpose_b;
  x @ W with a parameter W becomes a dense without bias), F.linear (dense; tied weights become
  share_params_with), F.layer_norm, F.embedding, max/avg pooling, mean over all spatial dims and
  adaptive average pooling to 1 (global_avgpool), F.interpolate with an integer scale (upsample),
  x[:, i] / select (select), F.scaled_dot_product_attention (matmul q k^T, softmax, matmul with v:
  the matmul-like cost; masks and causality do not change the count), the losses F.cross_entropy,
  F.nll_loss (after log_softmax), F.mse_loss, F.binary_cross_entropy_with_logits, a learned position
  table added to the activations (positional_embedding), and h_n[-1] of a unidirectional recurrent
  layer (its last time step);
- values that do not depend on the inputs (parameters, buffers, masks, x.shape, arange) are
  constants and make no layer; their parameters are charged to the layer that consumes them;
- everything else becomes a `custom` layer with the node's true output shape, the parameters it
  uses that no other layer owns, and its forward FLOPs measured with FlopCounterMode on that node
  alone (scaled-dot-product attention forced to the math kernel so it is counted). Every custom layer
  is listed in the report (`ImportReport.unmapped`) with the fx node, the call target and where it
  occurs (module path and source line). FlopCounterMode counts matrix products, convolutions and
  attention; elementwise ops and recurrent kernels (aten.lstm, aten.gru, aten.rnn_tanh) count 0.

Approximations, listed in `ImportReport.approximations` when they happen: permute/transpose are
reshapes (a view; no data moves until something makes it contiguous); log_softmax is a softmax;
masks of attention are ignored; an activation whose batch dim was folded into another dim
(x.view(B*T, D)) keeps its per-sample layer shape for row-wise ops and losses.

The batch dim is dim 0 of every input and of every activation; the example batch size is read from
the first tensor input (choose one that no other leading dim equals, e.g. 3).
"""

from __future__ import annotations

from .api import from_module, import_module
from .user import parse_input_shape
from .report import ImportReport, UnmappedOp


__all__ = ["ImportReport", "UnmappedOp", "from_module", "import_module", "parse_input_shape"]
