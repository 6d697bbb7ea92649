"""The `fsdp-cpu` suite: sharded data parallelism (FSDP2 and ZeRO) on this machine's CPU, gloo over loopback,
2 processes x 1 thread, Adam, fp32; predicted vs measured step time and model-state memory per rank.

1. Microbenchmarks (no training run is fitted): the gloo all-reduce fit of the ddp-cpu suite (the link, alpha and
   B), its process-contention microbenchmark, a collective microbenchmark (all-reduce, all-gather, reduce-scatter
   of the same full sizes: perfmodel.torch.fsdp_workers.calibrate_collectives), one small collective inside busy
   compute (calibrate_busy_collective: the latency the DDP and ZeRO-1 cases are predicted with) and the cost of an
   FSDP2 unit beyond its bytes (calibrate_fsdp_units, a tiny 16-layer stack as 16 units vs one: a third of it is
   the latency of each collective of the FSDP cases).
2. The cases below, each a network under one PyTorch implementation of a ZeRO stage (fsdp_workers.MODES: "ddp"
   stage 0, "zero1" ZeroRedundancyOptimizer stage 1, "fsdp" fully_shard stage 3), measured in rounds that go
   round-robin over the cases; every round is its own record, the report pools the step times.
3. Predictions: perfmodel.predict on the calibrated CPU profile of this machine, a node of 2 worker processes
   joined by the fitted link (ddp_cpu.local_node), optimizer adam, zero = the case's stage (sharding="full" for
   FSDP), the same overlap rule as ddp-cpu (no spare core: no overlap). The collectives are priced as the CPU's
   collective library runs them (hardware_profiles/backends/gloo.yaml: reduce-scatter = clone + a whole all-reduce
   + chunk copy, all-gather = new buffer + ring + copy out; parallel/collectives.dp_backend_fns).
4. Memory per rank: PyTorch's own accounting (bytes of each rank's local tensors of parameters, gradients and
   Adam state after a step; DTensor.to_local() for FSDP) against the model's per-rank terms with the stage's
   sharding (parallel/sharding.shard_terms of the unsharded terms; at rest, without the gathered units). ZeRO-2
   has no PyTorch implementation here: its torch column is computed, the gradients of the parameters in each
   rank's ZeroRedundancyOptimizer partition (the zero1 records).

Runs are selected by run id: a report judges one run (default: the latest run id in the file), all of whose
records (microbenchmarks and rounds, possibly measured in several calls with the same run id) it reads.
"""

from __future__ import annotations

import datetime as _dt
import math
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError, NotFoundError
from ..graph.io import load_network
from ..engine.rates import device_rates
from ..hardware.backends import backend_for
from ..hardware.schema import Device
from ..parallel.collectives import backend_time
from ..ops.base import graph_costs
from ..parallel.sharding import shard_terms
from ..torch.ddp_records import DDPMeasurement
from ..torch.records import append_jsonl, read_jsonl
from .ddp_cpu import (_link_calibration, _measure_link, _measure_process_speed, _repo_path, _resolve_network,
                      gloo_suite_preflight,
                      _wait_idle, host_description, pool, predict_ddp)
from .fsdp_report import report_markdown, readme_section, terminal_text, TARGET_PCT
from .metrics import case_summary
from .profiles import resolve_profile
from .protocol import Row, RunOptions
from .storage import measurement_store
from .writer import write_report

SUITE_NAME = "fsdp-cpu"
SUITE_ROUNDS = 3
MODES = {"ddp": 0, "zero1": 1, "fsdp": 3, "fsdp-root": 3}  # = perfmodel.torch.fsdp_workers.MODES (imports torch)
MEMORY_TERMS = ("weights_bytes", "gradients_bytes", "optimizer_bytes")
TORCH_TERMS = ("params_bytes", "gradients_bytes", "optimizer_bytes")


@dataclass(frozen=True)
class FSDPCase:
    name: str
    network: str  # built-in name or path relative to the repository root
    batch: int  # per process
    mode: str  # ddp | zero1 | fsdp
    world: int = 2
    threads: int = 1
    steps: int = 10
    warmup: int = 3

    @property
    def zero(self) -> int:
        return MODES[self.mode]


_MLP, _TRANSFORMER = "validation/networks/mlp.yaml", "validation/networks/transformer.yaml"
CASES = tuple(FSDPCase(f"{tag}-b{b}-{mode}", net, b, mode, steps=steps)
              for tag, net, b, steps in (("mlp", _MLP, 64, 12), ("transformer", _TRANSFORMER, 8, 10))
              for mode in ("fsdp", "zero1", "ddp"))
# measured, not predicted (the model's FSDP unit is a layer): the whole model as one unit, for the per-unit cost
DIAGNOSTIC_CASES = (FSDPCase("transformer-b8-fsdp-root", _TRANSFORMER, 8, "fsdp-root"),)


# --- prediction -------------------------------------------------------------------------------------------

def predict_case(c: FSDPCase, dev: Device, link, process_speed=None, memory_speed=None):
    """The Prediction of one case: adam, its ZeRO stage over `c.world` processes (FSDP: sharding='full')."""
    return predict_ddp(_resolve_network(c.network), c.batch, dev, link, world=c.world, threads=c.threads,
                       process_speed=process_speed, memory_speed=memory_speed, optimizer="adam",
                       zero=c.zero if c.mode != "fsdp" else 0, sharding="full" if c.mode == "fsdp" else "none")


def predicted_state_per_rank(unsharded: dict[str, float], stage: int, world: int) -> dict[str, float]:
    """Model-state bytes per rank at rest (weights, gradients, optimizer) of ZeRO `stage` over `world` ranks:
    sharding.shard_terms of the unsharded terms, no gathered units (those exist only while a unit computes)."""
    terms = shard_terms({k: unsharded[k] for k in MEMORY_TERMS}, stage, world, 0.0)
    return {k: terms[k] for k in MEMORY_TERMS}


def torch_state_per_rank(rank_memory: dict[str, Any], stage: int) -> dict[str, float]:
    """PyTorch's bytes per rank (weights, gradients, optimizer); stage 2 from a zero1 record: the gradients of
    the rank's partition only."""
    grads = rank_memory["partition_params_bytes"] if stage == 2 else rank_memory["gradients_bytes"]
    return {"weights_bytes": float(rank_memory["params_bytes"]), "gradients_bytes": float(grads),
            "optimizer_bytes": float(rank_memory["optimizer_bytes"])}


def measured_collective_s(coll: dict, collective: str, n: float) -> float:
    """gloo's time for `collective` of n full bytes from the collective microbenchmark: log-log interpolation between
    the measured sizes, the nearest measured time outside them."""
    pts = sorted((int(k), v[collective]) for k, v in coll["median_s"].items())
    if n <= pts[0][0]:
        return pts[0][1]
    for (n0, t0), (n1, t1) in zip(pts, pts[1:]):
        if n <= n1:
            w = math.log(n / n0) / math.log(n1 / n0)
            return math.exp(math.log(t0) + w * (math.log(t1) - math.log(t0)))
    return pts[-1][1]


def gloo_excess_s(network, coll: dict | None, dev: Device, bandwidth_Bps: float, alpha_s: float) -> float | None:
    """Seconds per FSDP step by which gloo's all-gathers and reduce-scatters (the barrier-synchronised microbenchmark,
    measured_collective_s) exceed what the model prices them at: the CPU's backend profile (backend_for, collectives.
    backend_time: algorithm + staging on `dev` at 1 thread) on the fitted link, p = 2, summed over the units (layers
    with parameters) of b fp32 bytes, 2 all-gathers and 1 reduce-scatter per unit. A diagnostic of the report, not
    used by the prediction; None without a collective microbenchmark."""
    if not coll:
        return None
    gloo, rates = backend_for(dev.type), device_rates(dev, "fp32", 1)
    out = 0.0
    for c in graph_costs(load_network(network), 1, 4):
        if c.params:
            b = 4.0 * c.params
            model = (2 * backend_time(gloo, "all-gather", b, 2, bandwidth_Bps, alpha_s, rates)
                     + backend_time(gloo, "reduce-scatter", b, 2, bandwidth_Bps, alpha_s, rates))
            out += (2 * measured_collective_s(coll, "all-gather", b) + measured_collective_s(coll, "reduce-scatter", b)
                    - model)
    return out


def unit_diagnostic(recs: list[dict]) -> dict[str, Any] | None:
    """The per-unit cost FSDP pays on this machine: the same network's step with one unit per layer minus with the
    whole model as one unit (fsdp-root; the same bytes), divided by the 3 collectives (forward all-gather,
    backward all-gather and reduce-scatter) of each extra unit. None without an fsdp-root case in the run."""
    steps = [r for r in recs if r.get("kind") == "sharded_training_step"]
    root = [r for r in steps if r.get("mode") == "fsdp-root"]
    if not root:
        return None
    spec = FSDPCase(**root[0]["case_spec"])
    layer = [r for r in steps if r.get("mode") == "fsdp" and r["case_spec"]["network"] == spec.network
             and r["case_spec"]["batch"] == spec.batch]
    if not layer:
        return None
    units = sum(1 for c in graph_costs(load_network(_resolve_network(spec.network)), 1, 4) if c.params)
    med_root = pool([DDPMeasurement.from_record(r) for r in root])
    med_layer = pool([DDPMeasurement.from_record(r) for r in layer]).median_s
    return {"case": spec.name, "root_median_s": med_root.median_s, "root_p10_s": med_root.p10_s,
            "root_p90_s": med_root.p90_s, "per_layer_case": layer[0]["case"], "per_layer_median_s": med_layer,
            "units": units, "per_collective_s": (med_layer - med_root.median_s) / (3 * (units - 1))}


# --- results -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FSDPCaseResult:
    case: FSDPCase
    measured: DDPMeasurement  # pooled over the rounds
    round_medians_s: tuple[float, ...]
    predicted_s: float
    breakdown: dict[str, float]
    parallel: dict[str, Any]
    predicted_memory: dict[str, float]  # the prediction's footprint terms (weights incl. gathered units)
    rank_memory: tuple[dict[str, Any], ...]  # the last round's per-rank accounting
    gloo_excess_s: float | None = None  # FSDP cases: gloo's collectives beyond the model's backend pricing

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_s - self.measured.median_s) / self.measured.median_s

    def to_dict(self) -> dict[str, Any]:
        return {"case": asdict(self.case), "zero": self.case.zero, "measured_median_s": self.measured.median_s,
                "measured_p10_s": self.measured.p10_s, "measured_p90_s": self.measured.p90_s,
                "round_medians_s": list(self.round_medians_s), "predicted_s": self.predicted_s,
                "error_pct": self.error_pct, "breakdown": self.breakdown, "predicted_memory": self.predicted_memory,
                "rank_memory": list(self.rank_memory), "params": self.measured.params,
                "gloo_excess_s": self.gloo_excess_s}


@dataclass(frozen=True)
class MemoryRow:
    """One rank's model state under one ZeRO stage: predicted vs PyTorch's accounting (bytes)."""

    network: str
    stage: int
    implementation: str
    rank: int
    predicted: dict[str, float]
    torch: dict[str, float]
    peak_rss_delta_bytes: float | None = None
    predicted_total_bytes: float | None = None  # the prediction's whole footprint (activations, workspace, gathered)

    @property
    def error_pct(self) -> float:
        p, t = sum(self.predicted.values()), sum(self.torch.values())
        return 100.0 * (p - t) / t

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_pct": self.error_pct}


@dataclass(frozen=True)
class FSDPSuiteResult:
    suite: str
    profile: str
    profile_source: str
    link: Any  # LinkCalibration (the all-reduce fit)
    step_latency_s: float  # the latency predicted with (step_link)
    cases: tuple[FSDPCaseResult, ...]
    memory: tuple[MemoryRow, ...]
    collectives: dict[str, Any] | None
    process_speed: float | None
    memory_speed: float | None
    host: dict[str, Any]
    measurements_path: str | None = None
    notes: tuple[str, ...] = ()
    units: dict[str, Any] | None = None  # unit_diagnostic
    fsdp_latency_s: float | None = None  # the latency the FSDP cases are predicted with (fsdp_link)
    unit_bench: dict[str, Any] | None = None  # the fsdp_unit_microbenchmark record (its median cost)
    unit_busy: dict[str, Any] | None = None  # compute_competition(): the busy unit variant against the tiny one

    def summary(self) -> dict[str, Any]:
        s = case_summary([(c.case.name, c.error_pct) for c in self.cases], TARGET_PCT)
        if s["cases"]:
            s["memory_max_abs_error_pct"] = max((abs(m.error_pct) for m in self.memory), default=None)
        return s

    def comparisons(self) -> tuple[Row, ...]:
        return tuple(Row(case=c.case.name, predicted_s=c.predicted_s, measured_s=c.measured.median_s,
                         group=f"zero {c.case.zero}", spread_s=(c.measured.p10_s, c.measured.p90_s))
                     for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "profile": self.profile, "profile_source": self.profile_source,
                "link": self.link.to_dict(), "step_latency_s": self.step_latency_s, "summary": self.summary(), "cases": [c.to_dict() for c in self.cases],
                "memory_per_rank": [m.to_dict() for m in self.memory], "collectives": self.collectives,
                "process_speed": self.process_speed, "memory_speed": self.memory_speed, "host": self.host,
                "measurements_path": self.measurements_path, "notes": list(self.notes),
                "unit_diagnostic": self.units, "fsdp_latency_s": self.fsdp_latency_s, "unit_microbenchmark":
                self.unit_bench, "unit_compute_competition": self.unit_busy}

    def markdown(self) -> str:
        return report_markdown(self)

    def readme_section(self) -> str:
        return readme_section(self)


def _memory_rows(c: FSDPCase, unsharded: dict[str, float], pred_total: float, rank_memory) -> list[MemoryRow]:
    """Per rank: the case's stage (and, for zero1, the computed stage 2) predicted vs torch."""
    out = []
    stages = (1, 2) if c.mode == "zero1" else (c.zero,)
    for stage in stages:
        impl = {0: "DDP", 1: "ZeroRedundancyOptimizer", 2: "computed from the ZeRO-1 partition",
                3: "FSDP2 fully_shard"}[stage]
        for r, rm in enumerate(rank_memory):
            delta = None
            if rm.get("peak_rss_kib") is not None and rm.get("rss_before_kib") is not None and stage != 2:
                delta = 1024.0 * (rm["peak_rss_kib"] - rm["rss_before_kib"])
            out.append(MemoryRow(Path(c.network).stem, stage, impl, r,
                                 predicted_state_per_rank(unsharded, stage, c.world), torch_state_per_rank(rm, stage),
                                 delta, pred_total if stage != 2 else None))
    return out


def _case_results(recs: list[dict], dev: Device, lk, process_speed, memory_speed, coll=None, alpha_s=0.0,
                  lk_fsdp=None):
    """(case results, memory rows) of one run's records; the fsdp cases are predicted on `lk_fsdp` (default lk)."""
    steps = [r for r in recs if r.get("kind") == "sharded_training_step"]
    cases, memory = [], []
    for name in dict.fromkeys(r["case"] for r in steps):
        rs = [r for r in steps if r["case"] == name]
        c = FSDPCase(**rs[0]["case_spec"])
        if c.mode == "fsdp-root":
            continue  # a measured diagnostic (unit_diagnostic), not a predicted case
        ms = [DDPMeasurement.from_record(r) for r in rs]
        p = predict_case(c, dev, (lk_fsdp or lk) if c.mode == "fsdp" else lk, process_speed, memory_speed)
        base = predict_case(replace(c, mode="ddp"), dev, lk, process_speed, memory_speed)
        unsharded = {k: getattr(base.memory, k) for k in MEMORY_TERMS}
        pm = {k: getattr(p.memory, k) for k in MEMORY_TERMS + ("activations_bytes", "workspace_bytes",
                                                               "total_bytes")}
        excess = gloo_excess_s(_resolve_network(c.network), coll, dev, lk.bandwidth_Bps, alpha_s) if c.zero == 3 else None
        cases.append(FSDPCaseResult(c, pool(ms), tuple(m.median_s for m in ms), p.iteration_time_s,
                                    dict(p.breakdown), dict(p.parallel or {}), pm, tuple(rs[-1]["rank_memory"]),
                                    excess))
        memory += _memory_rows(c, unsharded, p.memory.total_bytes, rs[-1]["rank_memory"])
    memory.sort(key=lambda m: (m.network, m.stage, m.rank))
    return tuple(cases), tuple(memory)


def _run_records(meas_path: Path, run_id: str | None) -> tuple[str, list[dict]]:
    recs = [r for r in read_jsonl(meas_path) if r.get("suite") == SUITE_NAME and r.get("run_id")]
    if not recs:
        raise NotFoundError(f"no fsdp-cpu suite run in {meas_path}")
    run_id = run_id or max(r["run_id"] for r in recs)
    return run_id, [r for r in recs if r["run_id"] == run_id]


def report_from_measurements(measurements_path: str | Path | None = None, run_id: str | None = None, *,
                             profile: Device | str | None = None, report_dir: str | Path | None = None,
                             write: bool = False) -> FSDPSuiteResult:
    """Predict every case of one stored run (default: the latest run id of the tracked file) from its records
    alone (no torch); with `write` (or a `report_dir`) also write its report folder (default
    validation/reports/fsdp-cpu)."""
    dev = resolve_profile(profile, "cpu")
    meas_path = Path(measurements_path) if measurements_path else _repo_path("validation/measurements/fsdp-cpu.jsonl")
    run_id, recs = _run_records(meas_path, run_id)
    cal, fit = _link_calibration(recs, run_id, None)
    lk, lk_fsdp = step_link(fit, recs), fsdp_link(fit, recs)
    pc = [r for r in recs if r.get("kind") == "process_contention_microbenchmark"]
    ps = pc[-1]["process_speed"] if pc else None
    ms = pc[-1].get("memory_speed") if pc else None
    coll = [r for r in recs if r.get("kind") == "collective_microbenchmark"]
    cases, memory = _case_results(recs, dev, lk, ps, ms, coll[-1] if coll else None, cal.alpha_s, lk_fsdp)
    ub = [r for r in recs if r.get("kind") == "fsdp_unit_microbenchmark"]
    rounds = sorted({r.get("round") for r in recs if r.get("kind") == "sharded_training_step"})
    notes = [f"suite run {run_id}: {len(rounds)} rounds, round-robin over the cases, step times pooled"]
    res = FSDPSuiteResult(SUITE_NAME, dev.name, dev.source, cal, lk.latency_s, cases, memory, coll[-1] if coll else None, ps, ms,
                          next((r["host"] for r in recs if r.get("host")), {}), str(meas_path), tuple(notes),
                          unit_diagnostic(recs), lk_fsdp.latency_s, ub[-1] if ub else None, compute_competition(recs))
    if write or report_dir is not None:
        write_report(res, Path(report_dir) if report_dir else _repo_path("validation/reports/fsdp-cpu"))
    return res


# --- running -----------------------------------------------------------------------------------------------

def select_cases(names: Sequence[str] | None) -> list[FSDPCase]:
    """The named cases of CASES and DIAGNOSTIC_CASES (all when none)."""
    if not names:
        return list(CASES + DIAGNOSTIC_CASES)
    known = {c.name: c for c in CASES + DIAGNOSTIC_CASES}
    bad = [n for n in names if n not in known]
    if bad:
        raise InputError(f"unknown fsdp-cpu case '{bad[0]}'; known: {', '.join(known)}")
    return [known[n] for n in names]


def _measure_collectives(base: dict, meas_path: Path, wait: bool, say) -> None:
    from ..torch.fsdp_workers import calibrate_busy_collective, calibrate_collectives, calibrate_fsdp_units

    say("collective microbenchmark (gloo all-reduce, all-gather, reduce-scatter, 1-64 MiB) ...")
    _wait_idle(wait, say)
    append_jsonl(meas_path, {**base, **calibrate_collectives()})
    say("collective inside busy compute (GEMM gaps + small all-gather, no barrier) ...")
    _wait_idle(wait, say)
    busy = calibrate_busy_collective()
    append_jsonl(meas_path, {**base, **busy})
    say(f"  {busy['cost_per_collective_s'] * 1e3:.2f} ms per collective")
    say("FSDP2 unit cost (a tiny 16-layer stack as 16 units vs one) ...")
    _wait_idle(wait, say)
    units = calibrate_fsdp_units()
    append_jsonl(meas_path, {**base, **units})
    say(f"  {units['cost_per_unit_s'] * 1e3:.2f} ms per extra unit")
    measure_busy_units(base, meas_path, wait, say)


def measure_busy_units(base: dict, meas_path: Path, wait: bool, say) -> None:
    """The FSDP2 unit microbenchmark with ~6 ms of compute per unit (fsdp_workers.UNIT_BUSY), recorded as kind
    fsdp_unit_busy_microbenchmark: a measured fact for the report (how the unit cost grows with the compute
    between the collectives, gloo's thread sharing the cores), not used by the prediction."""
    from ..torch.fsdp_workers import UNIT_BUSY, calibrate_fsdp_units  # imports torch

    say("FSDP2 unit cost with compute between the collectives (Linear(512, 512), 256 samples) ...")
    _wait_idle(wait, say)
    busy = calibrate_fsdp_units(**UNIT_BUSY)
    append_jsonl(meas_path, {**base, **busy, "kind": "fsdp_unit_busy_microbenchmark"})
    say(f"  {busy['cost_per_unit_s'] * 1e3:.2f} ms per extra unit, {busy['compute_per_unit_s'] * 1e3:.2f} ms compute")


def step_link(lk, recs: list[dict]):
    """The link the suite predicts with: bandwidth from the all-reduce fit, latency = what one collective costs
    inside a step on busy cores (the run's busy_collective_microbenchmark, median of its records), else the
    fit's alpha. The barrier-synchronised fit's alpha (~0.1 ms) misses the rank skew and scheduling delay that
    each of FSDP's per-unit collectives pays (~1.5 ms measured here)."""
    busy = [r["cost_per_collective_s"] for r in recs if r.get("kind") == "busy_collective_microbenchmark"]
    if not busy:
        return lk
    return lk.model_copy(update={"latency_s": statistics.median(busy),
                                 "notes": lk.notes + " Latency: one collective inside a step on busy cores "
                                 "(perfmodel.torch.fsdp_workers.calibrate_busy_collective)."})


def compute_competition(recs: list[dict]) -> dict[str, Any] | None:
    """How an FSDP2 unit's cost grows with the compute between its collectives: the busy unit variant (kind
    fsdp_unit_busy_microbenchmark) against the tiny one (the last fsdp_unit_microbenchmark that reports its compute),
    slope = extra ms of unit cost per ms of compute per unit. None without both. Reported, not predicted with."""
    busy = [r for r in recs if r.get("kind") == "fsdp_unit_busy_microbenchmark"]
    tiny = [r for r in recs if r.get("kind") == "fsdp_unit_microbenchmark" and "compute_per_unit_s" in r]
    if not busy or not tiny:
        return None
    b, t = busy[-1], tiny[-1]
    dc = b["compute_per_unit_s"] - t["compute_per_unit_s"]
    return {"tiny_cost_s": t["cost_per_unit_s"], "tiny_compute_s": t["compute_per_unit_s"],
            "busy_cost_s": b["cost_per_unit_s"], "busy_compute_s": b["compute_per_unit_s"], "busy_width": b["width"],
            "busy_batch": b["batch"], "slope": (b["cost_per_unit_s"] - t["cost_per_unit_s"]) / dc if dc > 0 else None}


def fsdp_link(lk, recs: list[dict]):
    """The link the FSDP cases predict with: latency = a third of what an FSDP2 unit costs beyond its bytes (the
    run's fsdp_unit_microbenchmark, median of its records: three collectives per unit as FSDP issues them, hooks
    and copies included), else step_link's."""
    units = [r["per_collective_s"] for r in recs if r.get("kind") == "fsdp_unit_microbenchmark"]
    if not units:
        return step_link(lk, recs)
    return lk.model_copy(update={"latency_s": statistics.median(units),
                                 "notes": lk.notes + " Latency: a third of an FSDP2 unit's cost beyond its bytes "
                                 "(perfmodel.torch.fsdp_workers.calibrate_fsdp_units)."})


def run_fsdp_suite(report_dir: str | Path | None = None, measurements_path: str | Path | None = None, *,
                   cases: Sequence[FSDPCase] | Sequence[str] | None = None, profile: Device | str | None = None,
                   rounds: int = SUITE_ROUNDS, first_round: int = 1, run_id: str | None = None,
                   microbenchmarks: bool = True, wait_idle: bool = True, progress=None) -> FSDPSuiteResult:
    """Measure (microbenchmarks unless microbenchmarks=False, then `rounds` rounds of the cases numbered from
    `first_round`) under `run_id` (default a new one; give a stored one to add rounds to it), then report that run
    from its records (report_from_measurements)."""
    from ..torch.fsdp_workers import measure_sharded  # imports torch

    def say(msg: str) -> None:
        if progress is not None:
            print(msg, file=progress, flush=True)

    meas_path = measurement_store(SUITE_NAME, measurements_path)
    run_id = run_id or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    base = {"schema": "perfmodel.measurement/1", "suite": SUITE_NAME, "run_id": run_id, "host": host_description()}
    sel = [c if isinstance(c, FSDPCase) else select_cases([c])[0] for c in (cases or CASES + DIAGNOSTIC_CASES)]
    if microbenchmarks:
        _measure_link(base, meas_path, wait_idle, False, say)
        _measure_process_speed(base, meas_path, wait_idle, say)
        _measure_collectives(base, meas_path, wait_idle, say)
    for r in range(first_round, first_round + rounds):
        for c in sel:
            idle = _wait_idle(wait_idle, say)
            say(f"round {r}, case {c.name} ...")
            m = measure_sharded(_resolve_network(c.network), c.batch, c.mode, world=c.world, threads=c.threads,
                                warmup=c.warmup, steps=c.steps)
            append_jsonl(meas_path, {**m, **base, "case": c.name, "case_spec": asdict(c), "round": r,
                                     "idle_fraction_before": idle})
            say(f"  median {m['median_s'] * 1e3:.1f} ms")
    return report_from_measurements(meas_path, run_id, profile=profile, report_dir=report_dir)


class _FSDPSuite:
    """The registered `fsdp-cpu` suite (perfmodel.validation.protocol.Suite)."""

    name = SUITE_NAME
    help = "sharded data parallel (FSDP2 fully_shard, ZeRO-1) on this CPU (gloo, 2 processes): time and memory per rank"
    measured = True

    def case_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in CASES + DIAGNOSTIC_CASES)

    def run(self, o: RunOptions) -> FSDPSuiteResult:
        if o.replay is not None:
            gloo_suite_preflight(SUITE_NAME, o.device, replay=True)
            return report_from_measurements(o.replay, profile=o.profile)
        gloo_suite_preflight(SUITE_NAME, o.device)
        sel = select_cases(o.cases)
        if o.steps is not None or o.warmup is not None:
            sel = [replace(c, steps=o.steps or c.steps, warmup=c.warmup if o.warmup is None else o.warmup)
                   for c in sel]
        return run_fsdp_suite(None, o.store, cases=sel, profile=o.profile, rounds=o.rounds or SUITE_ROUNDS,
                              wait_idle=o.wait, progress=o.progress)

    def text(self, report: FSDPSuiteResult) -> list:
        return terminal_text(report)


SUITE = _FSDPSuite()
