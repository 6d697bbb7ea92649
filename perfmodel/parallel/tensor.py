"""Megatron-style tensor parallelism: split dense, attention and embedding layers over `tp` devices.

Sharding follows Shoeybi et al. 2019 (Megatron-LM), walking the layers in order and tracking
whether an activation is split along its hidden dimension:

- a dense layer whose input is whole is *column-parallel*: FLOPs and weights / tp, its output is
  split; backward all-reduces the gradient of its input (Megatron's `f`);
- a dense layer whose input is split is *row-parallel*: FLOPs and weights / tp, forward
  all-reduces its output (Megatron's `g`);
- attention splits its heads: QKV column-parallel, output projection row-parallel, so forward
  all-reduces the output and backward all-reduces the input gradient;
- an embedding is vocabulary-parallel: table / tp, forward all-reduces the output;
- elementwise ops (relu, gelu, tanh, sigmoid, dropout, ...) on a split activation stay split, work / tp;
- any other op reading a split activation first all-gathers it (forward) and runs replicated.

A transformer layer thus has 2 all-reduces of its activations in forward and 2 in backward.
Convolutions, recurrent layers and norms are replicated on every tensor-parallel rank.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import InputError
from ..graph.layer_graph import LayerGraph
from ..ops import OP_KINDS, STAGES, OpCost, tp_role
from ..ops.base import Work

# The sharding of an op kind is its declared tensor-parallel role (ops.tp_role, set by its cost rule).
SPLIT_ELEMENTWISE = frozenset(k for k in OP_KINDS if tp_role(k) == "elementwise")
# Embeddings with fewer rows than this (token types, segments) are replicated, as Megatron does.
VOCAB_PARALLEL_MIN_ROWS = 1024


@dataclass(frozen=True, slots=True)
class TPLayer:
    """How one layer is split and which activation collectives it needs per micro-batch."""

    split: bool = False
    fwd_allreduce_bytes: float = 0.0
    fwd_allgather_bytes: float = 0.0
    bwd_allreduce_bytes: float = 0.0
    role: str = "replicated"  # column, row, heads, vocab, elementwise, replicated


def tensor_parallel_layout(graph: LayerGraph, costs: tuple[OpCost, ...], tp: int) -> tuple[TPLayer, ...]:
    """Split decisions and activation collectives per layer (all empty when tp == 1)."""
    if tp <= 1:
        return tuple(TPLayer() for _ in graph.layers)
    out_bytes = {l.name: c.output_bytes for l, c in zip(graph.layers, costs)}
    sharded: dict[str, bool] = {}
    res = []
    for layer, c in zip(graph.layers, costs):
        ins = layer.input_names
        in_split = [n for n in ins if sharded.get(n)]
        in_bytes = sum(out_bytes[n] for n in ins)
        bwd_in = in_bytes if layer.needs_input_grad and layer.in_backward else 0.0
        role = tp_role(layer.op)
        if role == "linear":
            if in_split:
                res.append(TPLayer(True, fwd_allreduce_bytes=c.output_bytes, role="row"))
                sharded[layer.name] = False
            else:
                res.append(TPLayer(True, bwd_allreduce_bytes=bwd_in, role="column"))
                sharded[layer.name] = True
        elif role == "heads":
            if layer.spec.heads % tp:
                raise InputError(f"tp={tp} does not divide the {layer.spec.heads} heads of attention layer "
                                 f"'{layer.name}'; use a tensor-parallel degree that divides the heads")
            gather = sum(out_bytes[n] for n in in_split)
            res.append(TPLayer(True, fwd_allreduce_bytes=c.output_bytes, fwd_allgather_bytes=gather,
                               bwd_allreduce_bytes=bwd_in, role="heads"))
            sharded[layer.name] = False
        elif role == "vocab" and c.params and getattr(layer.spec, "vocab", 0) >= VOCAB_PARALLEL_MIN_ROWS:
            res.append(TPLayer(True, fwd_allreduce_bytes=c.output_bytes, role="vocab"))
            sharded[layer.name] = False
        elif role == "elementwise" and in_split and len(ins) == 1:
            res.append(TPLayer(True, role="elementwise"))
            sharded[layer.name] = True
        else:
            gather = sum(out_bytes[n] for n in in_split)
            res.append(TPLayer(False, fwd_allgather_bytes=gather))
            sharded[layer.name] = False
    return tuple(res)


def _split_work(w: Work, tp: int) -> Work:
    return w.split(tp)  # keeps the kernel class (efficiency key) and shape


def shard_cost(c: OpCost, t: TPLayer, tp: int) -> OpCost:
    """The cost one tensor-parallel rank pays for its slice of a split layer."""
    if not t.split or tp <= 1:
        return c
    out = c.output_bytes / tp if t.role in ("column", "elementwise") else c.output_bytes
    return replace(
        c, **{s: tuple(_split_work(w, tp) for w in c.stage(s)) for s in STAGES},
        params=-(-c.params // tp), saved_bytes=c.saved_bytes / tp, output_bytes=out,
        workspace_bytes=c.workspace_bytes / tp,
    )
