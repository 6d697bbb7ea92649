"""torch.nn.Module -> LayerGraph: import a PyTorch model by tracing it on example inputs.

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

import contextlib
import io
import math
import operator
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from ..graph.layer_graph import LayerGraph
from ..graph.network_file import validate_op
from ..graph.shapes import infer_shape
from .to_module import CustomStandIn, PositionalEmbedding, TransposedLinear

__all__ = ["ImportReport", "UnmappedOp", "from_module", "import_module", "parse_input_shape"]


# ----------------------------------------------------------------------------------------------------------
# report


class UnmappedOp(BaseModel):
    """An op the importer could not map to a kind: it became a `custom` layer."""

    model_config = ConfigDict(frozen=True)
    layer: str  # the custom layer's name in the graph
    node: str  # the fx node
    target: str  # what was called (module class, function or method name)
    location: str  # module path and source line where it occurs
    flops_per_sample: float  # forward FLOPs per sample measured with FlopCounterMode
    params: int
    reason: str


class ImportReport(BaseModel):
    """What the import did: how it traced, what it could not map, what it approximated."""

    model_config = ConfigDict(frozen=True)
    name: str
    method: str  # "fx", "fx (all torch.nn modules as leaves)" or "export"
    batch: int  # example batch size (dim 0 of the inputs)
    layers: int
    unmapped: tuple[UnmappedOp, ...] = ()
    approximations: tuple[str, ...] = ()
    trace_errors: tuple[str, ...] = ()  # why earlier tracing methods failed
    params_module: int  # distinct trainable parameters of the module
    params_graph: int  # parameters of the graph (sum of its layers' cost records)

    def summary_lines(self) -> list[str]:
        """Short human-readable lines (for the CLI)."""
        out = [f"traced with {self.method}; {self.layers} layers; parameters: module {self.params_module:,}, "
               f"graph {self.params_graph:,}"]
        for u in self.unmapped:
            out.append(f"unmapped: {u.target} (node {u.node}, layer {u.layer}) at {u.location}: {u.reason}; "
                       f"costed as custom ({u.flops_per_sample:,.0f} FLOPs/sample, {u.params:,} params)")
        out.extend(f"approximation: {a}" for a in self.approximations)
        return out


class Unmappable(Exception):
    """Raised by a handler that cannot express the node; the node becomes a custom layer."""


# ----------------------------------------------------------------------------------------------------------
# values flowing through the traced graph


@dataclass(eq=False)
class Act:
    """An activation: the output of graph layer `layer`.

    `real` is its true per-sample shape (the tensor is batch-leading) or None when the batch dim was
    folded into another dim; `shape` is the layer's per-sample output shape (they differ after views).
    """

    layer: str
    shape: tuple[int, ...]
    real: tuple[int, ...] | None
    is_int: bool = False
    _view: str | None = None  # reshape layer giving `real` (created on demand)
    transposed_of: "Act | None" = None  # set by permute/transpose: the activation before the view
    swaps_last_two: bool = False


@dataclass(eq=False)
class Const:
    """A value that does not depend on the inputs; `params` are ids of the nn.Parameters it derives from."""

    value: Any
    params: frozenset[int] = frozenset()


@dataclass(eq=False)
class Seq:
    items: tuple


@dataclass(eq=False)
class Dict_:
    items: dict


@dataclass(eq=False)
class RecState:
    """h_n (or c_n) of a recurrent layer: [layers*dirs, N, H]."""

    act: Act
    dirs: int


@dataclass(eq=False)
class LossVal:
    """A scalar loss (or arithmetic on losses)."""


def _walk(info):
    if isinstance(info, (Seq,)):
        for i in info.items:
            yield from _walk(i)
    elif isinstance(info, Dict_):
        for i in info.items.values():
            yield from _walk(i)
    elif isinstance(info, (list, tuple)):
        for i in info:
            yield from _walk(i)
    elif isinstance(info, dict):
        for i in info.values():
            yield from _walk(i)
    else:
        yield info


def _dynamic(info) -> bool:
    return any(isinstance(i, (Act, RecState, LossVal)) for i in _walk(info))


def _value(info):
    """The concrete value of a Const (recursively through containers)."""
    if isinstance(info, Const):
        return info.value
    if isinstance(info, (list, tuple)):
        return type(info)(_value(i) for i in info)
    if isinstance(info, dict):
        return {k: _value(v) for k, v in info.items()}
    return info


def _params_of(info) -> frozenset[int]:
    out: set[int] = set()
    for i in _walk(info):
        if isinstance(i, Const):
            out |= i.params
    return frozenset(out)


# ----------------------------------------------------------------------------------------------------------
# tracing


_SELF_ATTENTION_ARGS = ("query", "key", "value")


def _mapped_module_types() -> tuple[type, ...]:
    return tuple(_MODULE_HANDLERS) + (PositionalEmbedding, TransposedLinear, CustomStandIn)


class _Tracer(fx.Tracer):
    """fx tracer that records, for every node, the module path it was created in."""

    def __init__(self, leaf_all_torch: bool, extra_leaves: tuple[type, ...] = ()):
        super().__init__()
        self.record_stack_traces = True
        self.leaf_all_torch = leaf_all_torch
        self.extra_leaves = extra_leaves
        self._path: list[str] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, _mapped_module_types()) or isinstance(m, self.extra_leaves):
            return True
        if self.leaf_all_torch:
            return super().is_leaf_module(m, qualname)
        return False

    def call_module(self, m, forward, args, kwargs):
        path = self.path_of_module(m)
        if self.is_leaf_module(m, path):  # the node names its module itself (node.target)
            return super().call_module(m, forward, args, kwargs)
        self._path.append(path)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._path.pop()

    def create_node(self, *a, **kw):
        node = super().create_node(*a, **kw)
        node.meta["perfmodel_module"] = self._path[-1] if self._path else ""
        return node


@contextlib.contextmanager
def _no_mha_fastpath():
    """nn.TransformerEncoderLayer & co. branch on tensor properties to pick a fused inference kernel;
    with the fast path off, fx can trace through them (training never takes that path anyway)."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):  # pragma: no cover - older torch
        yield
        return
    prev = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(prev)


def _trace(module: nn.Module, args: tuple, leaves: tuple[type, ...]) -> tuple[fx.GraphModule, str, list[str]]:
    with _no_mha_fastpath():
        return _trace_any(module, args, leaves)


def _trace_any(module: nn.Module, args: tuple, leaves: tuple[type, ...]) -> tuple[fx.GraphModule, str, list[str]]:
    errors: list[str] = []
    for leaf_all, label in ((False, "fx"), (True, "fx (all torch.nn modules as leaves)")):
        try:
            tracer = _Tracer(leaf_all, leaves)
            graph = tracer.trace(module)
            return fx.GraphModule(tracer.root, graph, type(module).__name__), label, errors
        except Exception as e:  # noqa: BLE001 - any tracing failure moves on to the next method
            errors.append(f"{label}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ep = torch.export.export(module, args, strict=False)
        return ep.module(), "export", errors
    except Exception as e:  # noqa: BLE001
        errors.append(f"export: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise RuntimeError("cannot trace the module: " + "; ".join(errors))


_TORCH_DIR = str(Path(torch.__file__).resolve().parent)


def _location(node: fx.Node) -> str:
    path = node.meta.get("perfmodel_module") or ""
    if not path and "nn_module_stack" in node.meta:  # torch.export keeps the module stack
        stack = list(node.meta["nn_module_stack"].values())
        path = stack[-1][0] if stack else ""
    if node.op == "call_module":
        path = str(node.target)
    src = ""
    st = node.meta.get("stack_trace") or node.stack_trace
    if st:
        frames = [ln.strip() for ln in st.strip().splitlines() if ln.strip().startswith("File ")]
        user = [f for f in frames if _TORCH_DIR not in f and __file__ not in f]  # innermost frame of the model
        if user:
            src = user[-1].replace("File ", "")
    parts = [f"module '{path}'" if path else "top-level forward", src]
    return ", ".join(p for p in parts if p)


def _target_name(node: fx.Node, root: nn.Module) -> str:
    if node.op == "call_module":
        return type(root.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    t = node.target
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or str(t)
    if mod and not str(t).startswith("aten."):
        return f"{mod}.{name}"
    return str(t)


# ----------------------------------------------------------------------------------------------------------
# the converter


class _Converter(torch.fx.passes.shape_prop.ShapeProp):
    """Runs the traced graph (ShapeProp) and maps every node as it goes."""

    def __init__(self, gm: fx.GraphModule, original: nn.Module, batch: int):
        super().__init__(gm)
        self.gm = gm
        self.original = original
        self.batch = batch
        self.specs: list[dict] = []
        self.names: set[str] = set()
        self.info: dict[fx.Node, Any] = {}
        self.owner: dict[int, str] = {}  # parameter id -> layer that owns it
        self.param_numel: dict[int, int] = {id(p): p.numel() for p in gm.parameters()}
        self.unmapped: list[UnmappedOp] = []
        self.approx: list[str] = []
        self.shapes: dict[str, tuple[int, ...]] = {}  # layer -> per-sample output shape
        self.kinds: dict[str, dict] = {}  # layer -> its raw spec
        self.param_by_id: dict[int, nn.Parameter] = {id(p): p for p in gm.parameters()}
        self._pending: dict[str, list[int]] = {}
        self.layer_names = dict(getattr(original, "layer_names", {}) or {})

    # -- helpers used by handlers --------------------------------------------------------------------
    def unique(self, base: str) -> str:
        base = base or "layer"
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def layer_name(self, node: fx.Node) -> str:
        if node.meta.get("perfmodel_layer"):  # a GraphModule of to_module names its layers' output nodes
            return self.unique(node.meta["perfmodel_layer"])
        if node.op == "call_module":
            return self.unique(self.layer_names.get(str(node.target), str(node.target)))
        return self.unique(node.name)

    def add(self, op: str, name: str, inputs: list[str], **fields) -> str:
        """Append a layer after validating it and inferring its shape (an error here makes the node custom)."""
        raw = {"op": op, "name": name, **fields}
        if op != "input":
            raw["inputs"] = list(inputs)
        try:
            spec = validate_op(raw, f"layer '{name}'")
            shape = tuple(spec.shape) if op == "input" else infer_shape(spec, [self.shapes[i] for i in inputs])
        except Exception:
            self.names.discard(name)
            raise
        self.specs.append(raw)
        self.shapes[name] = shape
        self.kinds[name] = raw
        for i in self._pending.pop(name, ()):
            self.owner.setdefault(i, name)
        return name

    def ensure(self, a: Act) -> str:
        """The name of a layer whose output has `a`'s true per-sample shape (adds a reshape if needed)."""
        if a.real is None or a.real == a.shape:
            return a.layer
        if a._view is None:
            a._view = self.add("reshape", self.unique(f"{a.layer}.view"), [a.layer], shape=list(a.real))
        return a._view

    def out_act(self, layer: str, result) -> Act:
        """The activation `result` as the output of `layer`."""
        return Act(layer, self.shapes[layer], self.per_sample(result))

    def per_sample(self, t) -> tuple[int, ...] | None:
        if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == self.batch:
            return tuple(int(d) for d in t.shape[1:])
        return None

    def claim(self, layer: str, params) -> str | None:
        """Record `layer` as owner of `params` (nn.Parameters or ids); returns the earlier owner if shared."""
        ids = [p if isinstance(p, int) else id(p) for p in params if p is not None]
        prior = {self.owner[i] for i in ids if i in self.owner}
        own = [i for i in ids if i not in self.owner]
        self._pending[layer] = own  # becomes ownership when the layer is added (see add)
        if prior:
            if own:
                n = sum(self.param_numel.get(i, 0) for i in own)
                self.approx.append(f"layer '{layer}' shares parameters of '{sorted(prior)[0]}' but also has "
                                   f"{n:,} parameters of its own, which a sharing layer does not count")
            return sorted(prior)[0]
        return None

    def note(self, text: str) -> None:
        if text not in self.approx:
            self.approx.append(text)

    # -- the pass ------------------------------------------------------------------------------------
    def run_node(self, n: fx.Node):
        self._pending.clear()
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        result = super().run_node(n)
        ia = fx.node.map_arg(n.args, lambda x: self.info[x])
        ik = fx.node.map_arg(n.kwargs, lambda x: self.info[x])
        self.info[n] = self.convert(n, result, args, kwargs, ia, ik)
        return result

    def convert(self, n: fx.Node, result, args, kwargs, ia, ik):
        if n.op == "placeholder":
            return self.placeholder_info(n.name, result)
        if n.op == "get_attr":
            ids = frozenset({id(result)}) if isinstance(result, nn.Parameter) else frozenset()
            return Const(result, ids)
        if n.op == "output":
            return None
        dyn = _dynamic((ia, ik))
        if not dyn:
            params = _params_of((ia, ik))
            if n.op == "call_module":
                params |= frozenset(id(p) for p in self.gm.get_submodule(n.target).parameters())
            return Const(result, params)
        flat = list(_walk((ia, ik)))
        if any(isinstance(i, LossVal) for i in flat) and not any(isinstance(i, Act) for i in flat):
            return LossVal()
        if not isinstance(result, (torch.Tensor, tuple, list)) or (
                isinstance(result, (tuple, list)) and not any(isinstance(x, torch.Tensor) for x in result)):
            return Const(result)  # shape queries and the like
        handler = self.find_handler(n)
        if handler is not None:
            try:
                out = handler(self, n, result, args, kwargs, ia, ik)
                if out is not None:
                    return out
            except Unmappable as e:
                self._pending.clear()
                return self.custom(n, result, args, kwargs, ia, ik, str(e))
            except Exception as e:  # noqa: BLE001 - a handler that trips is treated as "cannot map"
                self._pending.clear()
                return self.custom(n, result, args, kwargs, ia, ik, f"mapping failed: {type(e).__name__}: {e}")
            return self.custom(n, result, args, kwargs, ia, ik, "no mapping for these arguments")
        return self.custom(n, result, args, kwargs, ia, ik, "no op kind for this operation")

    def placeholder_info(self, name: str, value):
        if isinstance(value, torch.Tensor):
            if value.dim() == 0 or value.shape[0] != self.batch:
                return Const(value)
            is_int = not value.is_floating_point() and not value.is_complex()
            lname = self.unique(name)
            shape = tuple(int(d) for d in value.shape[1:]) or (1,)
            self.add("input", lname, [], shape=list(shape), dtype="int64" if is_int else "float")
            return Act(lname, shape, shape if value.dim() > 1 else None, is_int)
        if isinstance(value, dict):  # the first dict argument names the inputs (GraphModule); others are prefixed
            first = not any(isinstance(v, Dict_) for v in self.info.values())
            return Dict_({k: self.placeholder_info(str(k) if first else f"{name}.{k}", v) for k, v in value.items()})
        if isinstance(value, (list, tuple)):
            return Seq(tuple(self.placeholder_info(f"{name}_{i}", v) for i, v in enumerate(value)))
        return Const(value)

    def find_handler(self, n: fx.Node) -> Callable | None:
        if n.op == "call_module":
            mod = self.gm.get_submodule(n.target)
            for cls, h in _MODULE_HANDLERS.items():
                if type(mod) is cls:
                    return h
            for cls, h in _BRIDGE_HANDLERS.items():
                if isinstance(mod, cls):
                    return h
            return None
        key = n.target if n.op == "call_function" else ("method", n.target)
        return _FUNCTION_HANDLERS.get(key)

    def custom(self, n: fx.Node, result, args, kwargs, ia, ik, reason: str):
        """Cost the node as a `custom` layer: true output shape, its parameters, measured FLOPs."""
        acts = [i for i in _walk((ia, ik)) if isinstance(i, (Act, RecState))]
        inputs: list[str] = []
        for a in acts:
            a = a.act if isinstance(a, RecState) else a
            nm = self.ensure(a)
            if nm not in inputs:
                inputs.append(nm)
        if not inputs:  # only losses feed it: it is loss arithmetic
            return LossVal()
        tensors = [t for t in _walk(result if isinstance(result, (tuple, list)) else [result])
                   if isinstance(t, torch.Tensor)]
        out = tensors[0] if tensors else None
        real = self.per_sample(out)
        if real is not None and len(real) == 0:
            real = None
        if real is not None:
            shape = real
        else:
            numel = out.numel() if out is not None else 1
            shape = (max(1, numel // self.batch),)
        params: set[int] = set(_params_of((ia, ik)))
        if n.op == "call_module":
            params |= {id(p) for p in self.gm.get_submodule(n.target).parameters()}
        new = [p for p in params if p not in self.owner]
        nparams = sum(self.param_numel.get(p, 0) for p in new)
        flops = self.measure_flops(n, args, kwargs) / self.batch
        name = self.layer_name(n)
        target = _target_name(n, self.gm)
        note = f"{target} at {_location(n)}: {reason}"
        self.add("custom", name, inputs, output_shape=list(shape), forward_flops_per_sample=flops,
                 params=nparams, note=note[:300])
        for p in new:
            self.owner[p] = name
        self.unmapped.append(UnmappedOp(layer=name, node=n.name, target=target, location=_location(n),
                                        flops_per_sample=flops, params=nparams, reason=reason))
        act = Act(name, shape, real)
        if isinstance(result, (tuple, list)):  # e.g. split/chunk: every piece reads as this layer's output
            items = []
            for r in result:
                if not isinstance(r, torch.Tensor):
                    items.append(Const(r))
                    continue
                rr = self.per_sample(r)
                items.append(Act(name, shape, rr if rr is not None and math.prod(rr) == math.prod(shape) else None))
            return Seq(tuple(items))
        return act

    def measure_flops(self, n: fx.Node, args, kwargs) -> float:
        """Forward FLOPs of this node alone (FlopCounterMode; attention forced to the math kernel)."""
        from torch.utils.flop_counter import FlopCounterMode

        if n.op == "call_module":
            fn = self.gm.get_submodule(n.target)
        elif n.op == "call_method":
            fn = lambda self_, *a, **k: getattr(self_, n.target)(*a, **k)  # noqa: E731
        else:
            fn = n.target
        try:
            with _math_sdpa(), torch.no_grad(), FlopCounterMode(display=False) as fc:
                fn(*args, **kwargs)
            return float(fc.get_total_flops())
        except Exception:  # noqa: BLE001 - an op that cannot be re-run is costed by its bytes only
            self.note(f"could not re-run node '{n.name}' to count its FLOPs; counted 0")
            return 0.0


@contextlib.contextmanager
def _math_sdpa():
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


# ----------------------------------------------------------------------------------------------------------
# handlers: (conv, node, result, args, kwargs, arg infos, kwarg infos) -> info | None


Handler = Callable[..., Any]
_MODULE_HANDLERS: dict[type, Handler] = {}
_BRIDGE_HANDLERS: dict[type, Handler] = {}
_FUNCTION_HANDLERS: dict[Any, Handler] = {}


def _on_modules(*classes):
    def deco(fn):
        for c in classes:
            _MODULE_HANDLERS[c] = fn
        return fn

    return deco


def _on(*targets):
    """Register a handler for functions (objects) and tensor methods ('name' strings)."""

    def deco(fn):
        for t in targets:
            _FUNCTION_HANDLERS[("method", t) if isinstance(t, str) else t] = fn
        return fn

    return deco


def _aten(*names):
    out = []
    for nm in names:
        packet, _, overload = nm.partition(".")
        p = getattr(torch.ops.aten, packet, None)
        if p is not None:
            o = getattr(p, overload or "default", None)
            if o is not None:
                out.append(o)
    return out


def _arg(args, kwargs, i: int, name: str, default=None):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _act(info, what: str = "input") -> Act:
    if isinstance(info, Act):
        return info
    raise Unmappable(f"its {what} is not an activation of the batch")


def _real(a: Act) -> tuple[int, ...]:
    if a.real is None:
        raise Unmappable("its input has the batch dim folded into another dim")
    return a.real


def _sample_axis(dim: int, rank_with_batch: int) -> int:
    """A dim of the batch-first tensor as a per-sample axis (dim 0, the batch, is not allowed)."""
    d = dim if dim >= 0 else rank_with_batch + dim
    if d == 0:
        raise Unmappable("it works across the batch dim")
    return d - 1


def _rowwise_in(c: _Converter, a: Act, tensor) -> str:
    """Input of a row-wise op (one that acts on the last dim). An activation whose batch dim was folded
    into another dim keeps its layer, provided the last dim is the same."""
    if a.real is None:
        if not isinstance(tensor, torch.Tensor) or tensor.shape[-1] != a.shape[-1]:
            raise Unmappable("its input has the batch dim folded into another dim")
        return a.layer
    return c.ensure(a)


def _rowwise_out(c: _Converter, name: str, a: Act, result) -> Act:
    real = c.per_sample(result) if a.real is not None else None
    return Act(name, c.shapes[name], real)


def _simple(op: str, **fixed):
    """Handler for a shape-preserving one-input op (activations, dropout)."""

    def h(c: _Converter, n, result, args, kwargs, ia, ik):
        a = _act(ia[0] if ia else next(iter(ik.values())))
        x = args[0] if args else next(iter(kwargs.values()))
        fields = {k: (v(args, kwargs) if callable(v) else v) for k, v in fixed.items()}
        name = c.add(op, c.layer_name(n), [_rowwise_in(c, a, x)], **fields)
        return _rowwise_out(c, name, a, result)

    return h


# --- modules -------------------------------------------------------------------------------------------


def _mod(c: _Converter, n) -> nn.Module:
    return c.gm.get_submodule(n.target)


@_on_modules(nn.Linear)
def _h_linear(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    a = _act(ia[0])
    name = c.layer_name(n)
    shared = c.claim(name, [m.weight, m.bias])
    fields = {"units": m.out_features, "bias": m.bias is not None}
    if shared:
        fields["share_params_with"] = shared
    c.add("dense", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


def _conv_fields(m, n_spatial: int) -> dict:
    def norm(v):
        v = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n_spatial
        return v[0] if n_spatial == 1 else (v if v[0] != v[1] else v[0])

    f = {"out_channels": m.out_channels, "kernel": norm(m.kernel_size), "stride": norm(m.stride),
         "dilation": norm(m.dilation), "groups": m.groups, "bias": m.bias is not None}
    if isinstance(m.padding, str):
        f["padding"] = m.padding
    else:
        f["padding"] = norm(m.padding)
    return f


def _param_layer(c, n, op, a_info, result, fields, params):
    a = _act(a_info)
    name = c.layer_name(n)
    shared = c.claim(name, params)
    if shared:
        fields["share_params_with"] = shared
    c.add(op, name, [c.ensure(a)] if a.real is not None else [a.layer], **fields)
    return c.out_act(name, result)


@_on_modules(nn.Conv1d, nn.Conv2d)
def _h_conv(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    if m.padding_mode != "zeros":
        c.note(f"'{n.target}': padding mode '{m.padding_mode}' costed as zero padding")
    nsp = 1 if isinstance(m, nn.Conv1d) else 2
    _real(_act(ia[0]))
    return _param_layer(c, n, "conv1d" if nsp == 1 else "conv2d", ia[0], result, _conv_fields(m, nsp),
                        [m.weight, m.bias])


@_on_modules(nn.ConvTranspose2d)
def _h_convt(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    _real(_act(ia[0]))
    if len(args) > 1 and args[1] is not None:
        raise Unmappable("an explicit output_size")
    f = _conv_fields(m, 2)
    f["output_padding"] = tuple(m.output_padding) if m.output_padding[0] != m.output_padding[1] else m.output_padding[0]
    return _param_layer(c, n, "conv_transpose2d", ia[0], result, f, [m.weight, m.bias])


def _pair_or_int(v):
    if isinstance(v, (tuple, list)):
        v = tuple(int(x) for x in v)
        return v[0] if len(v) == 1 or v[0] == v[1] else v
    return int(v)


def _pool(c, n, op, a_info, result, kernel, stride, padding, ceil_mode, dilation=1):
    if _pair_or_int(dilation) != 1:
        raise Unmappable("a dilated pooling window")
    if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0):
        stride = kernel
    a = _act(a_info)
    if len(_real(a)) != 3:
        raise Unmappable("pooling of a non-image tensor")
    name = c.add(op, c.layer_name(n), [c.ensure(a)], kernel=_pair_or_int(kernel), stride=_pair_or_int(stride),
                 padding=_pair_or_int(padding), ceil_mode=bool(ceil_mode))
    return c.out_act(name, result)


@_on_modules(nn.MaxPool2d)
def _h_maxpool(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    if m.return_indices:
        raise Unmappable("return_indices=True")
    return _pool(c, n, "maxpool2d", ia[0], result, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.dilation)


@_on_modules(nn.AvgPool2d)
def _h_avgpool(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _pool(c, n, "avgpool2d", ia[0], result, m.kernel_size, m.stride, m.padding, m.ceil_mode)


def _gap(c, n, a_info, result):
    a = _act(a_info)
    if len(_real(a)) not in (2, 3):
        raise Unmappable("global pooling of a tensor that is not [C, L] or [C, H, W]")
    name = c.add("global_avgpool", c.layer_name(n), [c.ensure(a)])
    return Act(name, (a.real[0],), c.per_sample(result))


@_on_modules(nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)
def _h_adaptive(c, n, result, args, kwargs, ia, ik):
    size = _mod(c, n).output_size
    if tuple(size if isinstance(size, (tuple, list)) else (size,)) not in ((1,), (1, 1)):
        raise Unmappable(f"adaptive pooling to {size} (only 1 maps to global_avgpool)")
    return _gap(c, n, ia[0], result)


@_on_modules(nn.BatchNorm1d, nn.BatchNorm2d)
def _h_bn(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _param_layer(c, n, "batchnorm", ia[0], result, {"eps": m.eps, "affine": m.affine},
                        [m.weight, m.bias] if m.affine else [])


@_on_modules(nn.LayerNorm)
def _h_ln(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    if len(m.normalized_shape) != 1:
        raise Unmappable("layer norm over more than the last dim")
    if m.elementwise_affine and getattr(m, "bias", None) is None:
        raise Unmappable("layer norm without a bias (the kind has weight and bias)")
    a = _act(ia[0])
    name = c.layer_name(n)
    fields = {"eps": m.eps, "affine": m.elementwise_affine}
    shared = c.claim(name, [m.weight, m.bias] if m.elementwise_affine else [])
    if shared:
        fields["share_params_with"] = shared
    c.add("layernorm", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


_on_modules(nn.ReLU)(_simple("relu"))
_on_modules(nn.Sigmoid)(_simple("sigmoid"))
_on_modules(nn.Tanh)(_simple("tanh"))
_on_modules(nn.Identity)(lambda c, n, result, args, kwargs, ia, ik: _act(ia[0]))


@_on_modules(nn.GELU)
def _h_gelu_mod(c, n, result, args, kwargs, ia, ik):
    if _mod(c, n).approximate != "none":
        c.note(f"'{n.target}': tanh-approximated GELU costed as gelu")
    return _simple("gelu")(c, n, result, args, kwargs, ia, ik)


@_on_modules(nn.LeakyReLU)
def _h_lrelu_mod(c, n, result, args, kwargs, ia, ik):
    return _simple("leaky_relu", slope=_mod(c, n).negative_slope)(c, n, result, args, kwargs, ia, ik)


@_on_modules(nn.Dropout, nn.Dropout1d, nn.Dropout2d)
def _h_dropout_mod(c, n, result, args, kwargs, ia, ik):
    return _simple("dropout", p=_mod(c, n).p)(c, n, result, args, kwargs, ia, ik)


def _softmax_layer(c, n, a_info, dim, result, log=False):
    a = _act(a_info)
    if dim is None:
        raise Unmappable("softmax without an explicit dim")
    if log:
        c.note("log_softmax costed as softmax")
    if a.real is None:
        if dim not in (-1,):
            raise Unmappable("softmax over a folded tensor on a dim other than the last")
        name = c.add("softmax", c.layer_name(n), [a.layer], axis=-1)
        return Act(name, c.shapes[name], None)
    axis = _sample_axis(dim, len(a.real) + 1)
    axis = axis - len(a.real) if dim < 0 else axis
    name = c.add("softmax", c.layer_name(n), [c.ensure(a)], axis=axis)
    return c.out_act(name, result)


@_on_modules(nn.Softmax, nn.LogSoftmax)
def _h_softmax_mod(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _softmax_layer(c, n, ia[0], m.dim, result, log=isinstance(m, nn.LogSoftmax))


@_on_modules(nn.Flatten)
def _h_flatten_mod(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _flatten(c, n, ia[0], m.start_dim, m.end_dim, result)


@_on_modules(nn.Embedding)
def _h_embedding(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    a = _act(ia[0])
    if not a.is_int or a.real is None:
        raise Unmappable("the ids are not an int64 input of the model")
    return _embedding(c, n, a, m.weight, result)


def _embedding(c, n, a: Act, weight, result):
    src = c.ensure(a)
    if c.kinds[src]["op"] != "input":  # the graph's embedding reads an int64 input layer directly
        raise Unmappable("the ids are not an int64 input of the model (they were transformed)")
    name = c.layer_name(n)
    fields = {"vocab": int(weight.shape[0]), "dim": int(weight.shape[1])}
    shared = c.claim(name, [weight])
    if shared:
        fields["share_params_with"] = shared
    c.add("embedding", name, [src], **fields)
    return c.out_act(name, result)


@_on_modules(nn.RNN, nn.LSTM, nn.GRU)
def _h_recurrent(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    if not m.batch_first:
        raise Unmappable("batch_first=False (the graph's sequences are [T, F] per sample, batch first)")
    if getattr(m, "proj_size", 0):
        raise Unmappable("an LSTM with proj_size")
    a = _act(ia[0])
    if a.real is None or len(a.real) != 2:
        raise Unmappable("input is not a batch of [T, F] sequences")
    op = {nn.RNN: "rnn", nn.LSTM: "lstm", nn.GRU: "gru"}[type(m)]
    fields = {"hidden": m.hidden_size, "layers": m.num_layers, "bidirectional": m.bidirectional, "bias": m.bias}
    if op == "rnn":
        fields["nonlinearity"] = m.nonlinearity
    if m.dropout:
        c.note(f"'{n.target}': dropout between recurrent layers is not costed")
    name = c.layer_name(n)
    shared = c.claim(name, list(m.parameters()))
    if shared:
        fields["share_params_with"] = shared
    c.add(op, name, [c.ensure(a)], **fields)
    out = c.out_act(name, result[0])
    dirs = 2 if m.bidirectional else 1
    state = RecState(out, dirs)
    hidden = Seq((state, state)) if op == "lstm" else state
    return Seq((out, hidden))


@_on_modules(nn.MultiheadAttention)
def _h_mha(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    q, k, v = (_arg(ia, ik, i, nm) for i, nm in enumerate(_SELF_ATTENTION_ARGS))
    if not (q is k is v):
        raise Unmappable("not self-attention (query, key and value differ); the kind is self-attention")
    if not m.batch_first:
        raise Unmappable("batch_first=False")
    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise Unmappable("kdim/vdim differ from embed_dim, or add_bias_kv/add_zero_attn")
    a = _act(q)
    if a.real is None or len(a.real) != 2:
        raise Unmappable("input is not a batch of [T, D] sequences")
    causal = bool(_value(ik.get("is_causal", Const(False))))
    mask = _arg(ia, ik, 5, "attn_mask", None)
    if not causal and mask is not None:
        mv = _value(mask)
        if isinstance(mv, torch.Tensor) and _is_causal_mask(mv):
            causal = True
        else:
            c.note(f"'{n.target}': an attention mask that is not causal is ignored")
    if _arg(ia, ik, 3, "key_padding_mask") is not None and _value(_arg(ia, ik, 3, "key_padding_mask")) is not None:
        c.note(f"'{n.target}': key_padding_mask ignored")
    name = c.layer_name(n)
    fields = {"heads": m.num_heads, "causal": causal, "bias": m.in_proj_bias is not None, "dropout": m.dropout}
    shared = c.claim(name, list(m.parameters()))
    if shared:
        fields["share_params_with"] = shared
    c.add("attention", name, [c.ensure(a)], **fields)
    out = c.out_act(name, result[0])
    w = result[1]
    return Seq((out, Const(None) if w is None else Act(name, a.real, None)))


def _is_causal_mask(m: torch.Tensor) -> bool:
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        return False
    blocked = m if m.dtype == torch.bool else torch.isinf(m) & (m < 0)
    want = torch.triu(torch.ones_like(blocked, dtype=torch.bool), diagonal=1)
    return bool(torch.equal(blocked.bool(), want))


@_on_modules(nn.Upsample)
def _h_upsample_mod(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    return _upsample(c, n, ia[0], m.scale_factor, m.mode, result)


def _upsample(c, n, a_info, scale, mode, result):
    a = _act(a_info)
    if scale is None:
        raise Unmappable("upsampling to a size (only an integer scale factor maps)")
    s = scale if not isinstance(scale, (tuple, list)) else (scale[0] if len(set(scale)) == 1 else None)
    if s is None or float(s) != int(s):
        raise Unmappable(f"non-integer or anisotropic scale {scale}")
    if mode not in ("nearest", "bilinear", "linear"):
        raise Unmappable(f"mode '{mode}'")
    name = c.add("upsample", c.layer_name(n), [c.ensure(a)], scale=int(s),
                 mode="nearest" if mode == "nearest" else "bilinear")
    return c.out_act(name, result)


def _loss(c, n, op, a_info, result):
    a = _act(a_info, "prediction")
    name = c.add(op, c.layer_name(n), [a.layer if a.real is None else c.ensure(a)])
    return LossVal()


_on_modules(nn.CrossEntropyLoss)(lambda c, n, r, a, k, ia, ik: _loss(c, n, "softmax_cross_entropy", ia[0], r))
_on_modules(nn.MSELoss)(lambda c, n, r, a, k, ia, ik: _loss(c, n, "mse", ia[0], r))
_on_modules(nn.BCEWithLogitsLoss)(lambda c, n, r, a, k, ia, ik: _loss(c, n, "bce", ia[0], r))


# --- bridge modules of to_module ------------------------------------------------------------------------


def _h_posemb(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    a = _act(ia[0])
    return _posemb_layer(c, n, a, m.weight, result)


def _posemb_layer(c, n, a: Act, weight, result):
    if a.real is None or len(a.real) != 2:
        raise Unmappable("position table added to a tensor that is not [T, D]")
    name = c.layer_name(n)
    fields = {"max_len": int(weight.shape[-2])}
    shared = c.claim(name, [weight])
    if shared:
        fields["share_params_with"] = shared
    c.add("positional_embedding", name, [c.ensure(a)], **fields)
    return c.out_act(name, result)


def _h_translinear(c, n, result, args, kwargs, ia, ik):
    m = _mod(c, n)
    a = _act(ia[0])
    name = c.layer_name(n)
    shared = c.claim(name, [m._other[0].weight])
    fields = {"units": m.out_features, "bias": m.bias is not None}
    if shared:
        fields["share_params_with"] = shared
    c.add("dense", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


_BRIDGE_HANDLERS[PositionalEmbedding] = _h_posemb
_BRIDGE_HANDLERS[TransposedLinear] = _h_translinear


# --- functions and tensor methods ----------------------------------------------------------------------


def _binary(c, n, op, result, ia):
    xs = [i for i in ia[:2]]
    acts = [x for x in xs if isinstance(x, Act)]
    if len(acts) == 2:
        a, b = acts
        if a.real is None or b.real is None:
            if a.real is None and b.real is None and a.shape == b.shape:
                name = c.add(op, c.layer_name(n), [a.layer, b.layer])
                return Act(name, a.shape, None)
            raise Unmappable("operands with a folded batch dim")
        if a.real != b.real:
            raise Unmappable(f"broadcasting {list(a.real)} with {list(b.real)}")
        name = c.add(op, c.layer_name(n), [c.ensure(a), c.ensure(b)])
        return c.out_act(name, result)
    if op == "add" and len(acts) == 1:
        a = acts[0]
        other = xs[1] if xs[0] is a else xs[0]
        if isinstance(other, Const) and isinstance(other.value, torch.Tensor) and len(other.params) == 1:
            pid = next(iter(other.params))
            p = c.param_by_id.get(pid)
            if p is not None and a.real is not None and len(a.real) == 2 and p.dim() in (2, 3) \
                    and p.shape[-1] == a.real[1] and p.shape[-2] >= a.real[0] and math.prod(p.shape[:-2]) == 1 \
                    and tuple(other.value.shape[-2:]) == a.real and math.prod(other.value.shape[:-2]) == 1:
                return _posemb_layer(c, n, a, p, result)
    raise Unmappable("an elementwise op with a constant or a broadcast operand (no op kind)")


@_on(operator.add, operator.iadd, torch.add, "add", "add_", "__add__", "__radd__", "__iadd__",
     *_aten("add.Tensor", "add_.Tensor"))
def _h_add(c, n, result, args, kwargs, ia, ik):
    if kwargs.get("alpha", 1) != 1 or (len(args) > 2 and args[2] != 1):
        raise Unmappable("add with alpha")
    return _binary(c, n, "add", result, list(ia))


@_on(operator.mul, operator.imul, torch.mul, "mul", "mul_", "__mul__", "__rmul__", *_aten("mul.Tensor"))
def _h_mul(c, n, result, args, kwargs, ia, ik):
    return _binary(c, n, "mul", result, list(ia))


for _f, _op in ((F.relu, "relu"), (torch.relu, "relu"), ("relu", "relu"), ("relu_", "relu"), (F.relu_, "relu"),
                (torch.sigmoid, "sigmoid"), (F.sigmoid, "sigmoid"), ("sigmoid", "sigmoid"),
                (torch.tanh, "tanh"), (F.tanh, "tanh"), ("tanh", "tanh")):
    _on(_f)(_simple(_op))
_on(*_aten("relu.default", "relu_.default"))(_simple("relu"))
_on(*_aten("sigmoid.default"))(_simple("sigmoid"))
_on(*_aten("tanh.default"))(_simple("tanh"))
_on(F.gelu, *_aten("gelu.default"))(_simple("gelu"))
_on(F.leaky_relu, *_aten("leaky_relu.default"))(
    _simple("leaky_relu", slope=lambda a, k: float(_arg(a, k, 1, "negative_slope", 0.01))))


@_on(F.dropout, *_aten("dropout.default"))
def _h_dropout(c, n, result, args, kwargs, ia, ik):
    p = float(_arg(args, kwargs, 1, "p", 0.5))
    return _simple("dropout", p=min(p, 0.999))(c, n, result, args, kwargs, ia, ik)


@_on(F.softmax, torch.softmax, "softmax", *_aten("softmax.int", "_softmax.default"))
def _h_softmax(c, n, result, args, kwargs, ia, ik):
    return _softmax_layer(c, n, ia[0], _arg(args, kwargs, 1, "dim"), result)


@_on(F.log_softmax, torch.log_softmax, "log_softmax", *_aten("log_softmax.int", "_log_softmax.default"))
def _h_log_softmax(c, n, result, args, kwargs, ia, ik):
    return _softmax_layer(c, n, ia[0], _arg(args, kwargs, 1, "dim"), result, log=True)


@_on(torch.cat, torch.concat, *_aten("cat.default"))
def _h_cat(c, n, result, args, kwargs, ia, ik):
    parts = _arg(ia, ik, 0, "tensors")
    dim = int(_arg(args, kwargs, 1, "dim", 0))
    acts = [_act(p) for p in parts]
    reals = [_real(a) for a in acts]
    axis = _sample_axis(dim, len(reals[0]) + 1)
    if len(acts) == 1:
        return acts[0]
    name = c.add("concat", c.layer_name(n), [c.ensure(a) for a in acts], axis=axis)
    return c.out_act(name, result)


def _flatten(c, n, a_info, start, end, result):
    a = _act(a_info)
    real = c.per_sample(result)
    if real is None:  # the batch dim was folded (e.g. before a loss)
        return _view(c, n, a, result)
    rank = len(a.real) + 1 if a.real is not None else None
    end_n = end if end >= 0 else (rank + end if rank else end)
    if start == 1 and rank is not None and end_n == rank - 1:
        if len(a.real) == 1:
            return Act(c.ensure(a), a.real, a.real, a.is_int)
        if a.shape == real and a.real is not None:
            return Act(a.layer, a.shape, real, a.is_int)
        name = c.add("flatten", c.layer_name(n), [c.ensure(a)])
        return Act(name, real, real)
    return _view(c, n, a, result)


def _view(c, n, a: Act, result):
    """A view or reshape: the same layer with a new true shape (a reshape layer is added on demand)."""
    real = c.per_sample(result)
    if real is None:
        if a.real is None:
            return a
        return Act(c.ensure(a), a.real, None, a.is_int)
    if a.real is None and math.prod(real) != math.prod(a.shape):
        raise Unmappable("a reshape that moves data across the batch dim")
    return Act(a.layer, a.shape, real, a.is_int)


@_on(torch.flatten, "flatten", *_aten("flatten.using_ints"))
def _h_flatten(c, n, result, args, kwargs, ia, ik):
    return _flatten(c, n, ia[0], int(_arg(args, kwargs, 1, "start_dim", 0)), int(_arg(args, kwargs, 2, "end_dim", -1)),
                    result)


@_on(torch.reshape, "reshape", "view", "view_as", "reshape_as", "unsqueeze", "squeeze", torch.unsqueeze,
     torch.squeeze, "contiguous", "clone", "to", "float", "type_as", "long", "int", "type", "double", "half",
     "bfloat16", "detach", *_aten("view.default", "reshape.default", "_unsafe_view.default", "unsqueeze.default",
                                  "squeeze.dim", "squeeze.default", "clone.default", "contiguous.default",
                                  "_to_copy.default", "to.dtype", "alias.default", "detach.default"))
def _h_view(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    if isinstance(result, torch.Tensor) and result.is_floating_point() and a.is_int:
        a = Act(a.layer, a.shape, a.real, False)
    return _view(c, n, a, result)


@_on("permute", "transpose", "t", "swapaxes", "swapdims", torch.permute, torch.transpose, torch.swapaxes,
     *_aten("permute.default", "transpose.int", "t.default"))
def _h_permute(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    if c.per_sample(result) is None or a.real is None:
        raise Unmappable("a permutation that moves the batch dim")
    out = _view(c, n, a, result)
    out = Act(out.layer, out.shape, out.real, out.is_int, transposed_of=a,
              swaps_last_two=_swaps_last_two(args, kwargs, n, result.dim()))
    c.note("permute/transpose are views: a reshape layer stands for them where a consumer needs the new layout "
           "(a transpose of the last two dims feeding a matmul becomes transpose_b)")
    return out


def _swaps_last_two(args, kwargs, n, rank: int) -> bool:
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
    if "permute" in str(name):
        dims = args[1:] if not (len(args) == 2 and isinstance(args[1], (list, tuple))) else args[1]
        dims = [d % rank for d in dims]
        return dims == list(range(rank - 2)) + [rank - 1, rank - 2]
    if str(name) in ("t",) or "t.default" in str(name):
        return rank == 2
    d0, d1 = (int(args[1]) % rank, int(args[2]) % rank) if len(args) >= 3 else (0, 1)
    return {d0, d1} == {rank - 1, rank - 2}


@_on(operator.matmul, torch.matmul, torch.bmm, "matmul", "bmm", "__matmul__", *_aten("matmul.default", "bmm.default"))
def _h_matmul(c, n, result, args, kwargs, ia, ik):
    a, b = ia[0], ia[1]
    if isinstance(a, Act) and isinstance(b, Const):
        w = b.value
        if isinstance(w, torch.Tensor) and w.dim() == 2 and len(b.params) == 1:
            c.note("x @ W with a parameter W costed as a dense layer without bias")
            name = c.layer_name(n)
            fields = {"units": int(w.shape[1]), "bias": False}
            shared = c.claim(name, b.params)
            if shared:
                fields["share_params_with"] = shared
            c.add("dense", name, [_rowwise_in(c, a, args[0])], **fields)
            return _rowwise_out(c, name, a, result)
        raise Unmappable("a product with a constant that is not one parameter matrix")
    a, b = _act(a), _act(b)
    transpose_b = False
    src_b = b.transposed_of
    if src_b is not None and b.swaps_last_two and b.layer == src_b.layer:
        b, transpose_b = src_b, True
    ra, rb = _real(a), _real(b)
    if len(ra) < 2 or len(rb) < 2:
        raise Unmappable("a per-sample matrix-vector product")
    name = c.add("matmul", c.layer_name(n), [c.ensure(a), c.ensure(b)], transpose_b=transpose_b)
    return c.out_act(name, result)


@_on(F.linear, *_aten("linear.default"))
def _h_flinear(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    w, bias = _arg(ia, ik, 1, "weight"), _arg(ia, ik, 2, "bias")
    if not isinstance(w, Const) or not isinstance(w.value, torch.Tensor) or w.value.dim() != 2:
        raise Unmappable("a linear map whose weight is not a constant matrix")
    if bias is not None and not isinstance(bias, Const):
        raise Unmappable("a linear map whose bias depends on the inputs")
    name = c.layer_name(n)
    has_bias = bias is not None and isinstance(bias.value, torch.Tensor)
    fields = {"units": int(w.value.shape[0]), "bias": has_bias}
    shared = c.claim(name, set(w.params) | (set(bias.params) if has_bias else set()))
    if shared:
        fields["share_params_with"] = shared
    c.add("dense", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


@_on(F.layer_norm, *_aten("layer_norm.default"))
def _h_flayernorm(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    shape = _arg(args, kwargs, 1, "normalized_shape")
    if len(shape) != 1:
        raise Unmappable("layer norm over more than the last dim")
    w, b = _arg(ia, ik, 2, "weight"), _arg(ia, ik, 3, "bias")
    if (w is None) != (b is None):
        raise Unmappable("layer norm with only one of weight and bias")
    name = c.layer_name(n)
    fields = {"eps": float(_arg(args, kwargs, 4, "eps", 1e-5)), "affine": w is not None}
    shared = c.claim(name, _params_of((w, b))) if w is not None else None
    if shared:
        fields["share_params_with"] = shared
    c.add("layernorm", name, [_rowwise_in(c, a, args[0])], **fields)
    return _rowwise_out(c, name, a, result)


@_on(F.embedding)
def _h_fembedding(c, n, result, args, kwargs, ia, ik):
    a, w = _act(ia[0]), _arg(ia, ik, 1, "weight")
    if not a.is_int or not isinstance(w, Const) or len(w.params) != 1:
        raise Unmappable("an embedding lookup that is not ids of an input into a parameter table")
    return _embedding(c, n, a, c.param_by_id[next(iter(w.params))], result)


@_on(*_aten("embedding.default"))
def _h_aten_embedding(c, n, result, args, kwargs, ia, ik):
    w, a = ia[0], _act(ia[1])
    if not a.is_int or not isinstance(w, Const) or len(w.params) != 1:
        raise Unmappable("an embedding lookup that is not ids of an input into a parameter table")
    return _embedding(c, n, a, c.param_by_id[next(iter(w.params))], result)


@_on(F.max_pool2d, *_aten("max_pool2d.default"))
def _h_fmaxpool(c, n, result, args, kwargs, ia, ik):
    if _arg(args, kwargs, 6, "return_indices", False):
        raise Unmappable("return_indices=True")
    k = _arg(args, kwargs, 1, "kernel_size")
    return _pool(c, n, "maxpool2d", ia[0], result, k, _arg(args, kwargs, 2, "stride", None),
                 _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 5, "ceil_mode", False),
                 _arg(args, kwargs, 4, "dilation", 1))


@_on(F.avg_pool2d, *_aten("avg_pool2d.default"))
def _h_favgpool(c, n, result, args, kwargs, ia, ik):
    k = _arg(args, kwargs, 1, "kernel_size")
    return _pool(c, n, "avgpool2d", ia[0], result, k, _arg(args, kwargs, 2, "stride", None),
                 _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "ceil_mode", False))


@_on(F.adaptive_avg_pool2d, F.adaptive_avg_pool1d, *_aten("adaptive_avg_pool2d.default", "adaptive_avg_pool1d.default"))
def _h_fadaptive(c, n, result, args, kwargs, ia, ik):
    size = _arg(args, kwargs, 1, "output_size")
    if tuple(size if isinstance(size, (tuple, list)) else (size,)) not in ((1,), (1, 1)):
        raise Unmappable(f"adaptive pooling to {size}")
    return _gap(c, n, ia[0], result)


@_on(torch.mean, "mean", *_aten("mean.dim"))
def _h_mean(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    real = _real(a)
    dims = _arg(args, kwargs, 1, "dim")
    if dims is None:
        raise Unmappable("a mean over everything (batch included)")
    rank = len(real) + 1
    dims = sorted(int(d) % rank for d in (dims if isinstance(dims, (list, tuple)) else [dims]))
    if len(real) in (2, 3) and dims == list(range(2, rank)):
        return _gap(c, n, a, result)
    raise Unmappable(f"a mean over dims {dims} (only the mean over all spatial dims is global_avgpool)")


@_on(F.interpolate, *_aten("upsample_nearest2d.vec", "upsample_bilinear2d.vec"))
def _h_interpolate(c, n, result, args, kwargs, ia, ik):
    if isinstance(n.target, torch._ops.OpOverload):
        scale = _arg(args, kwargs, 3 if "bilinear" in str(n.target) else 2, "scale_factors")
        mode = "bilinear" if "bilinear" in str(n.target) else "nearest"
    else:
        scale, mode = _arg(args, kwargs, 2, "scale_factor"), _arg(args, kwargs, 3, "mode", "nearest")
    return _upsample(c, n, ia[0], scale, mode, result)


@_on("select", torch.select, *_aten("select.int"))
def _h_select(c, n, result, args, kwargs, ia, ik):
    a = _act(ia[0])
    real = _real(a)
    dim, index = int(_arg(args, kwargs, 1, "dim")), int(_arg(args, kwargs, 2, "index"))
    axis = _sample_axis(dim, len(real) + 1)
    name = c.add("select", c.layer_name(n), [c.ensure(a)], axis=axis, index=index)
    return c.out_act(name, result)


@_on(operator.getitem)
def _h_getitem(c, n, result, args, kwargs, ia, ik):
    src, idx = ia[0], args[1]
    if isinstance(src, Seq):
        item = src.items[idx]
        return Seq(item) if isinstance(item, tuple) else item
    if isinstance(src, Dict_):
        return src.items[idx]
    if isinstance(src, RecState):
        if isinstance(idx, int) and idx == -1 and src.dirs == 1:
            name = c.add("select", c.layer_name(n), [c.ensure(src.act)], axis=0, index=-1)
            return c.out_act(name, result)
        raise Unmappable("use of a recurrent layer's final state other than h_n[-1] of a unidirectional layer")
    a = _act(src)
    real = _real(a)
    if not isinstance(idx, tuple):
        idx = (idx,)
    # x[:, i] / x[:, :, i] / x[..., i]: a select
    if len(idx) >= 2 and idx[0] == slice(None) and all(i == slice(None) for i in idx[1:-1]) \
            and isinstance(idx[-1], int) and len(idx) - 1 <= len(real):
        dim = len(idx) - 1
        name = c.add("select", c.layer_name(n), [c.ensure(a)], axis=dim - 1, index=idx[-1])
        return c.out_act(name, result)
    if len(idx) >= 2 and idx[0] == slice(None) and all(i == slice(None) for i in idx[:-1]) \
            and isinstance(idx[-1], int) is False and idx[-1] == slice(None):
        return a
    raise Unmappable(f"indexing with {idx!r}")


@_on(getattr)
def _h_getattr(c, n, result, args, kwargs, ia, ik):
    a, attr = _act(ia[0]), args[1]
    if attr in ("real", "imag", "data"):
        return _view(c, n, a, result)
    if attr in ("T", "mT", "mH", "H"):
        return _h_permute(c, n, result, (args[0], -2, -1), {}, ia, ik)
    raise Unmappable(f"attribute '{attr}'")


def _conv_like(c, n, op, result, a_info, w, b, stride, padding, dilation, groups, output_padding=None):
    a = _act(a_info)
    _real(a)
    if not isinstance(w, Const) or not isinstance(w.value, torch.Tensor):
        raise Unmappable("a convolution whose weight depends on the inputs")
    wt = w.value
    nsp = wt.dim() - 2
    out_ch = int(wt.shape[1] * groups) if op == "conv_transpose2d" else int(wt.shape[0])
    kernel = tuple(int(k) for k in wt.shape[2:])

    def norm(v):
        v = tuple(v) if isinstance(v, (tuple, list)) else (v,) * nsp
        v = tuple(int(x) for x in v) if len(v) == nsp else v * nsp
        return v[0] if nsp == 1 or len(set(v)) == 1 else v

    fields = {"out_channels": out_ch, "kernel": norm(kernel), "stride": norm(stride), "dilation": norm(dilation),
              "groups": int(groups), "bias": b is not None and _value(b) is not None}
    fields["padding"] = padding if isinstance(padding, str) else norm(padding)
    if output_padding is not None:
        fields["output_padding"] = norm(output_padding)
    name = c.layer_name(n)
    shared = c.claim(name, _params_of((w, b)))
    if shared:
        fields["share_params_with"] = shared
    c.add(op, name, [c.ensure(a)], **fields)
    return c.out_act(name, result)


@_on(F.conv1d, F.conv2d, *_aten("conv1d.default", "conv2d.default"))
def _h_fconv(c, n, result, args, kwargs, ia, ik):
    w = _arg(ia, ik, 1, "weight")
    op = "conv1d" if isinstance(w, Const) and getattr(w.value, "dim", lambda: 0)() == 3 else "conv2d"
    return _conv_like(c, n, op, result, ia[0], w, _arg(ia, ik, 2, "bias"), _arg(args, kwargs, 3, "stride", 1),
                      _arg(args, kwargs, 4, "padding", 0), _arg(args, kwargs, 5, "dilation", 1),
                      _arg(args, kwargs, 6, "groups", 1))


@_on(F.conv_transpose2d, *_aten("conv_transpose2d.input"))
def _h_fconvt(c, n, result, args, kwargs, ia, ik):
    return _conv_like(c, n, "conv_transpose2d", result, ia[0], _arg(ia, ik, 1, "weight"), _arg(ia, ik, 2, "bias"),
                      _arg(args, kwargs, 3, "stride", 1), _arg(args, kwargs, 4, "padding", 0),
                      _arg(args, kwargs, 7, "dilation", 1), _arg(args, kwargs, 6, "groups", 1),
                      output_padding=_arg(args, kwargs, 5, "output_padding", 0))


def _bn_like(c, n, result, a_info, w, b, eps):
    a = _act(a_info)
    if len(_real(a)) not in (1, 2, 3):
        raise Unmappable("batch norm of a tensor that is not [C], [C, L] or [C, H, W]")
    affine = w is not None and _value(w) is not None
    name = c.layer_name(n)
    fields = {"eps": float(eps), "affine": affine}
    shared = c.claim(name, _params_of((w, b))) if affine else None
    if shared:
        fields["share_params_with"] = shared
    c.add("batchnorm", name, [c.ensure(a)], **fields)
    return c.out_act(name, result)


@_on(F.batch_norm)
def _h_fbatchnorm(c, n, result, args, kwargs, ia, ik):
    return _bn_like(c, n, result, ia[0], _arg(ia, ik, 3, "weight"), _arg(ia, ik, 4, "bias"),
                    _arg(args, kwargs, 7, "eps", 1e-5))


@_on(*_aten("batch_norm.default", "_native_batch_norm_legit_no_training.default"))
def _h_aten_batchnorm(c, n, result, args, kwargs, ia, ik):
    eps = args[7] if "no_training" not in str(n.target) else args[6]
    out = _bn_like(c, n, result if isinstance(result, torch.Tensor) else result[0], ia[0], ia[1], ia[2], eps)
    return out if isinstance(result, torch.Tensor) else Seq((out,) + tuple(Const(None) for _ in result[1:]))


@_on(F.scaled_dot_product_attention, *_aten("scaled_dot_product_attention.default"))
def _h_sdpa(c, n, result, args, kwargs, ia, ik):
    q, k, v = (_act(_arg(ia, ik, i, nm)) for i, nm in enumerate(("query", "key", "value")))
    for x in (q, k, v):
        if len(_real(x)) < 2:
            raise Unmappable("attention inputs must be [..., T, d] per sample")
    c.note("scaled_dot_product_attention costed as matmul(q, k^T) -> softmax -> matmul(., v); mask, scale and "
           "causality are not costed")
    base = c.layer_name(n)
    scores = c.add("matmul", c.unique(f"{base}.scores"), [c.ensure(q), c.ensure(k)], transpose_b=True)
    probs = c.add("softmax", c.unique(f"{base}.softmax"), [scores], axis=-1)
    c.add("matmul", base, [probs, c.ensure(v)])
    return c.out_act(base, result)


def _h_loss_fn(op):
    def h(c, n, result, args, kwargs, ia, ik):
        return _loss(c, n, op, _arg(ia, ik, 0, "input"), result)

    return h


_on(F.cross_entropy, *_aten("cross_entropy_loss.default"))(_h_loss_fn("softmax_cross_entropy"))
_on(F.mse_loss, *_aten("mse_loss.default"))(_h_loss_fn("mse"))
_on(F.binary_cross_entropy_with_logits, *_aten("binary_cross_entropy_with_logits.default"))(_h_loss_fn("bce"))


@_on(F.nll_loss, *_aten("nll_loss.default", "nll_loss_nd.default"))
def _h_nll(c, n, result, args, kwargs, ia, ik):
    a = _act(_arg(ia, ik, 0, "input"))
    if not c.specs or c.specs[-1]["name"] != a.layer or c.specs[-1]["op"] != "softmax":
        raise Unmappable("nll_loss that does not follow a log_softmax")
    c.note("log_softmax + nll_loss costed as softmax_cross_entropy after a softmax")
    return _loss(c, n, "softmax_cross_entropy", a, result)


# ----------------------------------------------------------------------------------------------------------
# post-processing


def _finish(specs: list[dict]) -> list[dict]:
    """Drop unused inputs; fold `select(axis 0, index -1)` of a recurrent layer's sequence (its only user)
    into the layer as return_sequences=False."""
    users: dict[str, list[dict]] = {}
    for s in specs:
        for i in s.get("inputs", []):
            users.setdefault(i, []).append(s)
    by_name = {s["name"]: s for s in specs}
    rename: dict[str, str] = {}
    drop: set[str] = set()
    for s in specs:
        if s["op"] == "select" and s.get("axis") == 0 and s.get("index") == -1:
            src = by_name[s["inputs"][0]]
            if (src["op"] in ("rnn", "lstm", "gru") and src.get("return_sequences", True)
                    and len(users[src["name"]]) == 1):
                src["return_sequences"] = False
                rename[s["name"]] = src["name"]
                drop.add(s["name"])
    out = []
    for s in specs:
        if s["name"] in drop:
            continue
        if s["op"] == "input" and s["name"] not in users:
            continue
        if "inputs" in s:
            s["inputs"] = [rename.get(i, i) for i in s["inputs"]]
        out.append(s)
    return out


# ----------------------------------------------------------------------------------------------------------
# entry points


def _as_args(example_inputs) -> tuple:
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    return (example_inputs,)


def _batch_of(args: tuple) -> int:
    for x in _walk(list(args)):
        if isinstance(x, torch.Tensor) and x.dim() >= 1:
            return int(x.shape[0])
    raise ValueError("from_module: the example inputs hold no tensor with a batch dim")


def from_module(module: nn.Module, example_inputs, *, name: str | None = None,
                leaf_modules: tuple[type, ...] = ()) -> tuple[LayerGraph, ImportReport]:
    """Trace `module` on `example_inputs` (a tensor, a tuple of positional args, or a dict as one arg) and
    return its LayerGraph and an ImportReport (unmapped ops, approximations, parameter totals).

    `leaf_modules`: extra module classes to keep whole (they become custom layers with measured FLOPs).
    """
    from ..ops import op_cost

    args = _as_args(example_inputs)
    batch = _batch_of(args)
    gm, method, errors = _trace(module, args, tuple(leaf_modules))
    conv = _Converter(gm, module, batch)
    buf = io.StringIO()
    try:
        with torch.no_grad(), contextlib.redirect_stderr(buf), _no_mha_fastpath():
            conv.run(*args)
    except Exception as e:
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        raise RuntimeError(f"from_module: running the traced model on the example inputs failed: {tb}") from e
    specs = _finish(conv.specs)
    gname = name or type(module).__name__
    graph = LayerGraph(gname, [validate_op(s, f"layer '{s['name']}'") for s in specs],
                       description=f"imported from PyTorch ({type(module).__module__}.{type(module).__qualname__}) "
                                   f"by perfmodel.torch.from_module ({method})")
    used = {l.name for l in graph.layers}
    unmapped = tuple(u for u in conv.unmapped if u.layer in used)
    params_graph = sum(op_cost(l, 1, 4).params for l in graph.layers)
    params_module = sum(p.numel() for p in {id(p): p for p in module.parameters() if p.requires_grad}.values())
    report = ImportReport(
        name=gname, method=method, batch=batch, layers=len(graph), unmapped=unmapped,
        approximations=tuple(conv.approx), trace_errors=tuple(errors), params_module=params_module,
        params_graph=params_graph,
    )
    return graph, report


def parse_input_shape(text: str) -> tuple[tuple[int, ...], str]:
    """'3x224x224' -> ((3, 224, 224), 'float'); '128:int64' -> ((128,), 'int64'). Shapes are per sample."""
    shape_s, _, dtype = text.partition(":")
    dtype = dtype.strip() or "float"
    if dtype not in ("float", "int64"):
        raise ValueError(f"input '{text}': dtype must be float or int64, got '{dtype}'")
    try:
        shape = tuple(int(x) for x in shape_s.replace(",", "x").split("x") if x.strip())
    except ValueError:
        raise ValueError(f"input '{text}': expected a per-sample shape like 3x224x224 or 128:int64") from None
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input '{text}': every dim must be a positive integer")
    return shape, dtype


def import_module(spec: str, input_shapes: list[str], out: Path | str, *, batch: int = 3,
                  name: str | None = None) -> tuple[LayerGraph, ImportReport]:
    """Import the user's model 'package.module:factory', trace it and save its graph as YAML/JSON at `out`.

    This deliberately imports and runs the user's own code: `package.module` is imported (from the
    current directory or sys.path) and `factory()` is called to build the model, exactly as if the
    user ran it - it is the purpose of the command, so only name code you trust. `input_shapes` are
    per-sample shapes, one per positional input of forward ('3x224x224', '128:int64' for token ids,
    which are zeros); the example batch is `batch` (3 by default, to tell the batch dim apart).
    """
    import importlib
    import sys

    from ..graph import save_network

    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ValueError(f"expected 'package.module:factory', got '{spec}'")
    added = "" not in sys.path
    if added:
        sys.path.insert(0, "")  # the current directory, as `python -m` would see it
    try:
        module_obj = importlib.import_module(mod_name)
    finally:
        if added:
            sys.path.remove("")
    factory = module_obj
    for part in attr.split("."):
        factory = getattr(factory, part)
    model = factory() if not isinstance(factory, nn.Module) else factory
    if not isinstance(model, nn.Module):
        raise TypeError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    args = []
    for s in input_shapes:
        shape, dtype = parse_input_shape(s)
        if dtype == "int64":
            args.append(torch.zeros((batch, *shape), dtype=torch.int64))
        else:
            args.append(torch.randn((batch, *shape)))
    graph, report = from_module(model, tuple(args), name=name or attr)
    save_network(graph, out, flat=True)
    return graph, report
