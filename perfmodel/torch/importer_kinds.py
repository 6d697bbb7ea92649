"""to_module builders of the importer's op kinds (moe, elementwise, pad, slice): modules with the kind's
parameters and output shape, so graphs that use them run and train in PyTorch (to_module imports this)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph.layer_graph import Layer
from .to_module import _builds, _call


class _Expert(nn.Module):
    """One expert D -> hidden -> D: (gate,) up and down projections (gated: SiLU(gate x) * up x, else gelu)."""

    def __init__(self, d: int, hidden: int, gated: bool, bias: bool):
        super().__init__()
        self.gate = nn.Linear(d, hidden, bias=bias) if gated else None
        self.up = nn.Linear(d, hidden, bias=bias)
        self.down = nn.Linear(hidden, d, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.gate(x)) * self.up(x) if self.gate is not None else F.gelu(self.up(x))
        return self.down(h)


class MoEStandIn(nn.Module):
    """A token-choice mixture of experts: Linear router, softmax, top-k, experts D -> hidden -> D (gated: SiLU
    gate times up projection), outputs combined by the routing weights. Laid out as the importer recognises a
    block (`router`, `experts`, `top_k`: perfmodel/torch/importer/moe.py), so it imports back as one moe layer."""

    def __init__(self, d: int, experts: int, top_k: int, hidden: int, gated: bool, bias: bool, router_bias: bool):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d, experts, bias=router_bias)
        self.experts = nn.ModuleList(_Expert(d, hidden, gated, bias) for _ in range(experts))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, idx = torch.topk(torch.softmax(self.router(flat), dim=-1), self.top_k, dim=-1)
        if flat.is_meta:  # routing needs the values (torch.where); on 'meta' only the shape is asked for
            return (flat + weights.sum(-1, keepdim=True) * 0).reshape(x.shape)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.where(idx == e)
            out = out.index_add(0, rows, expert(flat[rows]) * weights[rows, slot, None])
        return out.reshape(x.shape)


@_builds("moe")
def _moe(l: Layer):
    s = l.spec
    m = MoEStandIn(l.input_shapes[0][-1], s.experts, s.top_k, s.hidden, s.gated, s.bias, s.router_bias)
    m.capacity_factor = s.capacity_factor  # runs dropless; kept so that importing the module gives the spec back
    return m, _call


class ElementwiseStandIn(nn.Module):
    """The inputs broadcast and summed, times a constant (plus 0 x its parameters, so they get gradients)."""

    perfmodel_kind = "elementwise"  # the importer maps this module back to one elementwise layer

    def __init__(self, shapes: list[tuple[int, ...]], params: int, fn: str = "elementwise",
                 flops_per_element: float = 1.0):
        super().__init__()
        self.fn, self.flops_per_element = fn, flops_per_element
        rank = max(len(s) for s in shapes)
        self.targets = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]  # per-sample shapes left-padded with 1s
        self.weight = nn.Parameter(torch.ones(params)) if params else None

    def forward(self, *xs: Tensor) -> Tensor:
        y = None
        for x, target in zip(xs, self.targets):  # static shapes: fx traces this without iterating a Proxy
            x = x.reshape(-1, *target)
            y = x if y is None else y + x
        y = y * 1.5
        return y + 0 * self.weight.sum() if self.weight is not None else y


@_builds("elementwise")
def _elementwise(l: Layer):
    s = l.spec
    return ElementwiseStandIn(list(l.input_shapes), s.params, s.fn, s.flops_per_element), _call


class PadStandIn(nn.Module):
    """Zero padding to the output shape, plus 0 x its learned fill (so the fill gets gradients)."""

    def __init__(self, pads: list[int], params: int):
        super().__init__()
        self.pads = pads
        self.weight = nn.Parameter(torch.zeros(params)) if params else None

    def forward(self, x: Tensor) -> Tensor:
        y = F.pad(x, self.pads)
        return y + 0 * self.weight.sum() if self.weight is not None else y


@_builds("pad")
def _pad(l: Layer):
    pads = []
    for i, o in zip(reversed(l.input_shapes[0]), reversed(l.output_shape)):
        pads += [0, o - i]
    return PadStandIn(pads, l.spec.params), _call


@_builds("slice")
def _slice(l: Layer):
    out = tuple(l.output_shape)
    n = math.prod(out)
    return None, lambda m, x: x.flatten(1)[:, :n].reshape(-1, *out)
