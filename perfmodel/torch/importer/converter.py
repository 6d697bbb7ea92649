"""The converter: runs the traced graph (ShapeProp) and maps every node to layers through the handlers."""

from __future__ import annotations

import contextlib
import re
import math
from typing import Any, Callable

import torch
import torch.fx as fx
from torch import nn

from ...graph.network_file import validate_op
from ...graph.shapes import infer_shape
from .registry import _BRIDGE_HANDLERS, _FUNCTION_HANDLERS, _MODULE_HANDLERS, predicate_handler
from .report import UnmappedOp
from .trace import _location, _target_name, module_path
from .values import Act, Const, Dict_, LossVal, RecState, Seq, Unmappable  # noqa: F401
from .values import _dynamic, _params_of, _walk
from .leaf import _TENSOR, CALLS, leaf_op
from torch.utils import _pytree as pytree


class _Converter(torch.fx.passes.shape_prop.ShapeProp):
    """Runs the traced graph (ShapeProp) and maps every node as it goes."""

    def __init__(self, gm: fx.GraphModule, original: nn.Module, batch: int, input_names: list[str] | None = None,
                 prefix: str = ""):
        super().__init__(gm)
        self.input_names = list(input_names) if input_names else None
        self.prefix = prefix
        self.seq_first = False  # set once a tensor has its batch at dim 1 ([T, B, ...])
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
        """The module path: the module's own for a module kept whole, else `path.op` (`node` when top-level)."""
        if node.meta.get("perfmodel_layer"):  # a GraphModule of to_module names its layers' output nodes
            return self.unique(node.meta["perfmodel_layer"])
        if node.op == "call_module":
            return self.unique(self.layer_names.get(str(node.target), str(node.target)))
        if "perfmodel_leaf" in node.meta:
            return self.unique(node.meta["perfmodel_leaf"].path)  # a path in the model itself
        path = self.strip(module_path(node))
        base = re.sub(r"_\d+$", "", node.name)
        if path and path not in self.names and self.is_leaf_path(path):
            return self.unique(path)  # the one op of a leaf module (a Linear, a LayerNorm): its path
        return self.unique(f"{path}.{base}" if path else node.name)

    def is_leaf_path(self, path: str) -> bool:
        try:
            return not any(True for _ in self.original.get_submodule(path).children())
        except AttributeError:
            return False

    def strip(self, path: str) -> str:
        """A module path without the flattening wrapper's prefix ('model.')."""
        if self.prefix and path == self.prefix.rstrip("."):
            return ""
        return path[len(self.prefix):] if self.prefix and path.startswith(self.prefix) else path

    def module_of(self, node: fx.Node) -> nn.Module:
        """The module a call_module node (or a perfmodel::leaf op) runs."""
        if "perfmodel_leaf" in node.meta:
            return node.meta["perfmodel_leaf"].module
        return self.gm.get_submodule(node.target)

    def add(self, op: str, name: str, inputs: list[str], **fields) -> str:
        """Append a layer after validating it and inferring its shape (an error here makes the node custom)."""
        raw = {"op": op, "name": name, **fields}
        if op != "input":
            raw["inputs"] = list(inputs)
        if raw.get("share_params_with") and raw.get("bias") and self._pending.get(name):
            raw["bias"] = False  # the bias is the layer's own: the elementwise layer after it adds it
        try:
            spec = validate_op(raw, f"layer '{name}'")
            shape = tuple(spec.shape) if op == "input" else infer_shape(spec, [self.shapes[i] for i in inputs])
        except Exception:
            self.names.discard(name)
            raise
        self.specs.append(raw)
        self.shapes[name] = shape
        self.kinds[name] = raw
        own = self._pending.pop(name, ())
        for i in own:
            self.owner.setdefault(i, name)
        n_own = sum(self.param_numel.get(i, 0) for i in own)
        if raw.get("share_params_with") and n_own:  # a tied weight with a bias of its own (an MLM decoder)
            return self.add("elementwise", self.unique(f"{name}.own_params"), [name], fn="add", params=n_own)
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
        return Act(layer, self.shapes[layer], self.per_sample(result), bdim=self.bdim_of(result) or 0)

    def bdim_of(self, t) -> int | None:
        """Where the batch dim of tensor `t` is: 0, 1 in a sequence-first model ([T, B, ...]), or None."""
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            return None
        if t.shape[0] == self.batch:
            return 0
        if self.seq_first and t.dim() >= 2 and t.shape[1] == self.batch:
            return 1
        return None

    def per_sample(self, t) -> tuple[int, ...] | None:
        d = self.bdim_of(t)
        if d is None:
            return None
        return tuple(int(x) for i, x in enumerate(t.shape) if i != d)

    def claim(self, layer: str, params) -> str | None:
        """Record `layer` as owner of `params` (nn.Parameters or ids); returns the earlier owner if shared."""
        ids = [p if isinstance(p, int) else id(p) for p in params if p is not None]
        prior = {self.owner[i] for i in ids if i in self.owner}
        own = [i for i in ids if i not in self.owner]
        self._pending[layer] = own  # becomes ownership when the layer is added (see add)
        if prior:
            if own:
                n = sum(self.param_numel.get(i, 0) for i in own)
                self.approx.append(f"layer '{layer}' shares parameters of '{sorted(prior)[0]}' and has {n:,} of its "
                                   f"own: they are an elementwise layer after it ('{layer}.own_params')")
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
            name = self.input_names.pop(0) if self.input_names else n.name
            return self.placeholder_info(name, result)
        if n.op == "get_attr":
            trainable = isinstance(result, nn.Parameter) and result.requires_grad
            ids = frozenset({id(result)}) if trainable else frozenset()
            return Const(result, ids)
        if n.op == "output":
            return None
        dyn = _dynamic((ia, ik))
        if not dyn:
            params = _params_of((ia, ik))
            if n.op == "call_module":
                params |= frozenset(id(p) for p in self.gm.get_submodule(n.target).parameters() if p.requires_grad)
            return Const(result, params)
        flat = list(_walk((ia, ik)))
        if any(isinstance(i, LossVal) for i in flat) and not any(isinstance(i, Act) for i in flat):
            return LossVal()
        if not isinstance(result, (torch.Tensor, tuple, list)) or (
                isinstance(result, (tuple, list)) and not any(isinstance(x, torch.Tensor) for x in result)):
            return Const(result)  # shape queries and the like
        if n.op == "call_function" and n.target is leaf_op():
            return self.leaf_call(n, result, args, ia)
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
            if value.dim() >= 2 and value.shape[0] != self.batch and value.shape[1] == self.batch:
                self.seq_first = True  # e.g. token ids [T, B] of a sequence-first language model
            bdim = self.bdim_of(value)
            if bdim is None:
                return Const(value)
            is_int = not value.is_floating_point() and not value.is_complex()
            lname = self.unique(name)
            shape = self.per_sample(value) or (1,)
            self.add("input", lname, [], shape=list(shape), dtype="int64" if is_int else "float")
            return Act(lname, shape, shape if value.dim() > 1 else None, is_int, bdim=bdim)
        if isinstance(value, dict):  # the first dict argument names the inputs (GraphModule); others are prefixed
            first = not any(isinstance(v, Dict_) for v in self.info.values())
            return Dict_({k: self.placeholder_info(str(k) if first else f"{name}.{k}", v) for k, v in value.items()})
        if isinstance(value, (list, tuple)):
            return Seq(tuple(self.placeholder_info(f"{name}_{i}", v) for i, v in enumerate(value)))
        return Const(value)

    def find_handler(self, n: fx.Node) -> Callable | None:
        if n.op == "call_module":
            return self.module_handler(self.gm.get_submodule(n.target))
        key = n.target if n.op == "call_function" else ("method", n.target)
        return _FUNCTION_HANDLERS.get(key)

    def leaf_call(self, n: fx.Node, result, args, ia):
        """A module kept whole by perfmodel::leaf: map it with its module handler, flatten the answer."""
        call = CALLS[args[1]]
        n.meta["perfmodel_leaf"] = call
        margs, mkwargs = call.rebuild(args[0])
        infos = iter(ia[0])
        flat = [next(infos) if v is _TENSOR else Const(v) for v in call.leaves]
        mia, mik = pytree.tree_unflatten(flat, call.in_spec)
        out = pytree.tree_unflatten(list(result), call.out_spec)
        handler = self.module_handler(call.module)
        reason = "no op kind for this module"
        if handler is not None:
            try:
                info = handler(self, n, out, margs, mkwargs, tuple(mia), dict(mik))
                if info is not None:
                    return Seq(tuple(i for i in _walk(info) if not (isinstance(i, Const) and i.value is None)))
            except Unmappable as e:
                reason = str(e)
            except Exception as e:  # noqa: BLE001 - a handler that trips is treated as "cannot map"
                reason = f"mapping failed: {type(e).__name__}: {e}"
            self._pending.clear()
        return self.custom(n, result, args, {}, ia, {}, reason)

    @staticmethod
    def module_handler(mod: nn.Module) -> Callable | None:
        for cls, h in _MODULE_HANDLERS.items():
            if type(mod) is cls:
                return h
        for cls, h in _BRIDGE_HANDLERS.items():
            if isinstance(mod, cls):
                return h
        return predicate_handler(mod)

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
        if n.op == "call_module" or "perfmodel_leaf" in n.meta:
            params |= {id(p) for p in self.module_of(n).parameters()}
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
        mod = self.module_of(n) if n.op == "call_module" or "perfmodel_leaf" in n.meta else None
        standard = mod is not None and type(mod).__module__.startswith("torch.nn")
        self.unmapped.append(UnmappedOp(layer=name, node=n.name, target=target, location=_location(n),
                                        flops_per_sample=flops, params=nparams, reason=reason, standard=standard))
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
