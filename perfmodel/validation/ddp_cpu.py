"""The `ddp-cpu` suite: torch.distributed data parallel on this machine's CPU (gloo over loopback), predicted
vs measured.

1. The link: a gloo all-reduce microbenchmark (perfmodel.torch.ddp.calibrate_allreduce) fitted to the
   ring formula (alpha, B), saved as the link profile `local-gloo-loopback`; no training run is used.
2. The processes: a contention microbenchmark (perfmodel.torch.ddp.calibrate_process_speed), repeated
   PROCESS_SPEED_RUNS times, the median kept: how fast each process computes (and streams memory) while
   all of them run.
3. The cases below, measured with perfmodel.torch.ddp.measure_ddp in SUITE_ROUNDS rounds (round-robin,
   step times pooled), and predicted (`predict_ddp`): the calibrated CPU profile of this machine on a node
   of `world` worker processes joined by the fitted link.

Every record goes to one JSONL file under one run id (default: the user's data folder, see
storage.py); `report_from_measurements` rebuilds the report from those records without measuring.

Communication on CPUs: gloo moves the data with the same cores that compute, so with every core busy
an all-reduce cannot run "for free" behind backward: overlap only when the processes leave an idle core
(`CPU_COMM_OVERLAP_NEEDS_IDLE_CORE`).
"""

from __future__ import annotations

import datetime as _dt
import os
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from ..errors import InputError, NotFoundError
from ..graph.io import load_network
from ..graph.layer_graph import LayerGraph
from ..hardware.schema import Device, Link
from ..hardware.loader import load_hardware
from ..hardware.topology import Node
from ..paths import repo_root
from ..prediction import predict
from ..torch.ddp_records import DDPMeasurement, LinkCalibration
from ..torch.quiet import progress_every, wait_for_quiet
from ..torch.records import append_jsonl, read_jsonl, summarize_times
from .ddp_report import TARGET_PCT, readme_section, report_markdown, terminal_text
from .metrics import case_summary
from .profiles import resolve_profile
from .protocol import Row, RunOptions
from .storage import measurement_store
from .writer import write_report

SUITE_NAME = "ddp-cpu"
# On CPUs gloo's transfers need a core; overlap with backward is only possible with a spare one.
CPU_COMM_OVERLAP_NEEDS_IDLE_CORE = True
SUITE_ROUNDS = 3  # each case is measured in this many rounds, round-robin over the cases, and the step times pooled
IDLE_FRACTION = 0.9  # before a measurement, wait (up to IDLE_WAIT_S) until the CPU is this idle for a few seconds
IDLE_WAIT_S = 300.0
IDLE_SUSTAINED = 3  # consecutive idle seconds
PROCESS_SPEED_RUNS = 3  # the contention microbenchmark is repeated and the median kept


def gloo_suite_preflight(suite: str, device: str | None, replay: bool = False) -> None:
    """InputError unless a gloo suite can run: on the CPU only, and (to measure, not to replay) with
    torch.distributed importable."""
    if device not in (None, "cpu"):
        raise InputError(f"suite '{suite}' runs on the CPU only (gloo); got --device {device}")
    if replay:
        return
    try:
        import torch.distributed  # noqa: F401
    except ImportError as e:
        raise InputError(f"suite '{suite}' needs PyTorch with torch.distributed ({e})") from None


@dataclass(frozen=True)
class DDPCase:
    name: str
    network: str  # built-in name or path relative to the repository root
    batch: int  # per process
    world: int = 2
    threads: int = 1
    steps: int = 15
    warmup: int = 3


CASES = (
    DDPCase("mlp-b64", "validation/networks/mlp.yaml", 64),
    DDPCase("mlp-b256", "validation/networks/mlp.yaml", 256, steps=8),
    DDPCase("cnn-vgg-small-b24", "validation/networks/vgg_small.yaml", 24, steps=8),
    DDPCase("cnn-resnet-small-b32", "validation/networks/resnet_small.yaml", 32, steps=8),
    DDPCase("autoencoder-b128", "autoencoder", 128),
    DDPCase("lstm-b64", "validation/networks/lstm.yaml", 64, steps=8),
)


# --- prediction ---------------------------------------------------------------------------------------

def local_node(device: Device, link: Link, world: int = 2, host_memory_bytes: float | None = None,
               process_speed: float | None = None, memory_speed: float | None = None) -> Node:
    """`world` worker processes on this machine's CPU, exchanging data over the loopback link."""
    if host_memory_bytes is None:
        try:
            host_memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            host_memory_bytes = device.memory_bytes
    return Node(name=f"local-{world}proc-gloo", source=f"{world} worker processes on this machine, gloo over loopback",
                device=device, devices=world, host_memory=host_memory_bytes, fabric_type="loopback", fabric=link,
                process_speed=process_speed, memory_speed=memory_speed)


def predict_ddp(network: str | Path | LayerGraph, batch: int, device: Device, link: Link, *, world: int = 2,
                threads: int = 1, overlap: bool | None = None, process_speed: float | None = None,
                memory_speed: float | None = None, straggler_cv: float = 0.0, optimizer: str = "sgd",
                zero: int = 0, sharding: str = "none"):
    """Predicted DDP step (a Prediction) for `world` processes x `threads` threads on `device`; the synchronous
    step waits for the slowest process (straggler_cv, see perfmodel.parallel.sync_modes). zero / sharding: a
    ZeRO stage or FSDP sharding of the model state over the processes (the fsdp-cpu suite)."""
    if overlap is None:
        cores = device.cores or 1
        overlap = not (CPU_COMM_OVERLAP_NEEDS_IDLE_CORE and world * threads >= cores)
    return predict(load_network(network), local_node(device, link, world, process_speed=process_speed,
                                                     memory_speed=memory_speed),
                   batch=batch, devices=world,
                   threads=threads, optimizer=optimizer, overlap=overlap, straggler_cv=straggler_cv, zero=zero,
                   sharding=sharding, layers=False)


# --- results --------------------------------------------------------------------------------------------

def pool(ms: Sequence[DDPMeasurement]) -> DDPMeasurement:
    """One DDPMeasurement from several rounds of the same case: step times pooled."""
    first = ms[0]
    steps = tuple(t for m in ms for t in m.step_times_s)
    s = summarize_times(steps)
    ranks = tuple(tuple(t for m in ms for t in m.rank_step_times_s[r]) for r in range(first.world))
    return DDPMeasurement(first.network, first.batch, first.world, first.threads, first.warmup, len(steps),
                          first.params, ranks, steps, s["median_s"], s["p10_s"], s["p90_s"], first.machine,
                          first.created_utc, first.load_avg_before)


@dataclass(frozen=True)
class DDPCaseResult:
    case: DDPCase
    measured: DDPMeasurement  # pooled over the rounds
    predicted_s: float
    breakdown: dict[str, float]
    parallel: dict[str, Any]
    single: dict[str, float] | None = None  # diagnostic: one process, no DDP, measured and predicted

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_s - self.measured.median_s) / self.measured.median_s

    def to_dict(self) -> dict[str, Any]:
        return {"case": asdict(self.case), "measured_median_s": self.measured.median_s,
                "measured_p10_s": self.measured.p10_s, "measured_p90_s": self.measured.p90_s,
                "predicted_s": self.predicted_s, "error_pct": self.error_pct, "breakdown": self.breakdown,
                "communication": {k: self.parallel.get(k) for k in (
                    "gradient_sync_s", "exposed_communication_s", "hidden_communication_s", "buckets", "overlap")},
                "params": self.measured.params, "load_avg_before": self.measured.load_avg_before,
                "single_process_reference": self.single}


@dataclass(frozen=True)
class DDPSuiteResult:
    suite: str
    profile: str
    profile_source: str
    link: LinkCalibration
    link_path: str | None
    cases: tuple[DDPCaseResult, ...] = ()
    measurements_path: str | None = None
    report_dir: str | None = None
    process_speed: float | None = None
    process_benchmark: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    host: dict[str, Any] | None = None  # host_description() of the judged run (None: not recorded)
    other_runs: tuple[dict[str, Any], ...] = ()  # earlier runs of the file, predicted by the same model
    run_id: str | None = None

    def summary(self) -> dict[str, Any]:
        return case_summary([(c.case.name, c.error_pct) for c in self.cases], TARGET_PCT)

    def comparisons(self) -> tuple[Row, ...]:
        return tuple(Row(case=c.case.name, predicted_s=c.predicted_s, measured_s=c.measured.median_s,
                         group=f"{c.case.world} x {c.case.threads}", spread_s=(c.measured.p10_s, c.measured.p90_s))
                     for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "profile": self.profile, "profile_source": self.profile_source,
                "link": self.link.to_dict(), "link_path": self.link_path, "summary": self.summary(),
                "cases": [c.to_dict() for c in self.cases], "measurements_path": self.measurements_path,
                "process_speed": self.process_speed, "process_benchmark": self.process_benchmark,
                "report_dir": self.report_dir, "notes": list(self.notes), "host": self.host,
                "other_runs": list(self.other_runs), "run_id": self.run_id}

    def markdown(self) -> str:
        return report_markdown(self)

    def readme_section(self) -> str:
        return readme_section(self)

    def text(self) -> str:
        return "\n".join(terminal_text(self))


# --- running ----------------------------------------------------------------------------------------------

def host_description() -> dict[str, Any]:
    """What the stored records say about the host beyond machine_info's model name (which is the same, 'AMD EPYC',
    on different generations under KVM): CPU vendor, family, model, stepping and its widest vector ISA, from
    /proc/cpuinfo (Linux); {} elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    first = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in first.items()}
    flags = set(info.get("flags", "").split())
    isa = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "other")
    return {"vendor": info.get("vendor_id"), "cpu_family": info.get("cpu family"), "model": info.get("model"),
            "stepping": info.get("stepping"), "model_name": info.get("model name"), "vector_isa": isa,
            "cpus": text.count("processor\t:")}


def _repo_path(rel: str) -> Path:
    root = repo_root() or Path.cwd()
    return root / rel


def _resolve_network(spec: str) -> str | Path:
    p = _repo_path(spec)
    return p if p.suffix in (".yaml", ".yml", ".json") and p.exists() else spec


def _wait_idle(wait: bool, say) -> float | None:
    """Wait (when `wait`) for IDLE_SUSTAINED idle seconds, saying what it waits for; the last idle fraction."""
    if not wait:
        return None
    on_wait = progress_every(lambda m: say("  " + m), IDLE_FRACTION, IDLE_WAIT_S, IDLE_SUSTAINED)
    return wait_for_quiet(IDLE_FRACTION, IDLE_WAIT_S, sustained=IDLE_SUSTAINED, on_wait=on_wait)[0]


def _measure_link(base: dict, meas_path: Path, wait: bool, save_link_profile: bool, say):
    from ..torch.ddp import calibrate_allreduce, save_link  # imports torch

    say("all-reduce microbenchmark (gloo, 2 processes, 4 KiB .. 64 MiB) ...")
    _wait_idle(wait, say)
    cal = calibrate_allreduce()
    append_jsonl(meas_path, {**base, "kind": "allreduce_microbenchmark", "backend": "gloo", "world": 2,
                             **cal.to_dict()})
    say(f"  alpha {cal.alpha_s * 1e6:.1f} us, bandwidth {cal.bandwidth_Bps / 1e9:.2f} GB/s")
    return str(save_link(cal)) if save_link_profile else None


def _measure_process_speed(base: dict, meas_path: Path, wait: bool, say) -> None:
    """How fast each process computes while all of them run (a microbenchmark, not the training runs)."""
    from ..torch.ddp import calibrate_process_speed  # imports torch

    say("process contention microbenchmark (GEMM and convolution alone vs in both processes at once) ...")
    runs = []
    for _ in range(PROCESS_SPEED_RUNS):
        _wait_idle(wait, say)
        runs.append(calibrate_process_speed())
    proc = sorted(runs, key=lambda r: r["process_speed"])[len(runs) // 2]
    proc["runs"] = [r["process_speed"] for r in runs]
    proc["straggler_cv_runs"] = [r["straggler_cv"] for r in runs]
    proc["straggler_cv"] = statistics.median(proc["straggler_cv_runs"])
    proc["memory_speed_runs"] = [r["memory_speed"] for r in runs]
    proc["memory_speed"] = statistics.median(proc["memory_speed_runs"])
    append_jsonl(meas_path, {**base, "kind": "process_contention_microbenchmark", **proc})
    say(f"  each of 2 processes computes at {proc['process_speed']:.2f} x the speed of a lone one, "
        f"{proc['memory_speed']:.2f} x on memory-bound work; straggler cv {proc['straggler_cv']:.3f}")


def select_cases(cases: Sequence[DDPCase] | Sequence[str] | None, steps: int | None = None,
                 warmup: int | None = None) -> list[DDPCase]:
    """The chosen cases (DDPCase objects, or names / networks of CASES), with other step counts if given."""
    sel: list[DDPCase] = []
    for c in (cases or CASES):
        if isinstance(c, DDPCase):
            sel.append(c)
            continue
        found = [k for k in CASES if k.name == c or k.network == c]
        if not found:
            raise InputError(f"unknown ddp-cpu case '{c}'; known: {', '.join(k.name for k in CASES)}")
        sel.extend(found)
    if steps is not None or warmup is not None:
        sel = [replace(c, steps=steps or c.steps, warmup=c.warmup if warmup is None else warmup) for c in sel]
    return sel


def _measure_cases(sel: Sequence[DDPCase], rounds: int, base: dict, meas_path: Path, wait: bool,
                   single_process_reference: bool, say, first_round: int = 1) -> None:
    from ..torch.ddp import measure_ddp  # imports torch
    from ..torch.measure import measure_training

    for r in range(first_round - 1, first_round - 1 + rounds):
        for c in sel:
            idle = _wait_idle(wait, say)
            say(f"round {r + 1}, case {c.name}: {c.world} processes x {c.threads} thread, batch {c.batch} "
                f"per process ...")
            m = measure_ddp(_resolve_network(c.network), c.batch, world=c.world, threads=c.threads, warmup=c.warmup,
                            steps=c.steps)
            append_jsonl(meas_path, {**m.to_dict(), **base, "case": c.name, "case_spec": asdict(c), "round": r + 1,
                                     "idle_fraction_before": idle})
            say(f"  median {m.median_s * 1e3:.1f} ms")
            if single_process_reference:
                # diagnostic only (never used by the prediction): the same step in one process, no DDP
                sm = measure_training(_resolve_network(c.network), c.batch, threads=c.threads, warmup=c.warmup,
                                      steps=c.steps)
                append_jsonl(meas_path, {**sm.to_json_dict(), **base, "case": c.name, "round": r + 1,
                                         "role": "single-process reference (diagnostic)"})


def run_ddp_suite(report_dir: str | Path | None = None, measurements_path: str | Path | None = None, *,
                  cases: Sequence[DDPCase] | Sequence[str] | None = None, profile: Device | str | None = None,
                  link: Link | str | None = None, save_link_profile: bool = False,
                  steps: int | None = None, warmup: int | None = None, rounds: int = SUITE_ROUNDS,
                  process_speed: float | None = None, wait_idle: bool = True,
                  single_process_reference: bool = True, progress=None, run_id: str | None = None,
                  microbenchmarks: bool = True, first_round: int = 1) -> DDPSuiteResult:
    """Run the ddp-cpu suite: microbenchmarks (link, process contention), DDP cases, predictions; the report
    folder is written when `report_dir` is given.

    Every measurement is appended to `measurements_path` (default: the user's data folder) under one run id
    (a new one, or `run_id` to add rounds to a stored run: with microbenchmarks=False the link and process speed
    come from that run's records, and the rounds are numbered from `first_round`; so a long run can be measured
    in several short calls); the result is built from those records by `report_from_measurements`.
    link / process_speed: given, they replace the corresponding microbenchmark. save_link_profile: also write the
    fitted link as hardware_profiles/links/calibrated/local-gloo-loopback.yaml (a tracked file of the checkout).
    """
    def say(msg: str) -> None:
        if progress is not None:
            print(msg, file=progress, flush=True)

    dev = resolve_profile(profile, "cpu")
    meas_path = measurement_store(SUITE_NAME, measurements_path)
    run_id = run_id or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    base = {"schema": "perfmodel.measurement/1", "suite": SUITE_NAME, "run_id": run_id, "host": host_description()}
    link_path = None
    if isinstance(link, str):
        link = load_hardware(link, kind="link")
    if link is None and microbenchmarks:  # the report reads the fitted link back from the run's records
        link_path = _measure_link(base, meas_path, wait_idle, save_link_profile, say)
    if process_speed is None and microbenchmarks:
        _measure_process_speed(base, meas_path, wait_idle, say)
    _measure_cases(select_cases(cases, steps, warmup), rounds, base, meas_path, wait_idle, single_process_reference,
                   say, first_round)
    res = report_from_measurements(meas_path, run_id, profile=dev, link=link, process_speed=process_speed)
    res = replace(res, link_path=link_path, report_dir=str(report_dir) if report_dir is not None else None)
    if report_dir is not None:
        write_report(res, Path(report_dir))
    return res


def _run_records(meas_path: Path, run_id: str | None) -> tuple[str, list[dict]]:
    recs = [r for r in read_jsonl(meas_path) if r.get("suite") == SUITE_NAME and r.get("run_id")]
    if run_id is None:
        if not recs:
            raise NotFoundError(f"no ddp-cpu suite run in {meas_path}")
        run_id = max(r["run_id"] for r in recs)
    return run_id, [r for r in recs if r["run_id"] == run_id]


def _link_calibration(recs: list[dict], run_id: str, link: Link | None):
    if link is not None:
        return LinkCalibration(link.latency_s, link.effective_bandwidth_Bps, (), 1, {}, ""), link
    ar = [r for r in recs if r.get("kind") == "allreduce_microbenchmark"]
    if not ar:
        raise NotFoundError(f"run {run_id} has no all-reduce microbenchmark; pass link=")
    a = ar[-1]
    cal = LinkCalibration(a["alpha_s"], a["bandwidth_Bps"], tuple((int(n), t) for n, t in a["points"]),
                          a["threads"], a["machine"], a["created_utc"])
    return cal, cal.link()


def _case_results(recs: list[dict], dev: Device, lk: Link, process_speed, memory_speed):
    """Per case: the pooled measurement and its prediction; and the spread between rounds and idle fractions."""
    ddp = [r for r in recs if r.get("kind") == "ddp_training_step"]
    singles = [r for r in recs if r.get("role", "").startswith("single-process")]
    out, spreads, idles = [], [], []
    for name in dict.fromkeys(r["case"] for r in ddp):
        rs = [r for r in ddp if r["case"] == name]
        c = DDPCase(**rs[0]["case_spec"])
        ms = [DDPMeasurement.from_record(r) for r in rs]
        spreads.append(max(x.median_s for x in ms) / min(x.median_s for x in ms) - 1)
        idles += [r["idle_fraction_before"] for r in rs if r.get("idle_fraction_before") is not None]
        net = _resolve_network(c.network)
        p = predict_ddp(net, c.batch, dev, lk, world=c.world, threads=c.threads, process_speed=process_speed,
                        memory_speed=memory_speed)
        st = [t for r in singles if r["case"] == name for t in r["step_times_s"]]
        ref = None
        if st:
            ref = {"measured_s": statistics.median(st),
                   "predicted_s": predict(load_network(net), dev, batch=c.batch, threads=c.threads,
                                          layers=False).iteration_time_s}
        out.append(DDPCaseResult(c, pool(ms), p.iteration_time_s, dict(p.breakdown), dict(p.parallel or {}), ref))
    rounds = max((r.get("round", 1) for r in ddp), default=1)
    return tuple(out), spreads, idles, rounds


def other_runs(meas_path: Path, judged: str, dev: Device) -> tuple[dict[str, Any], ...]:
    """The other runs of the file (each with a run id and training steps), each re-predicted by the current model
    from its own records: run id, host (None before hosts were recorded), cases, median / p90 / worst |error|."""
    ids = dict.fromkeys(r["run_id"] for r in read_jsonl(meas_path) if r.get("suite") == SUITE_NAME
                        and r.get("run_id") and r.get("kind") == "ddp_training_step" and r["run_id"] != judged)
    out = []
    for rid in ids:
        res = report_from_measurements(meas_path, rid, profile=dev, compare_runs=False)
        s = res.summary()
        out.append({"run_id": rid, "host": res.host, "cases": s["cases"],
                    "median_abs_error_pct": s["median_abs_error_pct"], "p90_abs_error_pct": s["p90_abs_error_pct"],
                    "worst_abs_error_pct": s["worst_abs_error_pct"]})
    return tuple(out)


def report_from_measurements(measurements_path: str | Path | None = None, run_id: str | None = None, *,
                             profile: Device | str | None = None, report_dir: str | Path | None = None,
                             link: Link | None = None, process_speed: float | None = None,
                             write: bool = False, compare_runs: bool = True) -> DDPSuiteResult:
    """Predict every case of one stored suite run (default: the latest run id of the file, which is append-only
    and keeps every earlier run); with `write` (or a `report_dir`) also write its report folder (default
    validation/reports/ddp-cpu). compare_runs: also re-predict the file's other runs (other_runs), for the
    report's comparison.

    The link (alpha, B) and the process speed come from that run's microbenchmark records unless given.
    """
    dev = resolve_profile(profile, "cpu")
    meas_path = Path(measurements_path) if measurements_path else _repo_path("validation/measurements/ddp-cpu.jsonl")
    asked = run_id is not None
    run_id, recs = _run_records(meas_path, run_id)
    cal, lk = _link_calibration(recs, run_id, link)
    pc = [r for r in recs if r.get("kind") == "process_contention_microbenchmark"]
    proc = pc[-1] if pc else None
    memory_speed = None  # the measured straggler_cv is reported, not used (see torch.ddp.CONTENTION_STREAM's note)
    if process_speed is None and proc is not None:
        process_speed = proc["process_speed"]
        memory_speed = proc.get("memory_speed")  # runs before it was measured: an equal share of the bandwidth
    cases, spreads, idles, rounds = _case_results(recs, dev, lk, process_speed, memory_speed)
    notes = [f"suite run {run_id} (asked for)" if asked else f"suite run {run_id}: the latest run id in the file "
             "(runs are selected by run id; the append-only file keeps every earlier run)"]
    if rounds > 1 and spreads:
        notes.append(f"each case measured in {rounds} rounds (round-robin over the cases), step times pooled; the "
                     f"largest difference between two rounds' medians of one case was {100 * max(spreads):.0f}%")
    if idles:
        notes.append(f"before each measurement the CPU was {min(idles):.0%}-{max(idles):.0%} idle "
                     "(other processes share this machine)")
    if CPU_COMM_OVERLAP_NEEDS_IDLE_CORE:
        notes.append("gradient all-reduce not overlapped with backward when the processes use every core "
                     "(gloo needs a core to move data)")
    rep_dir = Path(report_dir) if report_dir else _repo_path("validation/reports/ddp-cpu")
    res = DDPSuiteResult(SUITE_NAME, dev.name, dev.source, cal, None, cases, str(meas_path), str(rep_dir),
                         process_speed, {k: v for k, v in proc.items() if k not in ("schema", "suite", "run_id", "kind")}
                         if proc else None, tuple(notes), next((r["host"] for r in recs if r.get("host")), None),
                         other_runs(meas_path, run_id, dev) if compare_runs and link is None else (), run_id)
    if write or report_dir is not None:
        write_report(res, rep_dir)
    return res


class _DDPSuite:
    """The registered `ddp-cpu` suite (perfmodel.validation.protocol.Suite)."""

    name = SUITE_NAME
    help = "multi-process torch.distributed data parallel on this CPU (gloo, 2 processes)"
    measured = True

    def case_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in CASES)

    def case_aliases(self) -> tuple[str, ...]:
        return tuple(c.network for c in CASES)

    def run(self, o: RunOptions) -> DDPSuiteResult:
        if o.replay is not None:
            gloo_suite_preflight(SUITE_NAME, o.device, replay=True)
            return report_from_measurements(o.replay, profile=o.profile)
        gloo_suite_preflight(SUITE_NAME, o.device)
        return run_ddp_suite(None, o.store, cases=o.cases or None, profile=o.profile, steps=o.steps,
                             warmup=o.warmup, rounds=o.rounds or SUITE_ROUNDS, wait_idle=o.wait, progress=o.progress,
                             save_link_profile=o.commit)

    def text(self, report: DDPSuiteResult) -> list:
        return terminal_text(report)


SUITE = _DDPSuite()
