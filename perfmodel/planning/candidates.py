"""Plan-search candidates: enumerate the space, prune, and time the survivors by the one path of predict.

Every candidate that is timed goes through perfmodel.parallel.predict.evaluate with the TrainingSetup its PlanRow
carries, so a plan's time, parts and memory are predict()'s by construction. Pruning, none of which can remove a
plan that would rank in the top k:

1. static memory: 1/pp of the rank's weights, gradients and optimizer state (sharded as the ZeRO stage / FSDP mode
   says, over at most dp ranks, experts over dp / ep; a rank holds 1/ep of the experts; stage 3 with a pipeline
   keeps the stage's gradients whole and its parameters gathered) plus the runtime reserve already exceed the
   limit: the fullest stage cannot fit. Expert-parallel degrees that do not divide dp are not plan shapes;
2. dominated twins: zero=0 when zero=1 is searched and dp > 1 (never slower: the same gradient volume, each rank
   steps at most its share; the optimizer state sharded: less memory); any sharding mode with dp = 1 but the first (nothing to shard over); sequence_parallel=False when True
   is searched and tp > 1 (the same collective volume; norm, dropout and residual work and activations split by tp);
   tp_overlap=False when True is searched (it exists with tp > 1, sequence parallelism and overlap on,
   overlap.check_tp_overlap), pp = 1 and activations are not offloaded: every layer's tensor-parallel seconds
   become comm - h + s h <= comm (h hidden, s < 1 the stack's slowdown, overlap.tp_overlapped), the memory is the
   same; tests/test_overlap.py checks the iteration is never slower. Both are timed with a pipeline (the shorter
   layers may move the stage cut and put more memory on the fullest stage) and with offload (the offload copies
   and FSDP's gathers each hide behind the same, now shorter, compute: their exposures may grow by more);
3. a time bound: a plan whose lower bound (below) exceeds the k-th best time found so far is not timed; a
   tp_overlap=False plan is never faster than its tp_overlap=True twin (without offload, or with it and no
   ZeRO-3 / FSDP gathers: tests/test_overlap.py), so once that twin is timed its time is the bound (twins with
   overlap are enumerated, and so timed, first).
   Candidates sharing a stage cut are timed together, cuts in ascending order of their bound.

Lower bound of an iteration (parallel/pipeline.py's 1F1B / GPipe time and parallel/interleaved.py's): with C the
rank's forward + backward work per micro-batch (per-layer times before tensor-parallel collectives, the AMP weight
cast, the recomputed forward of full recomputation), every cut has a stage of at least C / pp, so
    T >= k [ (m - 1/v) C / pp + C / v ]
for m micro-batches, v virtual stages and k gradient-accumulation steps; every other part of the iteration is >= 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine import memo
from ..errors import InputError
from ..graph.layer_graph import LayerGraph
from ..hardware.topology import System, resolve_system
from ..ops import DTYPE_BYTES
from ..ops.base import graph_costs
from ..optimizers import MASTER_BYTES, optimizer_state_bytes
from ..engine.layers import LOWP
from ..parallel import experts as X
from ..parallel.overlap import overlap_facts
from ..parallel.predict import _run_device, evaluate
from ..parallel.rank import rank_layers
from ..parallel.sharding import zero_stage
from ..parallel.sequence import SP_OPS
from ..parallel.stages import recompute_info
from ..parallel.tensor import tensor_parallel_layout
from ..prediction.setup import make_setup
from .explain import TIE_REL
from .space import microbatch_options, state_modes, tp_options, virtual_options

MEMORY_TERMS = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "workspace_bytes",
                "reserved_bytes")
OPTION_DEFAULTS = {"zero": 0, "sharding": "none", "sequence_parallel": False, "context_parallel": 1,
                   "offload_activations": False, "expert_parallel": 1, "virtual_stages": 1, "pipeline": False,
                   "recompute": "none", "tp_overlap": False}  # predict()'s defaults (a pipeline: pp > 1)
SEARCH_MEMO_ENTRIES = 20_000  # memo.on entries kept during a search (stage cuts reused by their variants)


@dataclass
class Space:
    """The values searched per dimension (already restricted to what the engine models)."""

    dtypes: list
    recompute: list
    schedules: list
    tp: list | None
    pp: list | None
    microbatch: list | None
    zero: list
    sharding: list
    sequence_parallel: list
    virtual_stages: list | None
    context_parallel: list
    offload_activations: list
    expert_parallel: list
    tp_overlap: list = field(default_factory=lambda: [False])


@dataclass
class Search:
    """What one search shares: graph, hardware, the options every plan keeps, limits, counts and memo tables."""

    graph: LayerGraph
    hw: Any
    system: System
    base: Any  # TrainingSetup with the options every candidate shares
    shared: dict[str, Any]  # its non-default options (but the optimizer), copied into every PlanRow.setup
    limit: float
    price: float | None
    params_full: int
    tokens_per_sample: int | None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("candidates", "pruned", "dominated", "bounded", "dropped", "skipped"), 0))
    not_modelled: dict[str, str] = field(default_factory=dict)
    memo: dict = field(default_factory=dict)

    def get(self, key: tuple, build):
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = build()
        return hit


@dataclass(frozen=True)
class Candidate:
    """One plan of the space: degrees, micro-batching and every option; `cut` groups those sharing a stage cut."""

    n_dev: int
    tp: int
    pp: int
    dp: int
    mb: int
    m_total: int
    dtype: str
    recompute: str
    schedule: str | None
    options: tuple[tuple[str, Any], ...]  # zero, sharding, sequence_parallel, virtual_stages, ...
    bound: float

    @property
    def cut(self) -> tuple:
        opts = dict(self.options)
        return (self.n_dev, self.tp, self.pp, self.dp, self.mb, self.dtype, self.recompute, self.schedule,
                opts.get("sequence_parallel", False), opts.get("context_parallel", 1), opts.get("expert_parallel", 1),
                opts.get("offload_activations", False), opts.get("tp_overlap", False))


# ---------------------------------------------------------------------------------------------
# pruning before timing


def _split_params(S: Search, tp: int) -> int:
    """Parameters per tensor-parallel rank (the split flags do not depend on the batch)."""
    def build():
        c1 = graph_costs(S.graph, 1, 4)
        if tp == 1:
            return S.params_full
        lay = tensor_parallel_layout(S.graph, c1, tp)
        return sum(-(-c.params // tp) if x.split else c.params for c, x in zip(c1, lay))

    return S.get(("split_params", tp), build)


def _expert_params(S: Search) -> int:
    """Parameters of the network's experts (experts.split_params of every moe layer; routers excluded)."""
    return S.get(("expert_params",), lambda: sum(X.split_params(l)[1] for l in X.moe_layers(S.graph)))


def static_bytes(S: Search, tp: int, pp: int, dp: int, dtype: str, zero: int = 0, sharding: str = "none",
                 ep: int = 1) -> float:
    """A lower bound of the fullest stage's memory: 1/pp of the rank's weights (+ AMP copy), gradients and optimizer
    state, sharded over dp ranks as the ZeRO stage says (hybrid: over at most dp; the experts' share over dp / ep,
    experts.state_shards), plus the runtime reserve; with ep > 1 the rank holds 1/ep of the experts. Stage 3 with a
    pipeline keeps the stage's gradients whole and its parameters gathered (sharding.pipelined_terms)."""
    stage = zero_stage(zero, sharding) if sharding != "hybrid" else 3
    n = dp if dp > 1 else 1
    experts = _expert_params(S) * (1 - 1 / ep) if ep > 1 else 0.0
    rank = _split_params(S, tp) - experts
    shards = X.state_shards(rank, _expert_params(S) / ep, n, ep) if ep > 1 else n
    sp = rank / pp
    weights = sp * (MASTER_BYTES + (DTYPE_BYTES[dtype] if dtype in LOWP else 0)) / (shards if stage >= 3 else 1)
    piped = stage >= 3 and pp > 1 and n > 1
    alone = _expert_params(S) / ep if ep > 1 and n // ep <= 1 else 0.0  # experts no rank shares: never gathered
    weights += (rank - alone) / pp * DTYPE_BYTES[dtype] if piped else 0.0
    grads = sp * MASTER_BYTES / (shards if stage >= 2 and not piped else 1)
    opt = optimizer_state_bytes(S.base.optimizer, 1) * sp / (shards if stage >= 1 else 1)
    return weights + grads + opt + S.system.device.runtime_reserved_bytes


def _modes(S: Search, space: Space, tp: int, pp: int, dp: int, dtype: str, ep: int = 1
           ) -> tuple[list[tuple[int, str]], int, int]:
    """(state modes worth timing, modes dominated, modes too large by static memory) for one plan shape and expert
    parallel degree; `dp`: the ranks gradients are reduced over (data x context parallel)."""
    modes = state_modes(space.zero, space.sharding)
    keep, dominated, pruned = [], 0, 0
    for i, x in enumerate(modes):
        if (dp == 1 and i > 0) or (dp > 1 and x == (0, "none") and (1, "none") in modes):
            dominated += 1
        elif static_bytes(S, tp, pp, dp, dtype, *x, ep=ep) > S.limit:
            pruned += 1
        else:
            keep.append(x)
    return keep, dominated, pruned


def system_for(S: Search, n_dev: int) -> System:
    """The resolved system of n_dev devices, memoised the way perfmodel.parallel.evaluate does (shared with it)."""
    fmt = S.base.memory_format
    return memo.on(S.hw, ("system", n_dev, None, fmt),
                   lambda: resolve_system(S.hw, devices=n_dev).with_p2p(None).with_memory_format(fmt))


def _work(S: Search, n_dev: int, per: int, mb: int, dtype: str, tp: int, sp: bool, recompute: str, ep: int = 1
          ) -> float:
    """C of the module docstring: one rank's forward + backward per micro-batch, a lower bound of the stage sums
    (`ep`: the rank holds 1/ep of the experts, which changes only its AMP weight cast)."""
    def build():
        dev = _run_device(system_for(S, n_dev), per, None, [])[0]
        r = rank_layers(S.graph, dev, mb, dtype, None, tp, sp, ep=ep)
        c = float(r.fwd.sum() + r.bwd.sum()) + r.cast.time_s
        rc = recompute_info(S.graph) if recompute == "full" else None
        return c + (float(r.fwd[rc.layers].sum()) if rc is not None else 0.0)

    return S.get(("work", n_dev, per, mb, dtype, tp, sp, recompute, ep), build)


def _split_mask(S: Search, tp: int) -> np.ndarray:
    """Per layer: True when a tp-rank does 1/tp of its work (tensor-split, or a norm / dropout / residual layer that
    sequence parallelism may split); the split flags do not depend on the batch."""
    def build():
        if tp == 1:
            return np.zeros(len(S.graph.layers), dtype=bool)
        lay = tensor_parallel_layout(S.graph, graph_costs(S.graph, 1, 4), tp)
        return np.array([x.split or l.op in SP_OPS for l, x in zip(S.graph.layers, lay)], dtype=bool)

    return S.get(("split_mask", tp), build)


def _roofline_work(S: Search, mb: int, dtype: str, tp: int, recompute: str) -> float:
    """A lower bound of C without timing a layer: the rank's forward + backward FLOPs (_split_mask layers / tp, the
    recomputed forward of full recomputation) at the dtype's peak rate."""
    def arrays():
        costs = graph_costs(S.graph, mb, 2)  # FLOPs do not depend on the element size
        fwd = np.array([c.flops("forward") for c in costs])
        return fwd, fwd + np.array([c.flops("backward_data") + c.flops("backward_weight") for c in costs])

    def flops():
        fwd, work = S.get(("flops", mb), arrays)
        rc = recompute_info(S.graph) if recompute == "full" else None
        if rc is not None:
            work = work + np.where(rc.layers, fwd, 0.0)
        return float(np.where(_split_mask(S, tp), work / tp, work).sum())

    return S.get(("roofline", mb, tp, recompute), flops) / S.system.device.peak(dtype)


def lower_bound(c: float, pp: int, m: int, v: int, k_acc: int) -> float:
    """k [ (m - 1/v) C / pp + C / v ]: no cut, schedule or communication makes the iteration shorter."""
    return k_acc * ((m - 1.0 / v) * c / pp + c / v)


# ---------------------------------------------------------------------------------------------
# enumeration


def _option_sets(space: Space, tp: int, modes: list, ep: int, tpos: tuple[list, bool] = ([False], False),
                 pp: int = 1) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the options beyond the plan shape (but virtual stages) for one tp and expert degree;
    `tpos`: tp_overlap_values (tp_overlap only where it exists: with sequence parallelism, tp > 1)."""
    sps = [False] if tp == 1 else ([True] if True in space.sequence_parallel else [False])

    def tp_overlaps(sp: bool, off: bool) -> list[bool]:
        vals, twin = tpos
        return [False] if not sp else ([True] if twin and not off and pp == 1 else vals)

    return [(("zero", z), ("sharding", sh), ("sequence_parallel", sp), ("offload_activations", off),
             ("expert_parallel", ep), ("tp_overlap", tpo))
            for z, sh in modes for sp in sps for off in space.offload_activations
            for tpo in sorted(tp_overlaps(sp, off), reverse=True)]  # True first: its time bounds the False twin


def tp_overlap_values(S: Search, space: Space) -> tuple[list[bool], bool]:
    """(tp_overlap values to time where it exists, whether off is on's dominated twin without offload): only False
    without overlap or when the device's stack already overlaps tensor-parallel communication (the twins agree)."""
    if not S.base.overlap or overlap_facts(S.system.device).tp_comm:
        return [False], False
    return list(space.tp_overlap), set(space.tp_overlap) == {False, True}


def _tpo_twin(o: dict[str, Any]) -> bool:
    """Whether an option set (pp = 1) hides a dominated tp_overlap=False twin (tp_overlap_values: both searched)."""
    return o["sequence_parallel"] and not o["offload_activations"] and o["tp_overlap"]


def _shapes(S: Search, space: Space, n_dev: int, global_batch: int, pp_all: list[int]):
    """(tp, pp, cp, dp, micro-batch, micro-batches) of n_dev = dp tp pp cp devices splitting the global batch evenly
    over the dp replicas (context-parallel ranks share their replica's samples)."""
    per_node = min(n_dev, S.system.devices_per_node)
    for t in tp_options(S.graph, per_node):
        if space.tp is not None and t not in space.tp:
            continue
        for p in pp_all:
            for cp in space.context_parallel:
                if n_dev % (t * p * cp) or global_batch % (n_dev // (t * p * cp)):
                    continue
                d = n_dev // (t * p * cp)
                per_rep = global_batch // d
                mbs = microbatch_options(per_rep) if space.microbatch is None else \
                    [x for x in space.microbatch if per_rep % x == 0]
                for mb in mbs:
                    yield t, p, cp, d, mb, per_rep // mb


def enumerate_candidates(S: Search, space: Space, counts_for: list[int], global_batch: int, pp_all: list[int]
                         ) -> list[Candidate]:
    """Every candidate that survives static memory and dominance, with its lower bound (every one counted: the
    pruned and dominated ones once per recompute, schedule, virtual-stage and option combination)."""
    c = S.counts
    out: list[Candidate] = []
    tpos = tp_overlap_values(S, space)
    for n_dev in counts_for:
        per_node = min(n_dev, S.system.devices_per_node)
        for t, p, cp, d, mb, m_total in _shapes(S, space, n_dev, global_batch, pp_all):
            m, k_acc = (m_total, 1) if p > 1 else (1, m_total)
            scheds = list(space.schedules) if p > 1 else [None]
            variants = [(rc, s, v) for rc in space.recompute for s in scheds
                        for v in (virtual_options(S.graph, p, m, space.virtual_stages) if s in (None, "1f1b") else [1])]
            twins = 2 if t > 1 and len(set(space.sequence_parallel)) == 2 else 1
            per_mode = len(space.offload_activations)
            for dt, ep in ((dt, ep) for dt in space.dtypes for ep in space.expert_parallel if d % ep == 0):
                modes, dominated, pruned = _modes(S, space, t, p, d * cp, dt, ep)  # state shards over dp x cp
                opts = _option_sets(space, t, modes, ep, tpos, p)
                n_mode = len(variants) * per_mode * twins
                c["dominated"] += dominated * n_mode + len(variants) * len(opts) * (twins - 1) \
                    + len(variants) * sum(1 for o in opts if tpos[1] and p == 1 and _tpo_twin(dict(o)))
                c["pruned"] += pruned * n_mode
                for rc, s, v in variants:
                    for o in opts:
                        w = _roofline_work(S, mb, dt, t, rc) if cp == 1 else 0.0  # expert parallelism: same FLOPs
                        out.append(Candidate(n_dev, t, p, d, mb, m_total, dt, rc, s, o + (
                            ("context_parallel", cp), ("virtual_stages", v)), lower_bound(w, p, m, v, k_acc)))
    c["candidates"] = len(out) + c["dominated"] + c["pruned"]
    return out


# ---------------------------------------------------------------------------------------------
# timing


def setup_of(S: Search, cand: Candidate) -> dict[str, Any]:
    """predict() keywords of one plan: batch per replica, plan, dtype, recompute, its options and the shared ones."""
    plan: dict[str, Any] = {"dp": cand.dp, "tp": cand.tp, "pp": cand.pp}
    out: dict[str, Any] = {"devices": cand.n_dev, "dtype": cand.dtype, "optimizer": S.base.optimizer}
    if cand.pp > 1:
        plan.update(microbatches=cand.m_total, schedule=cand.schedule)
        out["batch"] = cand.mb * cand.m_total
    else:
        out["batch"] = cand.mb
        if cand.m_total > 1:
            out["grad_accumulation"] = cand.m_total
    out["plan"] = plan
    if cand.recompute != "none":
        out["recompute"] = cand.recompute
    out.update((k, v) for k, v in cand.options if v != OPTION_DEFAULTS[k])
    out.update(S.shared)
    return out


def _row(S: Search, cand: Candidate, setup: dict[str, Any], ev) -> dict[str, Any]:
    """A PlanRow's fields from one Evaluation."""
    total = ev.it.total_s
    n_dev, dp = cand.n_dev, cand.dp
    reps = ev.plan.m * ev.setup.grad_accumulation
    mflops = S.get(("mflops", cand.mb, cand.dtype, cand.tp, dict(cand.options)["sequence_parallel"]), lambda: sum(
        c.flops("forward") + c.flops("backward_data") + c.flops("backward_weight") for c in ev.ranks.costs)) \
        * reps * dp
    peak = S.system.device.peak(cand.dtype)
    return dict(
        devices=n_dev, nodes=ev.placement.nodes, dp=dp, tp=cand.tp, pp=cand.pp, microbatch=cand.mb,
        microbatches=cand.m_total, recompute=cand.recompute, dtype=cand.dtype, schedule=cand.schedule,
        **dict(cand.options), global_batch=cand.mb * cand.m_total * dp,
        iteration_time_s=total, throughput_samples_per_s=cand.mb * cand.m_total * dp / total if total > 0 else 0.0,
        breakdown=dict(ev.it.parts), memory_bytes=ev.memory.total_bytes,
        memory={k: getattr(ev.memory, k) for k in MEMORY_TERMS}, memory_limit_bytes=S.limit, fits=True,
        model_flops=mflops, mfu=mflops / (total * n_dev * peak) if total > 0 else 0.0,
        mfu_6nd=(6.0 * S.params_full * S.tokens_per_sample * cand.mb * cand.m_total * dp / (total * n_dev * peak))
        if S.tokens_per_sample and total > 0 else None,
        tflops_per_device=mflops / total / n_dev / 1e12 if total > 0 else 0.0,
        cost_per_iteration=(S.price * n_dev * total / 3600.0) if S.price is not None else None,
        bubble_fraction=ev.it.timing.bubble_fraction, stage_layers=ev.staged.stage_layers, setup=setup)


def time_candidate(S: Search, cand: Candidate) -> dict[str, Any] | None:
    """One plan timed by perfmodel.parallel.evaluate (None when it does not fit, or the engine does not model it:
    counted, with the engine's reason kept once per kind of option set)."""
    kind = tuple((k, v) for k, v in cand.options if k not in ("sequence_parallel",)) + \
        (("shape", cand.dp, cand.tp, cand.pp),) + (("recompute", cand.recompute),)  # refusals may name degrees
    if kind in S.memo.get("unmodelled", {}):
        S.counts["skipped"] += 1
        return None
    setup = setup_of(S, cand)
    try:
        ev = evaluate(S.graph, S.hw, make_setup(**setup))
    except InputError as e:  # a combination the engine refuses: skipped, the reason kept once per kind
        S.memo.setdefault("unmodelled", {})[kind] = str(e)
        S.not_modelled.setdefault(re.sub(r"=\d+", "=N", str(e)), str(e))  # one line per reason, not per degree
        S.counts["skipped"] += 1
        return None
    if ev.memory.total_bytes > S.limit:
        S.counts["dropped"] += 1
        return None
    return _row(S, cand, setup, ev)


def _exact_bound(S: Search, cand: Candidate) -> float:
    """The candidate's lower bound from the timed per-layer work of its rank (C of the module docstring)."""
    o = dict(cand.options)
    if o["context_parallel"] > 1:
        return 0.0  # no bound for it yet
    per_node = min(cand.n_dev, S.system.devices_per_node)
    w = _work(S, cand.n_dev, per_node, cand.mb, cand.dtype, cand.tp, o["sequence_parallel"], cand.recompute,
              o["expert_parallel"])
    m, k_acc = (cand.m_total, 1) if cand.pp > 1 else (1, cand.m_total)
    return lower_bound(w, cand.pp, m, o["virtual_stages"], k_acc)


def _twin_timed(o: dict[str, Any]) -> bool:
    """Whether a plan's tp_overlap twins are ordered in time (off never faster): sequence parallelism, and no
    activation offload or no ZeRO-3 / FSDP gathers beside it (module docstring, 3)."""
    return o["sequence_parallel"] and (not o["offload_activations"] or (o["zero"] < 3 and o["sharding"] == "none"))


def _twin_bound(cand: Candidate, twin_s: dict) -> float:
    """A lower bound of a tp_overlap=False plan: its tp_overlap=True twin's time, once timed (_twin_timed)."""
    o = dict(cand.options)
    if o["tp_overlap"] or not _twin_timed(o):
        return 0.0
    twin = Candidate(**{**cand.__dict__, "options": tuple((k, True if k == "tp_overlap" else v)
                                                          for k, v in cand.options)})
    return twin_s.get(twin, 0.0)


def time_all(S: Search, cands: list[Candidate], top: int | None, primary) -> list[dict[str, Any]]:
    """Time the candidates cut by cut, cuts in ascending order of their least (FLOP) bound. With `top`, a candidate
    whose bound (as `primary` of its devices) exceeds the top-th best so far is counted as bounded, not timed: first
    by the FLOP bound, then by the bound from its rank's timed work (computed only for cuts still in the race)."""
    groups: dict[tuple, list[Candidate]] = {}
    for cand in cands:
        groups.setdefault(cand.cut, []).append(cand)
    order = sorted(groups.values(), key=lambda g: min(primary(x.bound, x.n_dev) for x in g))
    rows: list[dict[str, Any]] = []
    best: list[float] = []  # the `top` smallest primaries so far, ascending

    def out_of_race(bound: float, n_dev: int) -> bool:
        return top is not None and len(best) >= top and primary(bound, n_dev) > best[top - 1] * (1 + 4 * TIE_REL)

    twin_s: dict[Candidate, float] = {}  # the times of timed tp_overlap=True plans (_twin_timed)

    with memo.capacity(SEARCH_MEMO_ENTRIES):
        for g in order:
            for cand in sorted(g, key=lambda x: x.bound):
                if out_of_race(cand.bound, cand.n_dev) or out_of_race(_twin_bound(cand, twin_s), cand.n_dev) or \
                        (top is not None and out_of_race(_exact_bound(S, cand), cand.n_dev)):
                    S.counts["bounded"] += 1
                    continue
                row = time_candidate(S, cand)
                if row is None:
                    continue
                if dict(cand.options)["tp_overlap"] and _twin_timed(dict(cand.options)):
                    twin_s[cand] = row["iteration_time_s"]
                rows.append(row)
                if top is not None:
                    best = sorted(best + [primary(row["iteration_time_s"], row["devices"])])[:top]
    return rows
