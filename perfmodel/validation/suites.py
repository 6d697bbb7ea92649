"""Measured validation suites: predict each case with the calibrated profile of this machine, measure it with
PyTorch, store the measurement, and compare.

    from perfmodel.validation.suites import run_suite
    res = run_suite("cpu-full", report_dir="validation/reports/cpu-full")
    res.summary.median_abs_pct, res.summary.worst

Suites:
- `cpu-quick`: four small cases (a couple of minutes), for CI-sized runs.
- `cpu-full`: eight network kinds (MLP, autoencoder, CNN with batchnorm and residuals, VGG-style CNN,
  LSTM, GRU, transformer encoder, GAN step), each at 1 and 2 threads (16 cases), sizes that take
  0.05-2 s per step on a 2-core machine; per-layer comparison for the CNN and the transformer.
- `gpu`: the same kinds at GPU-sized batches, fp32 and bf16 (needs CUDA).

The networks are files in validation/networks/, written for validation only: calibration runs
microbenchmarks (perfmodel.torch.calibrate) and never sees them. Measurements are appended as JSON
lines to validation/measurements/<suite>.jsonl (perfmodel.torch.measure records; the suite, case,
round, attempt, load average and the CPU other processes used are in the record's notes). torch is
imported only when a suite runs.

Measuring on a shared machine: the cases are measured round-robin in `rounds` passes (cpu-full: 4)
and each case's step times are pooled over them, so that slow drifts of the machine's speed average
out; before each measurement the runner waits for an idle moment, and a measurement during which
other processes used CPU is repeated (all attempts are stored; the least disturbed one is compared).
`replay` re-reports the last run from its stored measurements with the current model.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence, TextIO

from ..errors import InputError, NotFoundError
from .metrics import ErrorSummary, meets_target, signed_error_pct, summarize
from .quiet import Interference, wait_for_quiet
from ..machine import cpu_model_name as _cpu_model

NETWORK_DIR = "validation/networks"
QUIET_LOAD = 1.0  # load average below which the machine counts as quiet for measuring
# Measuring on a shared machine (CPU suites): before each case wait (at most QUIET_MAX_WAIT_S) until the
# machine is QUIET_IDLE idle; a measurement during which other processes kept more than DISTURBED_CORES
# cores busy on average is repeated (at most MAX_ATTEMPTS in all) and the least disturbed one is
# compared. Every attempt is stored, with the interference in its notes.
QUIET_IDLE = 0.85
QUIET_MAX_WAIT_S = 120.0
DISTURBED_CORES = 0.1
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Case:
    """One measured configuration: a network file, batch, threads (CPU), dtype and optimizer."""

    name: str
    kind: str  # mlp, autoencoder, cnn-residual, cnn-vgg, lstm, gru, transformer, gan
    network: str  # file name in validation/networks/
    batch: int
    threads: int | None = None
    dtype: str = "fp32"
    optimizer: str = "sgd"
    warmup: int = 3
    steps: int = 10
    per_layer: bool = False


@dataclass(frozen=True)
class Suite:
    name: str
    device: str  # cpu or cuda
    description: str
    cases: tuple[Case, ...]
    rounds: int = 1  # passes over all cases (round-robin); each case's step times are pooled over them


def _cpu_cases(specs: Sequence[tuple[str, str, int, str]], threads: Sequence[int], per_layer: set[str],
               steps: int, warmup: int) -> tuple[Case, ...]:
    out = []
    for t in threads:
        for kind, net, batch, opt in specs:
            name = f"{net}-b{batch}-t{t}"
            out.append(Case(name, kind, f"{net}.yaml", batch, t, "fp32", opt, warmup, steps,
                            per_layer=(net in per_layer and t == threads[0])))
    return tuple(out)


# kind, network file (stem), batch, optimizer
CPU_FULL_SPECS = (
    ("mlp", "mlp", 256, "sgd"),
    ("autoencoder", "autoencoder", 512, "sgd"),
    ("cnn-residual", "resnet_small", 32, "momentum"),
    ("cnn-vgg", "vgg_small", 24, "sgd"),
    ("lstm", "lstm", 64, "sgd"),
    ("gru", "gru", 64, "sgd"),
    ("transformer", "transformer", 8, "adam"),
    ("gan", "gan", 64, "sgd"),
)
CPU_QUICK_SPECS = (
    ("mlp", "mlp", 32, "sgd"),
    ("cnn-residual", "resnet_small", 8, "momentum"),
    ("lstm", "lstm", 16, "sgd"),
    ("transformer", "transformer", 2, "adam"),
)
# GPU-sized batches; each at fp32 and bf16
GPU_SPECS = (
    ("mlp", "mlp", 4096, "sgd"),
    ("autoencoder", "autoencoder", 8192, "sgd"),
    ("cnn-residual", "resnet_small", 512, "momentum"),
    ("cnn-vgg", "vgg_small", 256, "sgd"),
    ("lstm", "lstm", 512, "sgd"),
    ("gru", "gru", 512, "sgd"),
    ("transformer", "transformer", 128, "adam"),
    ("gan", "gan", 512, "sgd"),
)


def _gpu_cases() -> tuple[Case, ...]:
    out = []
    for dtype in ("fp32", "bf16"):
        for kind, net, batch, opt in GPU_SPECS:
            out.append(Case(f"{net}-b{batch}-{dtype}", kind, f"{net}.yaml", batch, None, dtype, opt, 5, 20,
                            per_layer=(net in ("resnet_small", "transformer") and dtype == "fp32")))
    return tuple(out)


SUITES: dict[str, Suite] = {
    "cpu-quick": Suite("cpu-quick", "cpu", "four small cases (MLP, residual CNN, LSTM, transformer) at 1 or 2 threads",
                       _cpu_cases(CPU_QUICK_SPECS[:2], [1], set(), 5, 2)
                       + _cpu_cases(CPU_QUICK_SPECS[2:], [2], set(), 5, 2)),
    "cpu-full": Suite("cpu-full", "cpu", "eight network kinds at 1 and 2 threads (16 cases), 0.05-2 s per step",
                      _cpu_cases(CPU_FULL_SPECS, [1, 2], {"resnet_small", "transformer"}, 10, 3), rounds=4),
    "gpu": Suite("gpu", "cuda", "the cpu-full kinds at GPU-sized batches, fp32 and bf16 (needs CUDA)", _gpu_cases()),
}
# suites served by other modules (dispatched by the CLI)
EXTERNAL_SUITES = {"dlbench-2016": "perfmodel.validation.dlbench:run_dlbench", "ddp-cpu": "perfmodel.torch.ddp:run_ddp_suite"}


# --- results ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerComparison:
    name: str
    op: str
    predicted_s: float  # forward + backward of the layer
    measured_s: float
    predicted_forward_s: float
    measured_forward_s: float

    @property
    def error_pct(self) -> float | None:
        return signed_error_pct(self.predicted_s, self.measured_s) if self.measured_s > 0 else None


@dataclass(frozen=True)
class CaseResult:
    case: Case
    predicted_s: float
    measured_s: float  # median step time
    p10_s: float
    p90_s: float
    min_s: float
    max_s: float
    error_pct: float
    breakdown: dict[str, float]
    stages: dict[str, float]
    layers: tuple[LayerComparison, ...] = ()
    load_avg: tuple[float, float, float] | None = None
    others_cores: float | None = None  # most cores other processes kept busy during a compared measurement
    attempts: int = 1  # measurements taken (all rounds, repeats of disturbed ones included)
    rounds: int = 1  # measurements compared: their step times are pooled
    round_medians_s: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        c = self.case
        return {
            "case": c.name, "kind": c.kind, "network": c.network, "batch": c.batch, "threads": c.threads,
            "dtype": c.dtype, "optimizer": c.optimizer, "steps": c.steps, "warmup": c.warmup,
            "predicted_s": self.predicted_s, "measured_median_s": self.measured_s, "measured_p10_s": self.p10_s,
            "measured_p90_s": self.p90_s, "measured_min_s": self.min_s, "measured_max_s": self.max_s,
            "error_pct": self.error_pct, "predicted_breakdown": self.breakdown, "predicted_stages": self.stages,
            "load_avg": list(self.load_avg) if self.load_avg else None,
            "others_cores": self.others_cores, "attempts": self.attempts, "rounds": self.rounds,
            "round_medians_s": list(self.round_medians_s),
            "layers": [{"name": l.name, "op": l.op, "predicted_s": l.predicted_s, "measured_s": l.measured_s,
                        "predicted_forward_s": l.predicted_forward_s, "measured_forward_s": l.measured_forward_s,
                        "error_pct": l.error_pct} for l in self.layers],
        }


@dataclass(frozen=True)
class SuiteResult:
    suite: str
    device: str
    profile: str
    profile_source: str
    machine: dict[str, Any]
    cases: tuple[CaseResult, ...]
    summary: ErrorSummary
    created_utc: str
    measurements_path: str | None
    load_before: tuple[float, float, float] | None = None
    load_after: tuple[float, float, float] | None = None
    notes: tuple[str, ...] = ()
    replayed: bool = False  # compared with stored measurements (nothing measured by this run)
    target_median_pct: float = 10.0
    target_worst_pct: float = 25.0

    @property
    def meets_target(self) -> bool:
        return meets_target(self.summary, self.target_median_pct, self.target_worst_pct)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "device": self.device, "profile": self.profile, "profile_source": self.profile_source,
            "machine": self.machine, "created_utc": self.created_utc, "measurements_path": self.measurements_path,
            "replayed": self.replayed, "load_before": list(self.load_before) if self.load_before else None,
            "load_after": list(self.load_after) if self.load_after else None,
            "summary": self.summary.to_dict(), "meets_target": self.meets_target,
            "target": {"median_abs_pct": self.target_median_pct, "worst_abs_pct": self.target_worst_pct},
            "cases": [c.to_dict() for c in self.cases], "notes": list(self.notes),
        }


# --- profile of this machine ---------------------------------------------------------------------------



def find_calibrated_profile(device: str = "cpu"):
    """The newest built-in profile written by `perfmodel calibrate` on this machine's CPU (or GPU).

    A profile matches when its source reads "calibrated on <this CPU model name>" (or GPU name) and,
    for a CPU, its core count equals this machine's physical cores.
    """
    from ..hardware.loader import builtin_hardware, load_hardware

    if device == "cuda":
        import torch

        what = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        cores = None
    else:
        what = _cpu_model()
        from ..torch.calibrate import cpu_topology

        cores = cpu_topology()["cores"]
    found = []
    for name, path in builtin_hardware().items():
        try:
            dev = load_hardware(path)
        except Exception:  # noqa: BLE001 - a broken profile of someone else's is not ours to report here
            continue
        if getattr(dev, "kind", None) != "device" or not what:
            continue
        if not dev.source.startswith(f"calibrated on {what} by perfmodel calibrate"):
            continue
        if cores is not None and dev.cores != cores:
            continue
        found.append((path.stat().st_mtime, dev))
    if not found:
        raise NotFoundError(
            f"no calibrated profile for this machine ({what or device}) among the built-in profiles; run "
            f"`perfmodel calibrate --device {device} --out hardware_profiles/devices/<name>.yaml` first, or pass --profile")
    return max(found, key=lambda x: x[0])[1]


def calibration_info(dev) -> dict[str, Any] | None:
    """Samples and wall time of the calibration a profile came from (read from its notes), if it was calibrated."""
    import re

    m = re.search(r"Fitted from (\d+) microbenchmark samples at \[([^\]]*)\] threads \((quick|full) grid(?:, (\d+) s)?\)",
                  dev.notes or "")
    if not m:
        return None
    pooled = re.search(r"Pooled over (\d+) calibration runs", dev.notes or "")
    return {"samples": int(m.group(1)), "threads": m.group(2), "grid": m.group(3),
            "wall_s": int(m.group(4)) if m.group(4) else None, "runs": int(pooled.group(1)) if pooled else 1}


def network_path(case: Case) -> Path:
    from ..paths import repo_root

    root = repo_root() or Path.cwd()
    p = root / NETWORK_DIR / case.network
    if not p.exists():
        raise NotFoundError(f"validation network file '{p}' is missing (suites need the source checkout)")
    return p


def _loadavg() -> tuple[float, float, float] | None:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]
    except (OSError, AttributeError):
        return None


def _layer_comparison(pred, meas) -> tuple[LayerComparison, ...]:
    by_name = {l.name: l for l in meas.per_layer}
    out = []
    for row in pred.layers:
        m = by_name.get(row.name)
        if m is None or row.op == "input":
            continue
        p_fwd = row.time_s["forward"]
        p_tot = row.time_s["total"]
        m_tot = m.forward_s + (m.backward_s or 0.0)
        out.append(LayerComparison(row.name, row.op, p_tot, m_tot, p_fwd, m.forward_s))
    return tuple(out)


# --- running -------------------------------------------------------------------------------------------

def _note(m, key: str) -> str | None:
    for n in m.notes:
        if n.startswith(key + "="):
            return n.split("=", 1)[1]
    return None


def replay_measurements(path: Path, suite: str, cases: Sequence[Case]) -> dict[str, list]:
    """Stored measurements of `suite` per case, as run_suite keeps them: per round the least disturbed attempt.

    Only the latest run is used: the records after the last round-1, attempt-1 record of the first case.
    """
    from ..torch.measure import load_measurements

    recs = [m for m in load_measurements(path) if _note(m, "suite") == suite]
    if not recs:
        raise NotFoundError(f"{path} holds no measurements of suite '{suite}'")
    first = cases[0].name
    starts = [i for i, m in enumerate(recs) if _note(m, "case") == first and _note(m, "round") == "1"
              and _note(m, "attempt") == "1"]
    recs = recs[starts[-1]:] if starts else recs
    out: dict[str, list] = {c.name: [] for c in cases}
    per: dict[tuple[str, str], list] = {}
    for m in recs:
        c, rnd = _note(m, "case"), _note(m, "round") or "1"
        if c in out:
            o = _note(m, "other_processes_cores")
            la = _note(m, "load_avg_before")
            per.setdefault((c, rnd), []).append((m, None if o in (None, "None") else float(o), la,
                                                 int(_note(m, "attempt") or 1)))
    for (c, _), ms in sorted(per.items(), key=lambda kv: int(kv[0][1])):
        best = min(ms, key=lambda x: x[1] or 0.0)
        out[c].append((best[0], best[1], _parse_load(best[2]), len(ms)))
    missing = [c for c, v in out.items() if not v]
    if missing:
        raise NotFoundError(f"{path} holds no measurement of case(s) {', '.join(missing)} of suite '{suite}'")
    return out


def _parse_load(text: str | None):
    if not text or text == "None":
        return None
    try:
        return tuple(float(x) for x in text.strip("()").split(","))
    except ValueError:
        return None


def select_cases(suite: Suite, only: Sequence[str] | None = None, steps: int | None = None,
                 warmup: int | None = None) -> tuple[Case, ...]:
    """The suite's cases, optionally filtered by name (or network stem / kind) and with other step counts."""
    cases = suite.cases
    if only:
        sel = [c for c in cases if c.name in only or c.network.rsplit(".", 1)[0] in only or c.kind in only]
        if not sel:
            raise InputError(f"no case of suite '{suite.name}' matches {list(only)}; cases: "
                             + ", ".join(c.name for c in cases))
        cases = tuple(sel)
    if steps is not None or warmup is not None:
        cases = tuple(replace(c, steps=steps if steps is not None else c.steps,
                              warmup=warmup if warmup is not None else c.warmup) for c in cases)
    return cases


def run_suite(name: str, *, device: str | None = None, profile: Any = None, report_dir: str | Path | None = None,
              measurements_path: str | Path | None = None, cases: Sequence[str] | None = None,
              steps: int | None = None, warmup: int | None = None, progress: TextIO | None = sys.stderr,
              per_layer: bool = True, rounds: int | None = None, replay: str | Path | None = None,
              wait_for_idle: bool = True) -> SuiteResult:
    """Predict, measure, store and compare every case of suite `name`; write the report if `report_dir` is given.

    `replay`: compare with measurements stored earlier in that JSONL file (by this suite) instead of
    measuring - for re-reporting after a model change; nothing is measured or appended.
    `wait_for_idle=False`: measure each case once, at once (no waiting for an idle machine, no repeat
    of a disturbed measurement) - for smoke tests.
    """
    if name not in SUITES:
        raise InputError(f"unknown suite '{name}'; measured suites: {', '.join(SUITES)}")
    suite = SUITES[name]
    device = device or suite.device
    if device != suite.device:
        raise InputError(f"suite '{name}' runs on {suite.device}; use --device {suite.device} "
                         f"(or the {'gpu' if device == 'cuda' else 'cpu-full'} suite)")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("measured validation suites need PyTorch: pip install 'perfmodel[torch]'") from None
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"suite '{name}' needs a CUDA device and torch sees none here")
    from ..graph.io import load_network
    from ..hardware.loader import load_hardware
    from ..prediction import predict
    from ..torch.measure import append_jsonl, default_measurements_path, machine_info, measure_training, summarize_times

    dev = load_hardware(profile, kind="device") if profile is not None else find_calibrated_profile(device)
    mpath = Path(measurements_path) if measurements_path else default_measurements_path(f"{name}.jsonl")
    if replay is not None:
        mpath = Path(replay)
    chosen = select_cases(suite, cases, steps, warmup)
    load_before = _loadavg()
    rounds = rounds if rounds is not None else suite.rounds
    if rounds < 1:
        raise InputError(f"rounds must be >= 1, got {rounds}")
    preds = {}
    for c in chosen:
        graph = load_network(network_path(c))
        preds[c.name] = (graph, predict(graph, dev, batch=c.batch, dtype=c.dtype,
                                        threads=c.threads if device == "cpu" else None, optimizer=c.optimizer,
                                        layers=True))
    # round-robin over the cases, `rounds` times: slow drifts of the machine's speed average out
    taken: dict[str, list] = {c.name: [] for c in chosen}
    if replay is not None:
        taken = replay_measurements(Path(replay), name, chosen)
        rounds = 0  # nothing to measure
    for rnd in range(1, rounds + 1):
        for i, c in enumerate(chosen, 1):
            graph, pred = preds[c.name]
            if progress is not None:
                progress.write(f"[round {rnd}/{rounds}, {i}/{len(chosen)}] {c.name}: {c.warmup}+{c.steps} steps ...")
                progress.flush()
            best = None
            for attempt in range(1, (MAX_ATTEMPTS if wait_for_idle else 1) + 1):
                if device == "cpu" and wait_for_idle:
                    wait_for_quiet(QUIET_IDLE, QUIET_MAX_WAIT_S)
                la = _loadavg()
                with Interference() as inf:
                    meas = measure_training(graph, c.batch, device=device, dtype=c.dtype, threads=c.threads,
                                            warmup=c.warmup, steps=c.steps, optimizer=c.optimizer,
                                            per_layer=c.per_layer and per_layer and rnd == 1)
                others = round(inf.others_cores, 3) if inf.available else None
                meas = meas.model_copy(update={"notes": tuple(meas.notes) + (
                    f"suite={name}", f"case={c.name}", f"round={rnd}", f"attempt={attempt}", f"load_avg_before={la}",
                    f"other_processes_cores={others}", f"profile={dev.name}")})
                append_jsonl(mpath, meas)
                if best is None or (others or 0.0) < (best[1] or 0.0):
                    best = (meas, others, la, attempt)
                best = best[:3] + (attempt,)  # last element: measurements taken in this round
                if device != "cpu" or others is None or others <= DISTURBED_CORES:
                    break
                if progress is not None:
                    progress.write(f" (other processes kept {others:.2f} cores busy: measuring again)")
                    progress.flush()
            taken[c.name].append(best)
            if progress is not None:
                m = best[0]
                progress.write(f" {m.median_s * 1e3:.1f} ms (predicted {pred.iteration_time_s * 1e3:.1f} ms)\n")
                progress.flush()
    results: list[CaseResult] = []
    for c in chosen:
        graph, pred = preds[c.name]
        ms = taken[c.name]
        times = [t for m, *_ in ms for t in m.step_times_s]
        st = summarize_times(times)
        others_l = [o for _, o, _, _ in ms if o is not None]
        with_layers = next((m for m, *_ in ms if m.per_layer), None)
        err = signed_error_pct(pred.iteration_time_s, st["median_s"])
        results.append(CaseResult(
            c, pred.iteration_time_s, st["median_s"], st["p10_s"], st["p90_s"], st["min_s"], st["max_s"], err,
            dict(pred.breakdown), dict(pred.stages),
            _layer_comparison(pred, with_layers) if with_layers is not None else (), ms[0][2],
            max(others_l) if others_l else None, sum(a for *_, a in ms), len(ms),
            tuple(m.median_s for m, *_ in ms)))
    mi = machine_info().model_dump(mode="json")
    summary = summarize({r.case.name: r.error_pct for r in results})
    notes = []
    load_after = _loadavg()
    if device == "cpu":
        busy = [r for r in results if (r.others_cores or 0.0) > DISTURBED_CORES]
        if busy:
            notes.append("other processes were busy during a measurement of " + ", ".join(
                f"{r.case.name} ({r.others_cores:.2f} cores)" for r in busy)
                + f" even after {MAX_ATTEMPTS} attempts: those times may be inflated")
        if any(r.rounds > 1 for r in results):
            spread = max((max(r.round_medians_s) / min(r.round_medians_s) - 1) * 100 for r in results if r.rounds > 1)
            notes.append(f"each case was measured in {results[0].rounds} rounds (round-robin over the cases) and its "
                         f"step times pooled; the largest difference between two rounds' medians of one case was "
                         f"{spread:.0f}% (the machine's speed drifts over time)")
        if replay is None and load_before and max(load_before[0], (load_after or load_before)[0]) >= QUIET_LOAD:
            notes.append(f"load average {load_before[0]} before and {load_after[0] if load_after else '?'} after the "
                         "run (other processes on the machine); each case waited for an idle moment and was "
                         "re-measured when disturbed (see the 'others' column)")
    res = SuiteResult(
        suite=name, device=device, profile=dev.name, profile_source=dev.source, machine=mi, cases=tuple(results),
        summary=summary, created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        measurements_path=str(mpath), load_before=load_before, load_after=load_after, notes=tuple(notes),
        replayed=replay is not None)
    if report_dir is not None:
        from .report import write_report

        write_report(res, Path(report_dir), calibration_info(dev))
    return res
