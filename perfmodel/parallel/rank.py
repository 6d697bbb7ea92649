"""One tensor-parallel rank's per-layer arrays: stage times, sizes and activation collectives; memoised.

One `RankLayers` per (graph, device, micro-batch, dtype, threads, tp) holds the per-layer, per-stage
times of the one vectorised work_time (perfmodel.engine.worktime) with the Megatron split of
perfmodel.parallel.tensor (split layers' FLOPs, bytes, parameters, saved activations and workspace / tp),
the AMP weight cast, and the per-layer sizes that memory and gradient synchronisation need. A single
device is tp = 1. Graphs, devices and costs are immutable, so the cache never goes stale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.layers import AMP_WEIGHT_CAST, LOWP, StageTime, cached, layer_table, param_tensors, stage_time
from ..engine.heap import host_fault_s, layer_heap_arrays, with_heap_refaults
from ..engine.rates import Rates, device_rates
from ..engine import memo
from ..engine.worktime import row_times, stage_times
from ..graph.layer_graph import LayerGraph
from ..hardware.schema import Device
from ..hardware.traits import device_traits
from ..ops import DTYPE_BYTES, OpCost
from ..engine.costs import layer_costs
from ..ops.attention import CORE_KEYS
from ..ops.base import Work
from . import collectives as C
from .data_parallel import GRAD_BYTES
from .experts import expert_rank_params
from .sequence import sequence_split
from .tensor import TPLayer, tensor_parallel_layout


@dataclass(frozen=True)
class RankLayers:
    """Per-layer arrays of one tensor-parallel rank at one (micro-batch, dtype, threads, tp) on a device."""

    device: Device
    batch: int
    dtype: str
    threads: int | None
    tp: int
    rates: Rates
    costs: tuple[OpCost, ...]  # unsplit per-layer costs at the micro-batch
    layout: tuple[TPLayer, ...]
    st: dict[str, np.ndarray]  # [n_layers, 3]: time, compute, memory, roof_compute, roof_memory, overhead
    params: np.ndarray  # per rank
    tensors: np.ndarray
    saved: np.ndarray
    output: np.ndarray
    workspace: np.ndarray
    is_input: np.ndarray
    cast: StageTime
    sp: bool = False  # Megatron sequence parallelism (parallel/sequence.py)
    scale: np.ndarray | None = None  # per layer: the share of its work this rank does (tensor/sequence split)
    cp: int = 1  # context-parallel ranks sharing each sequence (parallel/context.py)
    ep: int = 1  # expert-parallel ranks sharing each moe layer's experts (parallel/experts.py)
    expert_params: np.ndarray | None = None  # per layer: the experts' parameters this rank holds (ep > 1)
    sync_bytes: np.ndarray | None = None  # per layer: gradient bytes the data-parallel all-reduce prices (ep > 1)
    heap_s: np.ndarray | None = None  # per layer and stage: host page faults, included in st (engine.heap)

    @property
    def total_params(self) -> int:
        return int(self.params.sum())

    @property
    def total_tensors(self) -> int:
        return int(self.tensors.sum())

    @property
    def grad_sync_bytes(self) -> np.ndarray:
        """Per layer: gradient bytes in the data-parallel buckets (`sync_bytes`, else params x GRAD_BYTES)."""
        return self.sync_bytes if self.sync_bytes is not None else (self.params * GRAD_BYTES).astype(float)

    @property
    def fwd(self) -> np.ndarray:
        return self.st["time"][:, 0]

    @property
    def bwd(self) -> np.ndarray:
        return self.st["time"][:, 1] + self.st["time"][:, 2]


def rank_layers(graph: LayerGraph, device: Device, batch: int, dtype: str, threads: int | None = None,
                tp: int = 1, sp: bool = False, cp: int = 1, ep: int = 1) -> RankLayers:
    """Per-layer arrays of one tensor-parallel rank of `graph` on `device` (memoised per graph);
    `sp`: sequence parallelism splits norm/dropout/residual layers over tp (sequence.sequence_split);
    `cp`: context parallelism gives the rank 1/cp of every sequence (context.cp_split); `ep`: the rank holds
    1/ep of every moe layer's experts (experts.expert_rank_params)."""
    key = (id(device), batch, dtype, threads, tp) + ((True,) if sp else ()) + ((("cp", cp),) if cp > 1 else ()) \
        + ((("ep", ep),) if ep > 1 else ())
    hit = cached(graph, "_engine_ranks", key,
                 lambda: (device, _rank_layers(graph, device, batch, dtype, threads, tp, sp, cp, ep)))
    if hit[0] is not device:  # an id reused by another device object
        graph.__dict__["_engine_ranks"].pop(key)
        return rank_layers(graph, device, batch, dtype, threads, tp, sp, cp, ep)
    return hit[1]


def _rank_layers(graph: LayerGraph, device: Device, batch: int, dtype: str, threads: int | None,
                 tp: int, sp: bool = False, cp: int = 1, ep: int = 1) -> RankLayers:
    r = device_rates(device, dtype, threads)
    costs = layer_costs(graph, batch, DTYPE_BYTES[dtype])
    table = layer_table(graph, costs, r.elementwise is not None or r.stage_factors is not None)
    layout = tensor_parallel_layout(graph, costs, tp)
    params = np.array([c.params for c in costs], dtype=np.int64)
    saved, output, is_input = layer_heap_arrays(graph, device, costs)  # saved: a flash kernel keeps no core
    memory_saved = saved  # before a split scales it (engine.heap.heap_saved)
    workspace = np.array([c.workspace_bytes for c in costs], dtype=float)
    scale = None
    if tp > 1:
        split = np.array([t.split for t in layout], dtype=bool)
        scale = np.where(split, 1.0 / tp, 1.0)
        params = np.where(split, -(-params // tp), params)
        saved = np.where(split, saved / tp, saved)
        out_split = np.array([t.split and t.role in ("column", "elementwise") for t in layout], dtype=bool)
        output = np.where(out_split, output / tp, output)
        workspace = np.where(split, workspace / tp, workspace)
        seq = np.array(sequence_split([l.op for l in graph.layers], split.tolist(), tp, sp), dtype=bool)
        if seq.any():
            scale, saved = np.where(seq, 1.0 / tp, scale), np.where(seq, saved / tp, saved)
            output, workspace = np.where(seq, output / tp, output), np.where(seq, workspace / tp, workspace)
    if cp > 1:  # every layer's work and activations are per token: 1/cp of them (parameters are whole)
        scale = (np.ones(len(costs)) if scale is None else scale) / cp
        saved, output, workspace = saved / cp, output / cp, workspace / cp
    expert = None
    if ep > 1:  # expert parallelism: the rank keeps the routers and 1/ep of the experts
        params, expert = expert_rank_params(graph, params, ep)
    heap_s = host_fault_s(saved, output, is_input, costs, r, memory_saved)
    st = with_heap_refaults(stage_times(table, r, scale), heap_s)
    tensors = np.array([param_tensors(c) for c in costs], dtype=np.int64)
    total = int(params.sum())
    if AMP_WEIGHT_CAST and dtype in LOWP and total:
        cast = stage_time((Work("memory", flops=0.0, bytes_read=4.0 * total, bytes_written=float(DTYPE_BYTES[dtype] * total),
                                kernels=max(1, int(tensors.sum()))),), r)
    else:
        cast = StageTime()
    return RankLayers(device, batch, dtype, threads if device_traits(device).thread_model == "cores" else None, tp, r, costs, layout, st, params,
                      tensors, saved, output, workspace, is_input, cast, sp and tp > 1, scale, cp, ep, expert,
                      heap_s=heap_s)


def tp_comm(ranks: RankLayers, bandwidth_Bps: float, latency_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: the tensor-parallel activation collectives of forward and of backward on one tier (s)."""
    n = len(ranks.layout)
    f, b = np.zeros(n), np.zeros(n)
    tp = ranks.tp
    if tp <= 1:
        return f, b
    memo: dict[tuple[str, float], float] = {}

    def coll(kind: str, x: float) -> float:
        v = memo.get((kind, x))
        if v is None:
            fn = C.ring_allreduce if kind == "ar" else C.all_gather
            v = memo[(kind, x)] = fn(x, tp, bandwidth_Bps, latency_s)
        return v

    for i, t in enumerate(ranks.layout):
        f[i] = coll("ar", t.fwd_allreduce_bytes) + coll("ag", t.fwd_allgather_bytes)
        b[i] = coll("ar", t.bwd_allreduce_bytes)
    return f, b


CORE_BACKWARD_KEYS = ("attention/chain", "elementwise/softmax/attention", "elementwise/dropout")


def attention_core(graph: LayerGraph, r: RankLayers) -> dict[str, np.ndarray] | None:
    """Per layer on rank `r`, seconds per micro-batch of the attention core (memoised; None without attention):
    its forward Work (ops.attention.CORE_KEYS: scores, softmax, dropout, probs x V) as `roof_compute`,
    `roof_memory`, `overhead` and their sum `forward`, and its backward (`backward`: the chain of bmm gradients,
    whose dCtx GEMM is included, softmax and dropout backward). 0 for other layers."""
    def build():
        keyed = r.rates.elementwise is not None or r.rates.stage_factors is not None
        table = layer_table(graph, r.costs, keyed)
        att = np.array([l.op == "attention" and l.in_backward for l in graph.layers], dtype=bool)[table.layer]
        keys = np.array(table.keys, dtype=object)
        fwd = att & (table.stage == 0) & np.isin(keys, CORE_KEYS)
        if not fwd.any():
            return None
        bwd = att & (table.stage > 0) & np.isin(keys, CORE_BACKWARD_KEYS)
        w = row_times(table, r.rates, r.scale)
        cb = w["compute"] >= w["memory"]
        n = len(graph.layers)

        def per_layer(rows, v):
            return np.bincount(table.layer[rows], weights=v[rows], minlength=n)

        out = {"roof_compute": per_layer(fwd, np.where(cb, w["roof"], 0.0)),
               "roof_memory": per_layer(fwd, np.where(cb, 0.0, w["roof"])), "overhead": per_layer(fwd, w["overhead"])}
        out["forward"] = out["roof_compute"] + out["roof_memory"] + out["overhead"]
        out["backward"] = per_layer(bwd, w["time"])
        return out

    return memo.on(r, ("attention_core",), build, refs=(graph,))
