"""Plan search: the fastest (or cheapest) parallel plan that fits in device memory.

`plan_search(network, hardware, devices=N, global_batch=B)` enumerates, prunes and ranks candidate plans; it has
no model of its own: every candidate that is timed goes through predict's one path
(perfmodel.parallel.predict.evaluate) with the setup its PlanRow carries (`setup`: the predict() keywords that
reproduce its time exactly). perfmodel.planning.candidates enumerates, prunes and times.

Search space (every dimension can be narrowed by an argument; perfmodel.planning.space):
- tp: powers of two up to the devices per node, dividing the devices used per node and every attention
  layer's heads; pp: divisors of the number of repeated blocks (or powers of two up to half the parameterised
  layers without blocks), dividing N / tp; dp = N / (tp pp), and the global batch must split evenly:
  B = dp x microbatch x microbatches (default B: the network file's `training.global_batch`, else 32 x N);
- micro-batch sizes: powers of two dividing B / dp, plus B / dp itself; dtype: the best low- and
  full-precision types the device supports; schedule: 1F1B and GPipe when pp > 1;
- the large-model options (issue 14 names): recompute none / selective / full; model-state sharding: ZeRO
  stages 0-2 and FSDP full (= ZeRO-3) and hybrid (`zero`, `sharding`); Megatron sequence parallelism;
  interleaved 1F1B virtual stages (space.virtual_options); context_parallel, offload_activations,
  expert_parallel and tp_overlap (Megatron's --tp-comm-overlap: only with tp > 1 and sequence parallelism, where
  the stack does not already overlap tensor-parallel communication; parallel/overlap.py). Values the engine does not model yet (TrainingSetup.check_modelled) are left out and named
  in PlanResult.not_modelled; option combinations it refuses (e.g. expert with context parallelism) are skipped and counted;
- objective "cost": also N/2, N/4, ... devices.
Without a pipeline (pp = 1), "microbatches" are gradient-accumulation steps (predict's grad_accumulation);
with a pipeline they are the pipeline's micro-batches.

How it stays fast (perfmodel.planning.candidates): static memory prunes before anything is timed; dominated
twins (zero=0 next to zero=1, sequence parallelism or tp_overlap off next to on) are not timed; a lower bound of every
candidate's iteration time skips those that cannot enter the top k; candidates sharing a stage cut are timed
together, so the cut (the costly part) is computed once for all their variants.
"""

from __future__ import annotations

import time as _time
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from ..engine.rates import fused_attention
from ..errors import InputError
from ..graph.io import load_network
from ..hardware.loader import load_hardware
from ..hardware.topology import resolve_system
from ..ops import DTYPE_BYTES
from ..ops.base import graph_costs
from ..optimizers import OPTIMIZER_NAMES
from ..parallel.collectives import allreduce_choices
from ..prediction.setup import make_setup
from .candidates import Search, Space, enumerate_candidates, time_all
from .explain import PART_WORDS, PLAN_PARTS, TIE_REL, explain  # noqa: F401  (re-exported)
from .space import (COST_DEVICE_HALVINGS, DIMENSION_DEFAULTS, FULL_PRECISION_PREFERENCE,  # noqa: F401
                    LOW_PRECISION_PREFERENCE, RECOMPUTE_SEARCH, SHARDING_CHOICES, ZERO_STAGES, _check_list,
                    _device_counts, block_count, default_dtypes, hardware_with_device, microbatch_options,
                    modelled_values, pp_options, tp_options, trained_global_batch)
from . import price_per_device_hour

OBJECTIVES = ("time", "cost")
SCHEDULE_CHOICES = ("1f1b", "gpipe")
DEFAULT_OPTIMIZER = "adam"  # mixed-precision Adam: what large models are trained with
SINGLE_PLAN_DEFAULTS = dict(zero=0, sharding="none", sequence_parallel=False, virtual_stages=1, context_parallel=1,
                           offload_activations=False, expert_parallel=1, tp_overlap=False)
DEFAULT_BATCH_PER_DEVICE = 32  # default global batch = 32 x devices (predict's default batch per replica)

class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlanRow(_Frozen):
    """One evaluated plan: its degrees and knobs, time with breakdown, memory per device, MFU, cost."""

    rank: int = 0
    devices: int
    nodes: int
    dp: int
    tp: int
    pp: int
    microbatch: int = Field(description="samples per micro-batch per replica")
    microbatches: int = Field(description="micro-batches per replica per iteration (gradient accumulation when pp=1)")
    recompute: str
    dtype: str
    schedule: str | None = Field(description="1f1b or gpipe; None without a pipeline")
    zero: int = Field(default=0, description="ZeRO stage (sharding 'full' / 'hybrid': stage 3, FSDP)")
    sharding: str = Field(default="none", description="FSDP sharding: none, full or hybrid")
    sequence_parallel: bool = False
    virtual_stages: int = Field(default=1, description="interleaved 1F1B model chunks per pipeline rank")
    context_parallel: int = 1
    offload_activations: bool = False
    expert_parallel: int = 1
    tp_overlap: bool = Field(default=False, description="tensor-parallel collectives pipelined with their GEMMs")
    global_batch: int
    iteration_time_s: float
    throughput_samples_per_s: float
    breakdown: dict[str, float] = Field(description="parts adding up to iteration_time_s (PLAN_PARTS)")
    memory_bytes: float = Field(description="per device, on the fullest pipeline stage")
    memory: dict[str, float] = Field(description="weights, gradients, optimizer, activations, workspace, reserved")
    memory_limit_bytes: float
    fits: bool
    model_flops: float = Field(description="forward + backward FLOPs of the iteration, without recomputation")
    mfu: float = Field(description="model FLOPs / (time x devices x peak of the dtype)")
    mfu_6nd: float | None = Field(default=None, description="6 x params x tokens / (time x devices x peak); transformers")
    tflops_per_device: float = Field(description="model FLOP/s per device, in TFLOP/s")
    cost_per_iteration: float | None = None
    bubble_fraction: float = 0.0
    stage_layers: tuple[int, ...] = Field(default=(), description="layers per pipeline stage")
    setup: dict[str, Any] = Field(default_factory=dict, description="predict() keywords reproducing this plan")

    def label(self) -> str:
        s = f"dp={self.dp} tp={self.tp} pp={self.pp} mb={self.microbatch}x{self.microbatches}"
        s += f" {self.dtype} recompute={self.recompute}"
        if self.schedule:
            s += f" {self.schedule}"
        return s + "".join(f" {k}={v}" for k, v in self.options().items())

    def options(self) -> dict[str, Any]:
        """The large-model options of this plan that differ from their defaults (sequence_parallel as sp)."""
        out: dict[str, Any] = {}
        if self.virtual_stages > 1:
            out["virtual"] = self.virtual_stages
        if self.zero:
            out["zero"] = self.zero
        if self.sharding != "none":
            out["sharding"] = self.sharding
        if self.sequence_parallel:
            out["sp"] = "on"
        if self.tp_overlap:
            out["tp_overlap"] = "on"
        for k in ("context_parallel", "expert_parallel"):
            if getattr(self, k) > 1:
                out[k] = getattr(self, k)
        if self.offload_activations:
            out["offload"] = "on"
        return out

    def predict_options(self) -> dict[str, Any]:
        """Keyword arguments for perfmodel.predict that reproduce this plan: `setup` without the optimizer."""
        return {k: v for k, v in self.setup.items() if k != "optimizer"}


class PlanResult(_Frozen):
    """The outcome of a plan search: ranked plans and why the best one wins."""

    network: str
    hardware: str
    devices: int
    global_batch: int
    objective: str
    optimizer: str
    allreduce: str
    searched: dict[str, Any] = Field(default_factory=dict, description="the values searched per large-model option")
    not_modelled: tuple[str, ...] = Field(default=(), description="option values left out: the engine's reasons")
    price_per_device_hour: float | None
    price_source: str
    plans: tuple[PlanRow, ...]
    why: str
    candidates: int = Field(description="plans enumerated")
    pruned_static_memory: int = Field(description="dropped by weights/gradients/optimizer state alone, before timing")
    dominated: int = Field(default=0, description="not timed: a twin is as fast and needs no more memory")
    bounded: int = Field(default=0, description="not timed: a lower bound of their time cannot reach the top plans")
    skipped: int = Field(default=0, description="option combinations the engine does not model (not_modelled)")
    dropped_memory: int = Field(description="timed, and dropped by the exact memory check")
    fitting: int = Field(description="plans that fit and were timed")
    search_time_s: float
    assumptions: dict[str, Any] = Field(default_factory=dict)

    @property
    def best(self) -> PlanRow:
        if not self.plans:
            raise InputError("no plan fits in device memory")
        return self.plans[0]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------------------------------
# the search


def _check(devices, objective, optimizer, allreduce, top, straggler_cv) -> None:
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise InputError(f"devices must be a positive integer, got {devices!r}")
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if optimizer not in OPTIMIZER_NAMES:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, got {optimizer!r}")
    choices = allreduce_choices()
    if allreduce not in choices or allreduce == "ps":
        raise InputError(f"allreduce must be one of {', '.join(a for a in choices if a != 'ps')}, "
                         f"got {allreduce!r}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise InputError(f"top must be a positive integer (or None for all), got {top!r}")
    if straggler_cv < 0:
        raise InputError(f"straggler_cv must be >= 0, got {straggler_cv}")


def _values(name: str, given, allowed=None) -> list:
    """The values of one searched option: a single value or a list, each checked against `allowed` (or the setup)."""
    vals = list(given) if isinstance(given, (list, tuple, set, frozenset)) else [given]
    if allowed is not None:
        return _check_list(name, vals, allowed)
    if not vals:
        raise InputError(f"{name} must be a non-empty list, got {vals!r}")
    for v in vals:
        make_setup(**{name: v})  # the setup's own check (type, range), naming the field
    return list(dict.fromkeys(vals))


def _space(graph, dtypes, recompute, schedules, tp, pp, microbatch, options: dict[str, Any]) -> tuple[Space, list]:
    """The searched values per dimension, less those the engine does not model (with its reasons)."""
    vals = {"recompute": _values("recompute", recompute, RECOMPUTE_SEARCH),
            "zero": _values("zero", options["zero"], ZERO_STAGES),
            "sharding": _values("sharding", options["sharding"], SHARDING_CHOICES)}
    for k in ("sequence_parallel", "context_parallel", "offload_activations", "expert_parallel", "tp_overlap"):
        vals[k] = _values(k, options[k])
    virtual = None if options["virtual_stages"] is None else _values("virtual_stages", options["virtual_stages"])
    why = []
    for k in list(vals):
        kept, reason = modelled_values(k, vals[k])
        if reason:
            why.append(reason)
        if not kept:
            raise InputError(f"{k}: none of {vals[k]!r} is modelled ({reason})")
        vals[k] = kept
    space = Space(dtypes=dtypes, schedules=_check_list("schedules", schedules, SCHEDULE_CHOICES), tp=tp, pp=pp,
                  microbatch=microbatch, virtual_stages=virtual, **vals)
    return space, why


def _drop_selective_twin(space: Space, device, why: list) -> None:
    """With fused attention (engine.rates.fused_attention) recompute='selective' is the same plan as 'none': keep
    one of the two twins (none) and say why."""
    if fused_attention(device) and "selective" in space.recompute and "none" in space.recompute:
        space.recompute = [r for r in space.recompute if r != "selective"]
        why.append("recompute=selective: the device's fused attention already recomputes the attention core, "
                   "so its plans are those of recompute=none")


def _prepare(network, hardware, device, devices, global_batch, dtypes, memory_limit):
    graph = load_network(network)
    hw = load_hardware(hardware)
    if device is not None:
        hw = hardware_with_device(hw, device)
    system = resolve_system(hw, devices=devices)
    dev = system.device
    if global_batch is None:
        global_batch = trained_global_batch(graph) or DEFAULT_BATCH_PER_DEVICE * devices
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise InputError(f"global_batch must be a positive integer, got {global_batch!r}")
    dtypes = default_dtypes(dev) if dtypes is None else list(dtypes)
    for d in dtypes:
        if d not in DTYPE_BYTES:
            raise InputError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {d!r}")
        if not dev.supports(d):
            raise InputError(f"device '{dev.name}' has no {d} rate; it supports "
                             f"{', '.join(k for k in dev.peak_flops if k != 'fp64')}")
    limit = float(memory_limit) if memory_limit is not None else float(dev.memory_bytes)
    if limit <= 0:
        raise InputError(f"memory_limit must be > 0 bytes, got {memory_limit!r}")
    if devices > system.max_devices:
        raise InputError(f"{devices} devices asked but '{system.name}' has {system.max_devices}")
    k_node = system.devices_per_node
    if devices > k_node and devices % k_node:
        raise InputError(f"{devices} devices do not fill whole nodes of {k_node}; use a multiple of {k_node}")
    return graph, hw, system, global_batch, dtypes, limit


def plan_search(network, hardware, *, devices: int, global_batch: int | None = None, objective: str = "time",
                memory_limit: float | None = None, top: int | None = 5, optimizer: str = DEFAULT_OPTIMIZER,
                dtypes: Sequence[str] | None = None, recompute: Sequence[str] = RECOMPUTE_SEARCH,
                schedules: Sequence[str] = SCHEDULE_CHOICES, tp: Sequence[int] | None = None,
                pp: Sequence[int] | None = None, microbatch: Sequence[int] | None = None,
                allreduce: str = "ring", overlap: bool = True, bucket_bytes: float | None = None,
                straggler_cv: float = 0.0, price_per_hour: float | None = None, device: str | None = None,
                zero: int | Sequence[int] = ZERO_STAGES, sharding: str | Sequence[str] = SHARDING_CHOICES,
                sequence_parallel: bool | Sequence[bool] = (False, True),
                virtual_stages: int | Sequence[int] | None = None,
                context_parallel: int | Sequence[int] = (1,),
                offload_activations: bool | Sequence[bool] = (False, True),
                expert_parallel: int | Sequence[int] = (1,),
                tp_overlap: bool | Sequence[bool] = (False, True), memory_format: str = "contiguous") -> PlanResult:
    """Search data/tensor/pipeline degrees, micro-batching, dtype, schedule and the large-model options (module doc).

    network, hardware: names, files or loaded objects (hardware: a device, node or cluster).
    devices: devices to use (objective "cost" may also use N/2, N/4, ...). global_batch: samples per
    iteration (default: the network file's training.global_batch, else 32 x devices). memory_limit: bytes per
    device a plan may use (default: the device's memory). top: plans kept (None: all that fit, nothing bounded).
    tp / pp / microbatch / dtypes / recompute / schedules and zero / sharding / sequence_parallel / virtual_stages
    (None: space.virtual_options) / context_parallel / offload_activations / expert_parallel / tp_overlap: the values to try
    (a single value fixes the option). price_per_hour: USD per device-hour (default: the profile's or the example
    price table, see perfmodel.planning). device: replace the node's device profile (e.g. "a100-sxm4-80gb").
    memory_format: the activation layout every plan runs (TrainingSetup.memory_format).
    """
    t0 = _time.perf_counter()
    _check(devices, objective, optimizer, allreduce, top, straggler_cv)
    graph, hw, system, global_batch, dtypes, limit = _prepare(network, hardware, device, devices, global_batch,
                                                              dtypes, memory_limit)
    space, not_modelled = _space(graph, dtypes, recompute, schedules, tp, pp, microbatch, dict(
        zero=zero, sharding=sharding, sequence_parallel=sequence_parallel, virtual_stages=virtual_stages,
        context_parallel=context_parallel, offload_activations=offload_activations, expert_parallel=expert_parallel,
        tp_overlap=tp_overlap))
    _drop_selective_twin(space, system.device, not_modelled)
    price, price_src = price_per_device_hour(hw, price_per_hour)
    base = make_setup(optimizer=optimizer, allreduce=allreduce, overlap=overlap, bucket_bytes=bucket_bytes,
                      straggler_cv=straggler_cv, memory_format=memory_format)
    attn = [l for l in graph.layers if l.op == "attention"]
    S = Search(graph, hw, system, base, {k: v for k, v in base.changed().items() if k != "optimizer"}, limit, price,
               sum(c.params for c in graph_costs(graph, 1, 4)), attn[0].input_shapes[0][0] if attn else None)

    def primary(time_s: float, n_dev: int) -> float:
        if objective == "cost":
            return (price * n_dev * time_s / 3600.0) if price is not None else n_dev * time_s
        return time_s

    n_layers = len(graph.layers)
    pp_all = [p for p in pp_options(graph) if p <= n_layers] if pp is None else list(pp)
    cands = enumerate_candidates(S, space, _device_counts(devices, objective, system.devices_per_node,
                                                          system.max_devices), global_batch, pp_all)
    rows = time_all(S, cands, None if top is None else max(top, 2), primary)

    def sort_key(r):
        return (primary(r["iteration_time_s"], r["devices"]), r["memory_bytes"], r["devices"])

    rows.sort(key=sort_key)
    _break_ties(rows, sort_key)
    kept = rows if top is None else rows[:max(top, 2)]  # the runner-up is needed to explain the winner
    ranked = tuple(PlanRow(rank=i + 1, **r) for i, r in enumerate(kept))
    c = S.counts
    not_timed = c["dropped"] + c["pruned"]
    return PlanResult(
        network=graph.name, hardware=system.name, devices=devices, global_batch=global_batch, objective=objective,
        optimizer=optimizer, allreduce=allreduce, searched=_searched(space),
        not_modelled=tuple(dict.fromkeys(not_modelled + [f"skipped: {e}" for e in S.not_modelled.values()])),
        price_per_device_hour=price, price_source=price_src,
        plans=ranked if top is None else ranked[:top],
        why=explain(ranked, objective, price is not None, len(rows), not_timed, c["bounded"] + c["dominated"]),
        candidates=c["candidates"], pruned_static_memory=c["pruned"], dominated=c["dominated"],
        bounded=c["bounded"], skipped=c["skipped"], dropped_memory=c["dropped"], fitting=len(rows),
        search_time_s=_time.perf_counter() - t0,
        assumptions=_assumptions(base, limit, dtypes, objective, price is not None))


def _searched(space: Space) -> dict[str, list]:
    return {k: list(getattr(space, k)) for k in ("recompute", "zero", "sharding", "sequence_parallel",
                                                   "context_parallel", "offload_activations", "expert_parallel",
                                                   "tp_overlap")} | \
        {"virtual_stages": "divisors of the blocks per stage" if space.virtual_stages is None
         else list(space.virtual_stages)}


def _assumptions(base, limit: float, dtypes, objective: str, priced: bool) -> dict[str, Any]:
    return {
        "optimizer": base.optimizer, "allreduce": base.allreduce, "overlap": base.overlap,
        "straggler_cv": base.straggler_cv, "memory_limit_bytes": limit,
        "recompute_rule": "full: perfmodel.recompute 'auto' segments, all but the last checkpointed; selective: the "
                          "attention core (perfmodel.parallel.stages)",
        "virtual_stages_rule": "1, and with pp > 1, 1F1B and micro-batches a multiple of pp: divisors of the blocks "
                               "per stage",
        "dtypes": list(dtypes),
        "tp_rule": "powers of two up to the devices per node, dividing the attention heads",
        "pp_rule": "divisors of the number of repeated blocks (or powers of two without blocks)",
        "microbatch_rule": "powers of two dividing the samples per replica, and that number itself",
        "mfu": "model FLOPs (forward + backward, no recomputation) / (time x devices x peak of the dtype)",
        "mfu_6nd": "6 x parameters x tokens / (time x devices x peak), for networks with attention",
        "device_counts": "N only" if objective == "time" else "N, N/2, N/4, ... (whole nodes)",
        "cost": "price per device-hour x devices x iteration time" if priced else
                "no price known: objective 'cost' ranks by device-seconds per iteration",
        "model": "every plan is timed by predict's one path (perfmodel.parallel.predict.evaluate)",
        "pruning": "static memory; dominated twins (zero 0 next to zero 1 with dp > 1, sequence parallelism off "
                   "next to on with tp > 1, tp_overlap off next to on, sharding modes with dp = 1); a lower bound "
                   "of the iteration time "
                   "against the top plans (perfmodel.planning.candidates)",
    }


def _break_ties(rows: list[dict], sort_key) -> None:
    """Within TIE_REL of each other, the smaller memory footprint ranks first (already the sort's 2nd key)."""
    i = 0
    while i < len(rows) - 1:
        a, b = sort_key(rows[i])[0], sort_key(rows[i + 1])[0]
        if abs(a - b) <= TIE_REL * max(abs(a), abs(b)) and rows[i + 1]["memory_bytes"] < rows[i]["memory_bytes"]:
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
            i = max(0, i - 1)
        else:
            i += 1


# ---------------------------------------------------------------------------------------------
# one plan, and the explanation


def evaluate_plan(network, hardware, *, dp: int, tp: int = 1, pp: int = 1, microbatch: int, microbatches: int = 1,
                  recompute: str = "none", dtype: str = "fp32", schedule: str | None = "1f1b",
                  optimizer: str = DEFAULT_OPTIMIZER, memory_limit: float | None = None, **options) -> PlanRow | None:
    """The search's evaluator on one plan (None if it does not fit in `memory_limit`); the large-model options
    (zero, sharding, sequence_parallel, virtual_stages, ...) default to predict()'s defaults."""
    options = {**SINGLE_PLAN_DEFAULTS, **options}
    devices = dp * tp * pp
    res = plan_search(network, hardware, devices=devices, global_batch=dp * microbatch * microbatches,
                      tp=[tp], pp=[pp], microbatch=[microbatch], recompute=[recompute], dtypes=[dtype],
                      schedules=[schedule or "1f1b"], optimizer=optimizer, memory_limit=memory_limit, top=None,
                      **options)
    for r in res.plans:
        if r.devices == devices and r.dp == dp:
            return r
    return None
