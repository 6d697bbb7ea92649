"""Expert parallelism of mixture-of-experts layers (the `moe` op kind): pure functions.

Convention (Megatron-LM / DeepSpeed-MoE): the `expert_parallel` (ep) ranks of one expert-parallel group are
carved out of the data-parallel group. Rules (`check_expert_parallel`): ep divides dp, ep divides the experts
of every moe layer, the network has a moe layer when ep > 1, synchronous training, no hybrid FSDP sharding
(ZeRO 1-3 and FSDP full are modelled), no parameter server, no context parallelism, and the group lies within
whole nodes (ep divides or is a multiple of the data-parallel ranks on a node). Ranks are numbered replica-major (parallel/plan.py), so an
expert-parallel group is ep consecutive data-parallel replicas of the same (pipeline stage, tensor rank):
inside a node as long as ep <= the replicas per node, else spread over ep / (replicas per node) nodes.

Per rank and moe layer (E experts, D width, top_k, capacity factor c, t tokens of one micro-batch, b bytes):
- parameters: the router (D E, replicated) + E / ep experts (`expert_rank_params`); memory, optimizer step
  and the AMP cast follow from that count;
- compute: unchanged (the E / ep local experts receive the tokens of all ep ranks: t top_k c slots per rank,
  as without expert parallelism; ops/moe.py costs them, router GEMM and softmax/top-k included);
- communication: an all-to-all dispatch and an all-to-all combine in forward, and both again in backward,
  each of a rank's buffer of t top_k c D b bytes (`dispatch_bytes`), priced by the registered `all-to-all`
  collective of parallel/collectives.py over the tiers the group spans (composed per tier, "hierarchical");
  every device of a node runs its group's all-to-all at the same time, so the node's network is shared by all
  of them (`group_tiers`). The iteration shows them as the part `expert_comm` (parallel/iteration.py); a
  layer recomputed in backward runs its forward all-to-alls again;
- gradient synchronisation: the router and every non-expert layer all-reduce over the dp replicas; each
  expert's gradients all-reduce over its dp / ep replicas only (the expert-data-parallel group, stride ep).
  The expert gradients ride in the same DDP buckets: their bytes are scaled by `expert_sync_ratio` = (time
  of that all-reduce over dp / ep ranks) / (time over dp ranks) at the experts' total gradient bytes, exact in
  the bandwidth term, the latency term approximated at that size.
- ZeRO / FSDP sharding (Megatron-LM's and DeepSpeed-MoE's convention): the dense parameters' state is sharded
  over the dp replicas, each expert's over its dp / ep replicas (the expert-data-parallel group that holds the
  same experts). A stage's model-state terms, linear in its parameters, are then divided by `state_shards`
  (P / (P_dense / dp + P_expert / (dp / ep))); the ZeRO collectives of expert layers (reduce-scatter, all-gather)
  run over the expert-data-parallel group, priced by the same `expert_sync_ratio` as their all-reduce (exact for
  ring collectives, whose reduce-scatter and all-gather are each half an all-reduce).

Not modelled: load imbalance beyond the capacity factor (routing is uniform in expectation), token dropping's
effect on accuracy, expert tensor parallelism (with tp > 1 a moe layer is replicated on the tensor-parallel
ranks, as every op without a tensor-parallel role), overlap of the all-to-all with compute (it is exposed on
the critical path, like the tensor-parallel collectives), the change of the expert GEMM shapes (E / ep GEMMs of
ep x the rows) on their efficiency.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..graph.layer_graph import Layer, LayerGraph
from ..ops.base import numel
from ..ops.moe import expert_slots, moe_params
from . import collectives as C

A2A_PER_PASS = 2  # dispatch + combine, in forward and again in backward
EP_TIER_ALGORITHM = "hierarchical"  # the all-to-all composed over the tiers the group spans


def moe_layers(graph: LayerGraph) -> tuple[Layer, ...]:
    """The graph's moe layers (in order)."""
    return tuple(l for l in graph.layers if l.op == "moe")


def split_params(layer: Layer) -> tuple[int, int]:
    """(router parameters, expert parameters) of a moe layer (ops/moe.moe_params, router part alone)."""
    s = layer.spec
    d = layer.input_shapes[0][-1]
    total = moe_params(d, s.experts, s.hidden, s.gated, s.bias, s.router_bias)
    router = d * s.experts + (s.experts if s.router_bias else 0)
    return router, total - router


def active_params(graph: LayerGraph, params: Sequence[int]) -> int:
    """Parameters one token uses: `params` per layer, a moe layer counting its router and top_k of its experts."""
    total = 0
    for l, p in zip(graph.layers, params):
        if l.op == "moe" and p:
            router, experts = split_params(l)
            p = router + experts * l.spec.top_k // l.spec.experts
        total += int(p)
    return total


def check_expert_parallel(graph: LayerGraph, ep: int, dp: int, dp_per_node: int, *, sharding: str = "none",
                          sync: str = "sync", allreduce: str = "ring", cp: int = 1) -> None:
    """Raise InputError naming expert_parallel when the rules of the module docstring do not hold."""
    if ep < 1 or int(ep) != ep:
        raise InputError(f"expert_parallel must be a positive integer, got {ep!r}")
    if ep == 1:
        return
    layers = moe_layers(graph)
    if not layers:
        raise InputError(f"expert_parallel={ep} needs a network with mixture-of-experts (moe) layers; "
                         f"{graph.name} has none")
    if dp % ep:
        raise InputError(f"expert_parallel={ep} must divide the data-parallel degree dp={dp} (expert-parallel "
                         f"groups are carved out of the data-parallel replicas)")
    for l in layers:
        if l.spec.experts % ep:
            raise InputError(f"expert_parallel={ep} must divide the {l.spec.experts} experts of moe layer '{l.name}'")
    if dp_per_node % ep and ep % dp_per_node:
        raise InputError(f"expert_parallel={ep} must divide, or be a multiple of, the {dp_per_node} data-parallel "
                         f"replicas on a node (an expert-parallel group spans whole nodes or part of one)")
    if sharding == "hybrid":
        raise InputError(f"expert_parallel={ep} with sharding='hybrid' is not modelled yet (zero=0-3 and "
                         f"sharding='none' or 'full' are)")
    if sync != "sync":
        raise InputError(f"expert_parallel={ep} needs sync='sync' (got {sync!r})")
    if allreduce == "ps":
        raise InputError(f"expert_parallel={ep} with allreduce='ps' is not modelled (use an all-reduce algorithm)")
    if cp > 1:
        raise InputError(f"expert_parallel={ep} with context_parallel={cp} is not modelled yet (context_parallel=1 is)")


def expert_rank_params(graph: LayerGraph, params: np.ndarray, ep: int) -> tuple[np.ndarray, np.ndarray]:
    """(parameters per rank, expert parameters per rank) per layer: a moe layer keeps its router and
    experts / ep of its experts (`params` as the rank holds them without expert parallelism)."""
    out = np.array(params, dtype=np.int64, copy=True)
    expert = np.zeros(len(out), dtype=np.int64)
    for l in moe_layers(graph):
        router, experts = split_params(l)
        if out[l.index] != router + experts:  # e.g. sharing another layer's parameters: nothing of its own
            continue
        expert[l.index] = experts // ep
        out[l.index] = router + expert[l.index]
    return out, expert


def sync_bytes(params: np.ndarray, expert_params: np.ndarray, ratio: float, grad_bytes: float) -> np.ndarray:
    """Per layer: gradient bytes priced by the data-parallel all-reduce, expert parameters scaled by `ratio`."""
    return (np.asarray(params, dtype=float) + np.asarray(expert_params, dtype=float) * (ratio - 1.0)) * grad_bytes


def state_shards(params: float, expert_params: float, dp: int, ep: int) -> float:
    """Ranks the model state of `params` parameters (`expert_params` of them in experts) is sharded over, in
    effect: the dense part over dp, the experts over their dp / ep replicas (module docstring); dp when no
    parameter is an expert's, and 1 when there are no parameters."""
    if params <= 0:
        return 1.0
    per_rank = (params - expert_params) / dp + expert_params / max(1, dp // ep)
    return params / per_rank


def expert_sync_ratio(n_bytes: float, dp_fn: Callable[[float], float], edp_fn: Callable[[float], float]) -> float:
    """(all-reduce of n_bytes over the expert-data-parallel group) / (over the data-parallel group); 0 when the
    expert-data-parallel group is one rank or nothing is synchronised."""
    if n_bytes <= 0:
        return 0.0
    full = dp_fn(n_bytes)
    return edp_fn(n_bytes) / full if full > 0 else 0.0


def ep_layout(ep: int, dp: int, dp_per_node: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((ranks per node, nodes) of an expert-parallel group, (ranks per node, nodes) of an expert-data-parallel
    group): ep consecutive replicas; the expert-data-parallel group takes every ep-th replica."""
    ep_in = min(ep, dp_per_node)
    ep_nodes = max(1, ep // dp_per_node)
    edp = dp // ep
    edp_in = max(1, dp_per_node // ep)
    return (ep_in, ep_nodes), (edp_in, max(1, edp // edp_in))


def group_tiers(system, ranks_per_node: int, nodes: int, devices_per_node: int) -> tuple[C.Tier, ...]:
    """The tiers a group spans when every device of a node takes part in one such group at the same time
    (collectives.system_tiers: the node's network is shared by all its devices)."""
    return C.system_tiers(system, ranks_per_node, nodes, max(1, devices_per_node // max(1, ranks_per_node)))


def dispatch_bytes(layer: Layer, batch: int, dtype_bytes: float) -> float:
    """Bytes of one rank's all-to-all buffer of a moe layer at `batch` samples: tokens x top_k x capacity x D x b."""
    x = layer.input_shapes[0]
    tokens = batch * numel(x[:-1])
    return expert_slots(tokens, layer.spec) * x[-1] * dtype_bytes


def all_to_all_s(n_bytes: float, tiers: Sequence[C.Tier]) -> float:
    """One all-to-all of a rank's n-byte buffer over `tiers` (the registered all-to-all, composed per tier)."""
    return C.collective_time("all-to-all", n_bytes, tiers, EP_TIER_ALGORITHM)


def expert_comm(graph: LayerGraph, batch: int, dtype_bytes: float, ep: int, tiers: Sequence[C.Tier],
                token_share: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: the all-to-all seconds of forward and of backward per micro-batch (dispatch + combine each) of a
    rank holding `token_share` of its replica's tokens."""
    n = len(graph.layers)
    f = np.zeros(n)
    if ep <= 1:
        return f, f.copy()
    for l in moe_layers(graph):
        f[l.index] = A2A_PER_PASS * all_to_all_s(dispatch_bytes(l, batch, dtype_bytes) * token_share, tiers)
    return f, f.copy()
