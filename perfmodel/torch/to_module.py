"""LayerGraph -> torch.nn.Module: a runnable PyTorch model for any layer graph.

`to_module(graph)` returns a `GraphModule` with one submodule per parametric layer (attribute name:
the layer name with characters that are not valid in an identifier, such as '.', replaced by '_';
`GraphModule.layer_names` maps attribute -> layer name). Its forward runs the layers in graph order on
batch-first tensors (batch dim 0, then the per-sample shape of the graph):

    loss = module(inputs, targets)     # graph with loss layers: the sum of all losses (a scalar)
    outs = module(inputs)              # graph without losses: {output layer name: tensor}

`inputs` maps each input layer's name to a tensor; `targets` maps each loss layer's name to its
target (int64 class ids per position for softmax_cross_entropy, a tensor of the input's shape for
mse and bce). `make_batch(graph, batch)` builds both with random values.

Parameter sharing (`share_params_with`): the sharing layer's module holds the very same Parameter
objects as the layer it names, wherever names and shapes agree (same kind: the same weights; a dense
sharing an embedding: the embedding table is the linear weight, y = x E^T, tied output embedding). A
dense sharing a dense of swapped sizes uses W^T. A parameter of the sharing layer that has no
counterpart (e.g. the 784-value visible bias of an RBM's transposed dense) becomes a constant zero
buffer: computed with, never trained, not counted - as the graph's cost rules count nothing for a
sharing layer. So `sum(p.numel() for p in module.parameters())` equals the graph's parameter count.

Stand-ins (documented approximations):
- `custom` layers (ops the importer could not map) run a cheap stand-in that has the right output
  shape and the right number of parameters, not the original computation.
- bilinear upsampling of a [C, L] signal uses mode 'linear'.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph.layer_graph import Layer, LayerGraph
from ..graph.shapes import _conv_pads
from ..graph.spec import LOSS_OPS, pair

__all__ = ["GraphModule", "PositionalEmbedding", "TransposedLinear", "CustomStandIn", "to_module", "make_batch",
           "module_attr_name"]


# ----------------------------------------------------------------------------------------------------------
# bridge modules (treated as leaves by perfmodel.torch.from_module)


class PositionalEmbedding(nn.Module):
    """Learned position table P [max_len, dim]; y[:, t] = x[:, t] + P[t] for the first T = `length` rows."""

    def __init__(self, max_len: int, dim: int, length: int):
        super().__init__()
        self.max_len, self.dim, self.length = max_len, dim, length
        self.weight = nn.Parameter(torch.empty(max_len, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.weight[: self.length]

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}, length={self.length}"


class TransposedLinear(nn.Module):
    """y = x W^T + b with W the transpose of another Linear's weight (tied, transposed weights).

    The other Linear is referenced, not registered, so its parameters are not listed twice. The bias
    is a constant zero buffer (a sharing layer owns no parameters).
    """

    def __init__(self, other: nn.Linear, bias: bool):
        super().__init__()
        self._other = (other,)  # a tuple hides it from nn.Module's registration
        self.in_features, self.out_features = other.out_features, other.in_features
        self.register_buffer("bias", torch.zeros(self.out_features) if bias else None, persistent=False)

    @property
    def weight(self) -> Tensor:
        return self._other[0].weight.t()

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self._other[0].weight.t(), self.bias)


class CustomStandIn(nn.Module):
    """Stand-in for a `custom` layer: right output shape and parameter count, not the original computation.

    Output: the first input's values (flattened per sample, cut or zero-padded to the output size) plus
    the mean of every other input, plus 0 x the sum of its parameters (so they get gradients).
    """

    def __init__(self, output_shape: tuple[int, ...], params: int):
        super().__init__()
        self.output_shape = tuple(output_shape)
        self.weight = nn.Parameter(torch.zeros(params)) if params else None

    def forward(self, *xs: Tensor) -> Tensor:
        n = math.prod(self.output_shape)
        first = xs[0].flatten(1).to(torch.get_default_dtype() if not xs[0].is_floating_point() else xs[0].dtype)
        y = first[:, :n] if first.shape[1] >= n else F.pad(first, (0, n - first.shape[1]))
        for x in xs[1:]:
            y = y + x.flatten(1).float().mean(1, keepdim=True).to(y.dtype)
        if self.weight is not None:
            y = y + 0 * self.weight.sum()
        return y.reshape(-1, *self.output_shape)


# ----------------------------------------------------------------------------------------------------------
# naming

# names a submodule must not take: attributes of nn.Module, of torch.fx.GraphModule (so the module can be
# traced) and of GraphModule below
_RESERVED = set(dir(nn.Module)) | set(dir(torch.fx.GraphModule)) | {
    "layer_names", "graph_spec", "forward", "plan", "sharing_notes", "loss_names", "output_names", "layer_probe"}


def module_attr_name(layer_name: str) -> str:
    """The attribute name a layer's submodule gets: non-identifier characters become '_'."""
    s = re.sub(r"\W", "_", layer_name)
    if not s or s[0].isdigit():
        s = "l_" + s
    if s in _RESERVED or s.startswith("_"):
        s = "l" + s if s.startswith("_") else "l_" + s
    return s


# ----------------------------------------------------------------------------------------------------------
# per-op builders: (layer, module registry) -> (submodule or None, function(module, *inputs) -> tensor)

Builder = Callable[[Layer], tuple["nn.Module | None", Callable[..., Tensor]]]
_BUILDERS: dict[str, Builder] = {}


def _builds(*kinds: str):
    def deco(fn: Builder) -> Builder:
        for k in kinds:
            _BUILDERS[k] = fn
        return fn

    return deco


def _ax(axis: int) -> int:
    """A per-sample axis as an axis of the batch-first tensor."""
    return axis + 1 if axis >= 0 else axis


def _call(m, *xs):
    return m(*xs)


@_builds("dense")
def _dense(l: Layer):
    return nn.Linear(l.input_shapes[0][-1], l.spec.units, bias=l.spec.bias), _call


def _conv_padding(l: Layer, n: int):
    if l.spec.padding == "same":  # PyTorch's own 'same' (stride 1; even kernels pad one more on the right)
        return "same"
    pads = _conv_pads(l.spec, n)
    return pads if n > 1 else pads[0]


def _single(v):
    return v if isinstance(v, int) else v[0]


@_builds("conv1d")
def _conv1d(l: Layer):
    s = l.spec
    m = nn.Conv1d(l.input_shapes[0][0], s.out_channels, _single(s.kernel), stride=_single(s.stride),
                  padding=_conv_padding(l, 1), dilation=_single(s.dilation), groups=s.groups, bias=s.bias)
    return m, _call


@_builds("conv2d")
def _conv2d(l: Layer):
    s = l.spec
    m = nn.Conv2d(l.input_shapes[0][0], s.out_channels, pair(s.kernel), stride=pair(s.stride),
                  padding=_conv_padding(l, 2), dilation=pair(s.dilation), groups=s.groups, bias=s.bias)
    return m, _call


@_builds("conv_transpose2d")
def _convt2d(l: Layer):
    s = l.spec
    m = nn.ConvTranspose2d(l.input_shapes[0][0], s.out_channels, pair(s.kernel), stride=pair(s.stride),
                           padding=pair(s.padding), output_padding=pair(s.output_padding), groups=s.groups,
                           bias=s.bias, dilation=pair(s.dilation))
    return m, _call


@_builds("maxpool2d", "avgpool2d")
def _pool(l: Layer):
    s = l.spec
    cls = nn.MaxPool2d if s.op == "maxpool2d" else nn.AvgPool2d
    stride = pair(s.stride) if s.stride is not None else pair(s.kernel)
    return cls(pair(s.kernel), stride=stride, padding=pair(s.padding), ceil_mode=s.ceil_mode), _call


@_builds("global_avgpool")
def _gap(l: Layer):
    dims = tuple(range(2, len(l.input_shapes[0]) + 1))
    return None, lambda m, x: x.mean(dim=dims)


@_builds("batchnorm")
def _bn(l: Layer):
    x = l.input_shapes[0]
    cls = nn.BatchNorm2d if len(x) == 3 else nn.BatchNorm1d
    return cls(x[0], eps=l.spec.eps, affine=l.spec.affine), _call


@_builds("layernorm")
def _ln(l: Layer):
    return nn.LayerNorm(l.input_shapes[0][-1], eps=l.spec.eps, elementwise_affine=l.spec.affine), _call


@_builds("relu")
def _relu(l: Layer):
    return None, lambda m, x: F.relu(x)


@_builds("leaky_relu")
def _lrelu(l: Layer):
    slope = l.spec.slope
    return None, lambda m, x: F.leaky_relu(x, slope)


@_builds("sigmoid")
def _sigmoid(l: Layer):
    return None, lambda m, x: torch.sigmoid(x)


@_builds("tanh")
def _tanh(l: Layer):
    return None, lambda m, x: torch.tanh(x)


@_builds("gelu")
def _gelu(l: Layer):
    return None, lambda m, x: F.gelu(x)


@_builds("softmax")
def _softmax(l: Layer):
    dim = _ax(l.spec.axis)
    return None, lambda m, x: F.softmax(x, dim=dim)


@_builds("dropout")
def _dropout(l: Layer):
    return nn.Dropout(l.spec.p), _call


@_builds("add")
def _add(l: Layer):
    def f(m, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y

    return None, f


@_builds("mul")
def _mul(l: Layer):
    return None, lambda m, a, b: a * b


@_builds("concat")
def _concat(l: Layer):
    dim = _ax(l.spec.axis)
    return None, lambda m, *xs: torch.cat(xs, dim=dim)


@_builds("flatten")
def _flatten(l: Layer):
    return None, lambda m, x: x.flatten(1)


@_builds("reshape")
def _reshape(l: Layer):
    shape = tuple(l.output_shape)  # -1 resolved by shape inference
    return None, lambda m, x: x.reshape(-1, *shape)


@_builds("select")
def _select(l: Layer):
    dim, index = _ax(l.spec.axis), l.spec.index
    return None, lambda m, x: x.select(dim, index)


@_builds("embedding")
def _embedding(l: Layer):
    return nn.Embedding(l.spec.vocab, l.spec.dim), _call


@_builds("positional_embedding")
def _posemb(l: Layer):
    t, d = l.input_shapes[0]
    return PositionalEmbedding(l.spec.max_len, d, t), _call


@_builds("rnn", "lstm", "gru")
def _recurrent(l: Layer):
    s = l.spec
    kw = dict(num_layers=s.layers, bias=s.bias, batch_first=True, bidirectional=s.bidirectional)
    f = l.input_shapes[0][-1]
    if s.op == "rnn":
        m = nn.RNN(f, s.hidden, nonlinearity=s.nonlinearity, **kw)
    else:
        m = (nn.LSTM if s.op == "lstm" else nn.GRU)(f, s.hidden, **kw)
    if s.return_sequences:
        return m, lambda m, x: m(x)[0]
    return m, lambda m, x: m(x)[0][:, -1]


@_builds("attention")
def _attention(l: Layer):
    s = l.spec
    t, d = l.input_shapes[0]
    m = nn.MultiheadAttention(d, s.heads, dropout=s.dropout, bias=s.bias, batch_first=True)
    if not s.causal:
        return m, lambda m, x: m(x, x, x, need_weights=False)[0]
    # the causal mask is a constant buffer (per-sample length is static), so fx sees no mask arithmetic
    m.register_buffer("causal_mask", torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1), persistent=False)
    return m, lambda m, x: m(x, x, x, need_weights=False, attn_mask=m.causal_mask, is_causal=True)[0]


@_builds("matmul")
def _matmul(l: Layer):
    if l.spec.transpose_b:
        return None, lambda m, a, b: torch.matmul(a, b.transpose(-2, -1))
    return None, lambda m, a, b: torch.matmul(a, b)


@_builds("upsample")
def _upsample(l: Layer):
    mode = l.spec.mode
    if mode == "bilinear" and len(l.input_shapes[0]) == 2:
        mode = "linear"
    kw = {"align_corners": False} if mode != "nearest" else {}
    return nn.Upsample(scale_factor=l.spec.scale, mode=mode, **kw), _call


@_builds("custom")
def _custom(l: Layer):
    return CustomStandIn(l.spec.output_shape, l.spec.params), _call


# losses: function(module, x, target)
@_builds("softmax_cross_entropy")
def _ce(l: Layer):
    if len(l.input_shapes[0]) > 1:  # classes on the last dim; flatten the batch and the positions
        return None, lambda m, x, t: F.cross_entropy(x.flatten(0, -2), t.flatten())
    return None, lambda m, x, t: F.cross_entropy(x, t)


@_builds("mse")
def _mse(l: Layer):
    return None, lambda m, x, t: F.mse_loss(x, t)


@_builds("bce")
def _bce(l: Layer):
    return None, lambda m, x, t: F.binary_cross_entropy_with_logits(x, t)


# ----------------------------------------------------------------------------------------------------------
# parameter sharing


def _share(layer: Layer, own: nn.Module, target: nn.Module, target_layer: Layer) -> tuple[nn.Module, list[str]]:
    """Make `own` use `target`'s parameters; returns the module to call and notes on what was not shared."""
    notes: list[str] = []
    tw = getattr(target, "weight", None)
    if (layer.op == "dense" and isinstance(target, nn.Linear) and isinstance(own, nn.Linear)
            and tuple(own.weight.shape) != tuple(target.weight.shape)
            and tuple(own.weight.shape) == tuple(target.weight.shape[::-1])):
        notes.append("uses the transposed weight of the shared dense; its bias is a constant zero buffer")
        return TransposedLinear(target, bias=own.bias is not None), notes
    tparams = dict(target.named_parameters())
    if isinstance(target, nn.Embedding) and isinstance(own, nn.Linear) and tw is not None:
        tparams = {"weight": tw}  # tied output embedding: E [vocab, dim] is the linear weight [units, in]
    for pname, p in list(own.named_parameters()):
        holder_name, _, leaf = pname.rpartition(".")
        holder = own.get_submodule(holder_name) if holder_name else own
        q = tparams.get(pname)
        if q is not None and tuple(q.shape) == tuple(p.shape):
            holder._parameters[leaf] = q
        else:  # no counterpart: a constant, never trained or counted
            del holder._parameters[leaf]
            holder.register_buffer(leaf, torch.zeros_like(p.detach()) if "weight" not in leaf
                                   else p.detach().clone(), persistent=False)
            notes.append(f"parameter '{pname}' has no counterpart in '{target_layer.name}'; kept as a constant")
    if isinstance(own, nn.RNNBase):
        own._init_flat_weights()  # refresh the flat weight list after swapping parameters
    return own, notes


# ----------------------------------------------------------------------------------------------------------
# the module


class GraphModule(nn.Module):
    """A LayerGraph as an nn.Module; see the module docstring for the calling convention."""

    def __init__(self, graph: LayerGraph):
        super().__init__()
        self.graph_spec = graph
        self.layer_names: dict[str, str] = {}  # submodule attribute -> layer name
        self.sharing_notes: dict[str, list[str]] = {}
        # plan: (layer name, op kind, input names, attribute of the submodule or None, function)
        self.plan: list[tuple[str, str, tuple[str, ...], str | None, Callable[..., Tensor]]] = []
        attr_of: dict[str, str] = {}
        used: set[str] = set()
        for l in graph.layers:
            if l.op == "input":
                self.plan.append((l.name, "input", (), None, None))  # type: ignore[arg-type]
                continue
            builder = _BUILDERS.get(l.op)
            if builder is None:  # pragma: no cover - every op kind has a builder (tested)
                raise NotImplementedError(f"to_module: no PyTorch builder for op '{l.op}' (layer '{l.name}')")
            mod, fn = builder(l)
            attr = None
            if mod is not None:
                if l.spec.share_params_with is not None:
                    tgt_layer = graph[l.spec.share_params_with]
                    tgt = getattr(self, attr_of[tgt_layer.name])
                    mod, notes = _share(l, mod, tgt, tgt_layer)
                    if notes:
                        self.sharing_notes[l.name] = notes
                    if isinstance(mod, TransposedLinear):
                        fn = _call
                attr = module_attr_name(l.name)
                base, k = attr, 1
                while attr in used:
                    k += 1
                    attr = f"{base}_{k}"
                used.add(attr)
                self.add_module(attr, mod)
                attr_of[l.name] = attr
                self.layer_names[attr] = l.name
            self.plan.append((l.name, l.op, l.input_names, attr, fn))
        self.loss_names = [l.name for l in graph.layers if l.op in LOSS_OPS]
        self.output_names = [l.name for l in graph.outputs]
        # optional per-layer instrumentation, set by perfmodel.torch.measure (None: no overhead)
        self.layer_probe: Any = None

    def forward(self, inputs: dict[str, Tensor], targets: dict[str, Tensor] | None = None):
        env: dict[str, Tensor] = {}
        total = None
        probe = self.layer_probe
        for name, op, ins, attr, fn in self.plan:
            if op == "input":
                env[name] = inputs[name]
                continue
            args = [env[i] for i in ins]
            if op in LOSS_OPS:
                args.append(targets[name])  # type: ignore[index]
            m = getattr(self, attr) if attr is not None else None
            if probe is not None:
                args = probe.enter(name, op, args)
                y = fn(m, *args)
                y = probe.exit(name, op, y)
            else:
                y = fn(m, *args)
            if isinstance(y, torch.fx.Proxy):  # being traced (from_module): name the node after the layer
                y.node.meta["perfmodel_layer"] = name
            env[name] = y
            if op in LOSS_OPS:
                total = y if total is None else total + y
        if self.loss_names:
            return total
        return {n: env[n] for n in self.output_names}


def to_module(graph: LayerGraph) -> GraphModule:
    """Build a runnable nn.Module for `graph` (on the current default device; use `with torch.device('meta'):`
    to count parameters of huge graphs without allocating them)."""
    return GraphModule(graph)


# ----------------------------------------------------------------------------------------------------------
# random batches


def _id_bound(graph: LayerGraph, input_name: str) -> int:
    """Ids for an int64 input must stay below the vocab of every embedding that reads it (2 if none)."""
    bounds = [l.spec.vocab for l in graph.layers if l.op == "embedding" and l.input_names[:1] == (input_name,)]
    return min(bounds) if bounds else 2


def make_batch(graph: LayerGraph, batch: int, dtype: torch.dtype = torch.float32, seed: int = 0,
               device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Random inputs (per input layer) and targets (per loss layer) for a mini-batch of `batch` samples.

    float inputs: standard normal; int64 inputs: ids below the vocab of the embedding(s) reading them;
    softmax_cross_entropy targets: class ids below the class count, one per position; mse targets:
    standard normal; bce targets: uniform in [0, 1].
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    g = torch.Generator().manual_seed(seed)
    inputs: dict[str, Tensor] = {}
    for l in graph.inputs:
        shape = (batch, *l.output_shape)
        if getattr(l.spec, "dtype", "float") == "int64":
            inputs[l.name] = torch.randint(0, _id_bound(graph, l.name), shape, generator=g).to(device)
        else:
            inputs[l.name] = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    targets: dict[str, Tensor] = {}
    for l in graph.layers:
        if l.op not in LOSS_OPS:
            continue
        x = l.input_shapes[0]
        if l.op == "softmax_cross_entropy":
            targets[l.name] = torch.randint(0, x[-1], (batch, *x[:-1]), generator=g).to(device)
        elif l.op == "mse":
            targets[l.name] = torch.randn((batch, *x), generator=g).to(device=device, dtype=dtype)
        else:
            targets[l.name] = torch.rand((batch, *x), generator=g).to(device=device, dtype=dtype)
    return inputs, targets
from . import importer_kinds as _importer_kinds  # noqa: E402,F401  (builders of the importer kinds: moe, elementwise, pad, slice)
