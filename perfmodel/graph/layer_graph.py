"""LayerGraph: the validated, shape-inferred network as a networkx DiGraph plus an ordered layer list."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from ..errors import NetworkError
from .shapes import Shape, infer_shape
from .spec import LOSS_OPS, OpBase


@dataclass(frozen=True, slots=True)
class Layer:
    """One layer with its resolved inputs and inferred per-sample shapes."""

    spec: OpBase
    index: int
    input_names: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    # True when the first input holds integer ids (embedding lookups, labels)
    int_input: bool
    # True when this layer's output depends on trainable parameters (so gradients flow into it)
    requires_grad: bool
    # True when backward must compute the gradient w.r.t. this layer's inputs
    needs_input_grad: bool
    # True when this layer lies on a path to a loss (or to a graph output if there is no loss)
    in_backward: bool
    # layers that read this layer's output and send a gradient back (autograd sums them: fan-out - 1 adds)
    grad_consumers: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def op(self) -> str:
        return self.spec.op  # type: ignore[attr-defined]


class LayerGraph:
    """A network: ordered layers (topological), shapes per sample, and the DiGraph of data flow."""

    def __init__(self, name: str, specs: list[OpBase], *, description: str = "", source: str = "",
                 file=None, origin: str | None = None):
        self.name = name
        self.description = description
        self.source = source
        self.file = file  # the NetworkFile it came from, kept for saving with blocks
        self.origin = origin  # path or built-in name
        self.layers: tuple[Layer, ...] = _build(specs)
        self._by_name = {l.name: l for l in self.layers}

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> Layer:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def specs(self) -> list[OpBase]:
        return [l.spec for l in self.layers]

    @cached_property
    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for l in self.layers:
            g.add_node(l.name, op=l.op, shape=l.output_shape)
            for src in l.input_names:
                g.add_edge(src, l.name)
        return g

    @property
    def inputs(self) -> list[Layer]:
        return [l for l in self.layers if l.op == "input"]

    @property
    def outputs(self) -> list[Layer]:
        g = self.graph
        return [l for l in self.layers if g.out_degree(l.name) == 0]

    @property
    def has_loss(self) -> bool:
        return any(l.op in LOSS_OPS for l in self.layers)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerGraph) and self.name == other.name and self.specs == other.specs

    def __repr__(self) -> str:
        return f"LayerGraph({self.name!r}, {len(self.layers)} layers)"


def _build(specs: list[OpBase]) -> tuple[Layer, ...]:
    """Check names, references and acyclicity; order topologically; infer shapes and gradient flags."""
    by_name: dict[str, OpBase] = {}
    for s in specs:
        if s.name in by_name:
            raise NetworkError(f"duplicate layer name '{s.name}'", where=f"layer '{s.name}'")
        by_name[s.name] = s
    if not specs:
        raise NetworkError("the network has no layers")
    if all(s.op == "input" for s in specs):  # type: ignore[attr-defined]
        raise NetworkError("the network has only input layers; add at least one layer that computes")
    g = nx.DiGraph()
    order_hint = {s.name: i for i, s in enumerate(specs)}
    for s in specs:
        g.add_node(s.name)
        ins = s.inputs or ()
        if s.op == "input" and ins:  # type: ignore[attr-defined]
            raise NetworkError("an input layer takes no 'inputs'", where=f"layer '{s.name}'")
        if s.op != "input" and not ins:  # type: ignore[attr-defined]
            raise NetworkError("names no 'inputs'", where=f"layer '{s.name}'")
        for src in ins:
            if src not in by_name:
                import difflib

                close = difflib.get_close_matches(src, by_name.keys(), n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise NetworkError(f"input '{src}' names no layer{hint}", where=f"layer '{s.name}'")
            g.add_edge(src, s.name)
        if s.share_params_with is not None:
            tgt = by_name.get(s.share_params_with)
            if tgt is None:
                raise NetworkError(f"share_params_with '{s.share_params_with}' names no layer", where=f"layer '{s.name}'")
            if not tgt.has_params or not s.has_params:
                raise NetworkError(
                    f"share_params_with '{s.share_params_with}': both layers must have parameters", where=f"layer '{s.name}'"
                )
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        path = " -> ".join(a for a, _ in cycle) + f" -> {cycle[0][0]}"
        raise NetworkError(f"the layers form a cycle: {path}")
    order = list(nx.lexicographical_topological_sort(g, key=lambda n: order_hint[n]))

    # which layers lie on a path to a loss (or, without a loss, to an output)
    sinks = [n for n in order if by_name[n].op in LOSS_OPS] or [n for n in order if g.out_degree(n) == 0]  # type: ignore[attr-defined]
    in_bwd: set[str] = set(sinks)
    for n in sinks:
        in_bwd |= nx.ancestors(g, n)

    consumers: dict[str, int] = {}
    for s in specs:
        if s.name in in_bwd:
            for src in set(s.inputs or ()):
                consumers[src] = consumers.get(src, 0) + 1

    layers: list[Layer] = []
    done: dict[str, Layer] = {}
    for i, n in enumerate(order):
        s = by_name[n]
        ins = tuple(s.inputs or ())
        in_layers = [done[x] for x in ins]
        shapes = tuple(l.output_shape for l in in_layers)
        out = infer_shape(s, list(shapes))
        int_in = bool(in_layers) and _is_int(in_layers[0])
        if s.op == "embedding" and in_layers and not int_in:  # type: ignore[attr-defined]
            raise NetworkError(
                f"embedding reads '{ins[0]}', which is not an integer input (declare it with dtype: int64)",
                where=f"layer '{n}'",
            )
        upstream_grad = any(l.requires_grad for l in in_layers)
        req = upstream_grad or s.has_params
        layers.append(Layer(
            spec=s, index=i, input_names=ins, input_shapes=shapes, output_shape=out, int_input=int_in,
            requires_grad=req, needs_input_grad=upstream_grad and n in in_bwd, in_backward=n in in_bwd,
            grad_consumers=consumers.get(n, 0) if req else 0,
        ))
        done[n] = layers[-1]
    return tuple(layers)


def _is_int(layer: Layer) -> bool:
    return layer.op == "input" and getattr(layer.spec, "dtype", "float") == "int64"
