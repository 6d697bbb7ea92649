"""to_module builders of the importer's op kinds (moe, elementwise, pad, slice): modules with the kind's
parameters and output shape, so graphs that use them run and train in PyTorch (to_module imports this)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..graph.layer_graph import Layer
from .to_module import _builds, _call


class MoEStandIn(nn.Module):
    """A token-choice mixture of experts: Linear router, softmax, top-k, experts D -> hidden -> D (gated: SiLU
    gate times up projection), outputs combined by the routing weights."""

    def __init__(self, d: int, experts: int, top_k: int, hidden: int, gated: bool, bias: bool, router_bias: bool):
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(d, experts, bias=router_bias)
        self.up = nn.ModuleList(nn.Linear(d, hidden * (2 if gated else 1), bias=bias) for _ in range(experts))
        self.down = nn.ModuleList(nn.Linear(hidden, d, bias=bias) for _ in range(experts))
        self.gated = gated

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        weights, idx = torch.topk(torch.softmax(self.router(flat), dim=-1), self.top_k, dim=-1)
        out = torch.zeros_like(flat)
        for e, (up, down) in enumerate(zip(self.up, self.down)):
            rows, slot = torch.where(idx == e)
            h = up(flat[rows])
            if self.gated:
                g, u = h.chunk(2, dim=-1)
                h = F.silu(g) * u
            else:
                h = F.gelu(h)
            out = out.index_add(0, rows, down(h) * weights[rows, slot, None])
        return out.reshape(x.shape)


@_builds("moe")
def _moe(l: Layer):
    s = l.spec
    return MoEStandIn(l.input_shapes[0][-1], s.experts, s.top_k, s.hidden, s.gated, s.bias, s.router_bias), _call


class ElementwiseStandIn(nn.Module):
    """The inputs broadcast and summed, times a constant (plus 0 x its parameters, so they get gradients)."""

    def __init__(self, shapes: list[tuple[int, ...]], params: int):
        super().__init__()
        self.rank = max(len(s) for s in shapes)
        self.weight = nn.Parameter(torch.ones(params)) if params else None

    def forward(self, *xs: Tensor) -> Tensor:
        y = None
        for x in xs:
            x = x.reshape(x.shape[0], *([1] * (self.rank + 1 - x.dim())), *x.shape[1:])
            y = x if y is None else y + x
        y = y * 1.5
        return y + 0 * self.weight.sum() if self.weight is not None else y


@_builds("elementwise")
def _elementwise(l: Layer):
    return ElementwiseStandIn(list(l.input_shapes), l.spec.params), _call


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
