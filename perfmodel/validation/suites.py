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
- `gpu`: the same kinds at GPU-sized batches, fp32 and bf16, and the CNNs at bf16 channels_last (needs CUDA).

The networks are files in validation/networks/, written for validation only: calibration runs
microbenchmarks (perfmodel.torch.calibrate) and never sees them. Measurements are appended as JSON
lines to the user's data folder (perfmodel.validation.storage; the tracked
validation/measurements/<suite>.jsonl only when asked) as perfmodel.torch.measure records (the suite, case,
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence, TextIO

from ..errors import InputError, NotFoundError
from ..graph.io import load_network
from ..paths import repo_root
from ..prediction import predict
from ..torch.isolated import measure_isolated
from ..torch.quiet import Interference, progress_every, wait_for_quiet
from ..torch.records import append_jsonl, load_measurements, summarize_times
from .metrics import ErrorSummary, meets_target, signed_error_pct, summarize
from .profiles import calibration_info, resolve_profile
from .protocol import Row, RunOptions
from .report import readme_section, report_html, report_markdown, terminal_text
from .storage import measurement_store
from .writer import write_report

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
PROGRESS_EVERY_S = 10.0  # while waiting for an idle machine, say so this often


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
    memory_format: str = "contiguous"  # or channels_last (TrainingSetup.memory_format)


@dataclass(frozen=True)
class MeasuredSuite:
    """A measured suite (perfmodel.validation.protocol.Suite): fixed cases timed on this machine."""

    name: str
    device: str  # cpu or cuda
    description: str
    cases: tuple[Case, ...]
    rounds: int = 1  # passes over all cases (round-robin); each case's step times are pooled over them
    measured: bool = True

    @property
    def help(self) -> str:
        return self.description

    def case_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cases)

    def case_aliases(self) -> tuple[str, ...]:
        """Other accepted --case values: a network (file stem) or a kind selects all its cases."""
        return tuple({c.network.rsplit(".", 1)[0] for c in self.cases} | {c.kind for c in self.cases})

    def run(self, options: RunOptions) -> "SuiteResult":
        """Predict and measure (or replay) the cases; see run_suite."""
        return run_suite(self.name, device=options.device, profile=options.profile, measurements_path=options.store,
                         cases=options.cases or None, steps=options.steps, warmup=options.warmup,
                         progress=options.progress, rounds=options.rounds, replay=options.replay,
                         wait_for_idle=options.wait)

    def text(self, report: "SuiteResult") -> str:
        return terminal_text(report)


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
    for kind, net, batch, opt in GPU_SPECS:  # the CNNs again in NHWC: cuDNN's layout conversions are gone
        if kind.startswith("cnn"):
            out.append(Case(f"{net}-b{batch}-bf16-cl", kind, f"{net}.yaml", batch, None, "bf16", opt, 5, 20,
                            memory_format="channels_last"))
    return tuple(out)


CPU_QUICK = MeasuredSuite(
    "cpu-quick", "cpu", "four small measured cases on this CPU (MLP, residual CNN, LSTM, transformer; minutes)",
    _cpu_cases(CPU_QUICK_SPECS[:2], [1], set(), 5, 2) + _cpu_cases(CPU_QUICK_SPECS[2:], [2], set(), 5, 2))
CPU_FULL = MeasuredSuite("cpu-full", "cpu", "16 measured cases on this CPU: 8 network kinds at 1 and 2 threads",
                         _cpu_cases(CPU_FULL_SPECS, [1, 2], {"resnet_small", "transformer"}, 10, 3), rounds=4)
GPU = MeasuredSuite("gpu", "cuda", "the cpu-full kinds at GPU-sized batches, fp32 and bf16, the CNNs also at bf16 "
                    "channels_last (needs CUDA)", _gpu_cases())
MEASURED_SUITES = (CPU_QUICK, CPU_FULL, GPU)


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
            "dtype": c.dtype, "memory_format": c.memory_format, "optimizer": c.optimizer, "steps": c.steps,
            "warmup": c.warmup,
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
    calibration: dict[str, Any] | None = None  # how the profile was calibrated (for the report's text)

    def comparisons(self) -> tuple[Row, ...]:
        return tuple(Row(case=r.case.name, predicted_s=r.predicted_s, measured_s=r.measured_s, group=r.case.kind,
                         spread_s=(r.p10_s, r.p90_s)) for r in self.cases)

    def markdown(self) -> str:
        return report_markdown(self, self.calibration)

    def html(self, markdown: str) -> str | None:
        return report_html(self, markdown)

    def readme_section(self) -> str:
        return readme_section(self, self.calibration)

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


# --- running -------------------------------------------------------------------------------------------

def network_path(case: Case) -> Path:
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


def _note(m, key: str) -> str | None:
    for n in m.notes:
        if n.startswith(key + "="):
            return n.split("=", 1)[1]
    return None


def replay_measurements(path: Path, suite: str, cases: Sequence[Case]) -> dict[str, list]:
    """Stored measurements of `suite` per case, as run_suite keeps them: per round the least disturbed attempt.

    Only the latest run is used: the records after the last round-1, attempt-1 record of the first case.
    """
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


def select_cases(suite: MeasuredSuite, only: Sequence[str] | None = None, steps: int | None = None,
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


def _measured_suite(name: str) -> MeasuredSuite:
    by_name = {s.name: s for s in MEASURED_SUITES}
    if name not in by_name:
        raise InputError(f"unknown suite '{name}'; measured suites: {', '.join(by_name)}")
    return by_name[name]


def _check_device(suite: MeasuredSuite, device: str | None, measuring: bool) -> str:
    device = device or suite.device
    if device != suite.device:
        raise InputError(f"suite '{suite.name}' runs on {suite.device}; use --device {suite.device} "
                         f"(or the {'gpu' if device == 'cuda' else 'cpu-full'} suite)")
    if not measuring:
        return device
    try:
        import torch
    except ImportError:
        raise InputError("measured validation suites need PyTorch: pip install 'perfmodel[torch]'") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(f"suite '{suite.name}' needs a CUDA device and torch sees none here")
    return device


def _predict_cases(chosen: Sequence[Case], dev, device: str) -> dict[str, tuple]:
    preds = {}
    for c in chosen:
        graph = load_network(network_path(c))
        preds[c.name] = (graph, predict(graph, dev, batch=c.batch, dtype=c.dtype,
                                        threads=c.threads if device == "cpu" else None, optimizer=c.optimizer,
                                        memory_format=c.memory_format, layers=True))
    return preds


def _wait_quiet(say) -> None:
    """Wait for an idle machine, saying what it waits for (at once, then every PROGRESS_EVERY_S)."""
    on_wait = progress_every(lambda m: say("\n  " + m, end=""), QUIET_IDLE, QUIET_MAX_WAIT_S,
                             every_s=PROGRESS_EVERY_S)
    wait_for_quiet(QUIET_IDLE, QUIET_MAX_WAIT_S, on_wait=on_wait)


def _measure_case(name: str, c: Case, graph, dev, device: str, rnd: int, mpath: Path, wait: bool, per_layer: bool,
                  say) -> tuple:
    """One round of one case: (least disturbed measurement, its others_cores, load average, attempts taken)."""
    most = MAX_ATTEMPTS if wait else 1
    best = None
    for attempt in range(1, most + 1):
        if device == "cpu" and wait:
            _wait_quiet(say)
        la = _loadavg()
        with Interference() as inf:
            meas = measure_isolated(graph, c.batch, device=device, dtype=c.dtype, threads=c.threads,
                                    warmup=c.warmup, steps=c.steps, optimizer=c.optimizer,
                                    per_layer=c.per_layer and per_layer and rnd == 1, memory_format=c.memory_format)
        others = round(inf.others_cores, 3) if inf.available else None
        meas = meas.model_copy(update={"notes": tuple(meas.notes) + (
            f"suite={name}", f"case={c.name}", f"round={rnd}", f"attempt={attempt}", f"load_avg_before={la}",
            f"other_processes_cores={others}", f"profile={dev.name}")})
        append_jsonl(mpath, meas)
        if best is None or (others or 0.0) < (best[1] or 0.0):
            best = (meas, others, la)
        if device != "cpu" or others is None or others <= DISTURBED_CORES:
            break
        if attempt < most:
            say(f" (other processes kept {others:.2f} cores busy: measuring again)", end="")
    return best + (attempt,)


def _measure_rounds(name: str, chosen: Sequence[Case], preds: dict, dev, device: str, rounds: int, mpath: Path,
                    wait: bool, per_layer: bool, say) -> dict[str, list]:
    """Round-robin over the cases, `rounds` times: slow drifts of the machine's speed average out."""
    taken: dict[str, list] = {c.name: [] for c in chosen}
    for rnd in range(1, rounds + 1):
        for i, c in enumerate(chosen, 1):
            graph, pred = preds[c.name]
            say(f"[round {rnd}/{rounds}, {i}/{len(chosen)}] {c.name}: {c.warmup}+{c.steps} steps ...", end="")
            best = _measure_case(name, c, graph, dev, device, rnd, mpath, wait, per_layer, say)
            taken[c.name].append(best)
            say(f" {best[0].median_s * 1e3:.1f} ms (predicted {pred.iteration_time_s * 1e3:.1f} ms)")
    return taken


def _case_result(c: Case, pred, ms: list) -> CaseResult:
    st = summarize_times([t for m, *_ in ms for t in m.step_times_s])
    others_l = [o for _, o, _, _ in ms if o is not None]
    with_layers = next((m for m, *_ in ms if m.per_layer), None)
    return CaseResult(
        c, pred.iteration_time_s, st["median_s"], st["p10_s"], st["p90_s"], st["min_s"], st["max_s"],
        signed_error_pct(pred.iteration_time_s, st["median_s"]), dict(pred.breakdown), dict(pred.stages),
        _layer_comparison(pred, with_layers) if with_layers is not None else (), ms[0][2],
        max(others_l) if others_l else None, sum(a for *_, a in ms), len(ms), tuple(m.median_s for m, *_ in ms))


def _suite_notes(results: Sequence[CaseResult], wait: bool, replayed: bool, load_before, load_after) -> list[str]:
    """What the report must say about how the CPU cases were measured (only what happened)."""
    notes = []
    busy = [r for r in results if (r.others_cores or 0.0) > DISTURBED_CORES]
    if busy:
        which = ", ".join(f"{r.case.name} ({r.others_cores:.2f} cores)" for r in busy)
        notes.append(f"other processes were busy during a measurement of {which} "
                     + (f"even after up to {MAX_ATTEMPTS} attempts" if wait else
                        "(measured once, without waiting for an idle machine: --no-wait)")
                     + ": those times may be inflated")
    if any(r.rounds > 1 for r in results):
        spread = max((max(r.round_medians_s) / min(r.round_medians_s) - 1) * 100 for r in results if r.rounds > 1)
        notes.append(f"each case was measured in {results[0].rounds} rounds (round-robin over the cases) and its "
                     f"step times pooled; the largest difference between two rounds' medians of one case was "
                     f"{spread:.0f}% (the machine's speed drifts over time)")
    if not replayed and load_before and max(load_before[0], (load_after or load_before)[0]) >= QUIET_LOAD:
        notes.append(f"load average {load_before[0]} before and {load_after[0] if load_after else '?'} after the "
                     "run (other processes on the machine); "
                     + ("each case waited for an idle moment and was re-measured when disturbed (see the 'others' "
                        "column)" if wait else "measured without waiting for an idle moment (--no-wait)"))
    return notes


def run_suite(name: str, *, device: str | None = None, profile: Any = None, report_dir: str | Path | None = None,
              measurements_path: str | Path | None = None, cases: Sequence[str] | None = None,
              steps: int | None = None, warmup: int | None = None, progress: TextIO | None = sys.stderr,
              per_layer: bool = True, rounds: int | None = None, replay: str | Path | None = None,
              wait_for_idle: bool = True) -> SuiteResult:
    """Predict, measure, store and compare every case of suite `name`; write the report if `report_dir` is given.

    Measurements are appended to `measurements_path` (default: the user's data folder, see storage.py).
    `replay`: compare with measurements stored earlier in that JSONL file (by this suite) instead of
    measuring - for re-reporting after a model change; nothing is measured or appended.
    `wait_for_idle=False`: measure each case once, at once (no waiting for an idle machine, no repeat
    of a disturbed measurement) - for smoke tests.
    """
    def say(msg: str, end: str = "\n") -> None:
        if progress is not None:
            progress.write(msg + end)
            progress.flush()

    suite = _measured_suite(name)
    device = _check_device(suite, device, replay is None)
    dev = resolve_profile(profile, device)
    chosen = select_cases(suite, cases, steps, warmup)
    rounds = rounds if rounds is not None else suite.rounds
    if rounds < 1:
        raise InputError(f"rounds must be >= 1, got {rounds}")
    preds = _predict_cases(chosen, dev, device)
    load_before = _loadavg()
    if replay is not None:
        mpath = Path(replay)
        taken = replay_measurements(mpath, name, chosen)
    else:
        mpath = measurement_store(name, measurements_path)
        taken = _measure_rounds(name, chosen, preds, dev, device, rounds, mpath, wait_for_idle, per_layer, say)
    results = tuple(_case_result(c, preds[c.name][1], taken[c.name]) for c in chosen)
    load_after = _loadavg()
    if replay is not None:  # the machine the stored measurements came from
        machine = next(iter(taken.values()))[0][0].machine.model_dump(mode="json")
    else:
        from ..torch.measure import machine_info  # imports torch

        machine = machine_info().model_dump(mode="json")
    notes = _suite_notes(results, wait_for_idle, replay is not None, load_before, load_after) if device == "cpu" else []
    res = SuiteResult(
        suite=name, device=device, profile=dev.name, profile_source=dev.source,
        machine=machine, cases=results,
        summary=summarize({r.case.name: r.error_pct for r in results}),
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        measurements_path=str(mpath), load_before=load_before, load_after=load_after, notes=tuple(notes),
        replayed=replay is not None, calibration=calibration_info(dev))
    if report_dir is not None:
        write_report(res, Path(report_dir))
    return res
