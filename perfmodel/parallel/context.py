"""Context parallelism (ring attention as Megatron-LM's context_parallel_size runs it, Liu et al. 2023).

cp ranks share one replica's samples: each holds 1/cp of every sequence (s/cp tokens), so every layer's work
and activations on a rank are 1/cp of the replica's (rank.rank_layers(cp=...)); parameters are whole on every
cp rank and their gradients are averaged over dp x cp ranks (plan.Plan.grad_ranks). Attention needs every
token's keys and values: the K/V chunks travel around a ring of the cp ranks in cp - 1 point-to-point steps,
each overlapped with the attention-core compute of the chunk already received (Megatron's double buffer).
Per attention layer and micro-batch, with K/V chunk bytes kv = 2 x output bytes / (cp x tp) (keys and values
of s/cp tokens over the rank's heads), the cp ring's hop bandwidth bw and latency alpha:

    forward:  (cp - 1) x max(0, alpha + kv / bw - core_fwd / cp)
    backward: (cp - 1) x max(0, alpha + 2 kv / bw - core_bwd / cp)   (K, V and their gradients dK, dV)

core_fwd / core_bwd: the layer's attention core on this rank (rank.attention_core), split evenly over the cp
steps (causal load balancing assumed). Assumes no other collective shares the ring's links and that
communication does not slow compute. The sequence length of every attention layer must divide by cp.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..graph.layer_graph import LayerGraph
from .rank import RankLayers, attention_core


def check_context(graph: LayerGraph, cp: int) -> None:
    """InputError unless `graph` has attention layers (a sequence model) whose sequence length divides by cp."""
    if cp <= 1:
        return
    att = [l for l in graph.layers if l.op == "attention"]
    if not att:
        raise InputError(f"context_parallel={cp} splits sequences over ranks; '{graph.name}' has no attention "
                         f"layer (use a sequence model, or context_parallel=1)")
    for l in att:
        t = l.input_shapes[0][0]
        if t % cp:
            raise InputError(f"context_parallel={cp} does not divide the sequence length {t} of layer {l.name}")


def kv_chunk_bytes(r: RankLayers, cp: int) -> np.ndarray:
    """Per layer: bytes of one K/V chunk a rank sends per ring step (keys and values of its s/cp tokens and its
    heads: 2 x the layer's output bytes x the rank's share, rank.RankLayers.scale); 0 for non-attention layers."""
    out = np.array([c.output_bytes for c in r.costs], dtype=float)
    share = r.scale if r.scale is not None else np.full(len(out), 1.0 / cp)
    att = np.array([c.extra.get("core_saved_bytes") is not None for c in r.costs], dtype=bool)
    return np.where(att, 2.0 * out * share, 0.0)


def ring_exposed(chunk_bytes: np.ndarray, compute_s: np.ndarray, cp: int, bandwidth_Bps: float,
                 latency_s: float) -> np.ndarray:
    """Per layer: exposed seconds of cp - 1 ring steps of `chunk_bytes`, each overlapped with compute_s / cp."""
    if cp <= 1:
        return np.zeros(len(chunk_bytes))
    step = np.where(chunk_bytes > 0, latency_s + chunk_bytes / bandwidth_Bps, 0.0)
    return (cp - 1) * np.maximum(0.0, step - compute_s / cp)


def cp_comm(graph: LayerGraph, r: RankLayers, cp: int, bandwidth_Bps: float, latency_s: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: exposed K/V ring seconds of forward and of backward per micro-batch (module doc)."""
    n = len(r.costs)
    core = attention_core(graph, r) if cp > 1 else None
    if core is None:
        return np.zeros(n), np.zeros(n)
    kv = kv_chunk_bytes(r, cp)
    return (ring_exposed(kv, core["forward"], cp, bandwidth_Bps, latency_s),
            ring_exposed(2.0 * kv, core["backward"], cp, bandwidth_Bps, latency_s))


__all__ = ["check_context", "cp_comm", "kv_chunk_bytes", "ring_exposed"]
