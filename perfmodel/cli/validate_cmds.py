"""`perfmodel validate` and `perfmodel calibrate`.

validate: run a validation suite registered in perfmodel.validation.registry (one line per suite; each suite
follows perfmodel.validation.protocol.Suite), print its summary and write its report folder
(perfmodel.validation.writer). Heavy imports (torch, plotly) happen inside the suites.

calibrate: microbenchmarks -> a fitted device profile (perfmodel.torch.calibrate).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import PerfModelError
from ..units import fmt_bytes, fmt_count
from ..validation.cluster_emu_links import calibrate_links
from ..validation.protocol import RunOptions
from ..validation.registry import available, load_suite
from ..validation.runner import run_suite_by_name
from ..validation.storage import calibration_samples_path, measurement_store
from .app import app, fail
from .render import dumps, table


def _render(text: Any) -> str:
    """A suite's terminal summary (lines and perfmodel.validation.protocol.TextTable) as text."""
    if isinstance(text, str):
        return text
    out = []
    for part in text:
        out.append(part if isinstance(part, str) else table(part.headers, part.rows, part.align or None))
    return "\n".join(out)


def _list_suites() -> str:
    rows = []
    for name, suite in available().items():
        if isinstance(suite, str):
            rows.append((name, "-", f"not available: {suite.split('(', 1)[-1].rstrip(')')}"))
        else:
            rows.append((name, "measured" if suite.measured else "published", suite.help))
    return table(["suite", "kind", "description"], rows, "lll")


def _check_data_file(path: Path, flag: str = "--data") -> None:
    """One-line errors for an input file that is missing or a folder (its content is checked by the suite)."""
    if not path.exists():
        fail(f"{flag}: file '{path}' does not exist")
    if path.is_dir():
        fail(f"{flag}: '{path}' is a folder, expected a file")


def _store(suite: Any, store: Optional[Path], commit: bool, replay: Optional[Path]):
    """Where a measured run appends (None for a replay or a published table)."""
    if suite.measured and replay is None:
        return measurement_store(suite.name, store, commit)
    if commit or store is not None:
        fail("--store and --commit-measurements apply to measured runs only (not to --replay or a published table)")
    return None


@app.command()
def validate(
    suite: Optional[str] = typer.Option(None, "--suite", help="validation suite to run (see --list)"),
    list_: bool = typer.Option(False, "--list", help="list the registered suites and exit"),
    report: Optional[Path] = typer.Option(None, "--report", help="folder to write the report into (markdown, HTML, JSON)"),
    data: Optional[Path] = typer.Option(None, "--data", help="published table to compare with (dlbench-2016)"),
    store: Optional[Path] = typer.Option(None, "--store", help="measured suites: JSONL file to append the measurements "
                                         "to (default: $PERFMODEL_DATA or ~/.local/share/perfmodel/measurements/)"),
    commit_measurements: bool = typer.Option(False, "--commit-measurements", help="measured suites: append to the "
                                             "tracked validation/measurements/<suite>.jsonl of the checkout (and "
                                             "update tracked calibrated profiles a suite fits, e.g. ddp-cpu's link)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (measured suites; default: the suite's)"),
    profile: Optional[str] = typer.Option(None, "--profile", help="hardware profile to predict with (default: the "
                                          "profile `perfmodel calibrate` wrote for this machine)"),
    case: Optional[list[str]] = typer.Option(None, "--case", help="run only these cases (name, network or kind); repeatable"),
    steps: Optional[int] = typer.Option(None, "--steps", help="timed steps per case (default: the suite's)"),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="untimed warm-up steps per case"),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="passes over the cases (measured suites; default: "
                                         "the suite's, 4 for cpu-full); step times are pooled over them"),
    seed: Optional[int] = typer.Option(None, "--seed", help="suites that draw their cases (cpu-random): the seed "
                                       "(default: a fresh one, recorded with the measurements)"),
    replay: Optional[Path] = typer.Option(None, "--replay", help="measured suites: compare with the measurements "
                                          "stored in this JSONL file by the suite's last run instead of measuring"),
    no_wait: bool = typer.Option(False, "--no-wait", help="measured suites: measure each case once at once, without "
                                 "waiting for an idle machine or repeating a disturbed measurement (smoke tests)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Compare the model with a validation suite (published tables or measured runs) and write its report."""
    if list_:
        typer.echo(_list_suites())
        return
    if suite is None:
        fail("--suite is required (or --list to see the suites)")
    if device is not None and device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, got '{device}'")
    for flag, v, lo in (("--steps", steps, 1), ("--rounds", rounds, 1), ("--warmup", warmup, 0)):
        if v is not None and v < lo:
            fail(f"{flag} must be >= {lo}, got {v}")
    if replay is not None:
        _check_data_file(replay, "--replay")
    try:
        s = load_suite(suite)
        if data is not None:
            if s.measured:
                fail(f"--data is the published table of a published suite; suite '{suite}' is measured: "
                     "use --store to choose where its measurements go, --replay to compare stored ones")
            _check_data_file(data)
        options = RunOptions(
            report_dir=report, data=None if s.measured else data,
            store=_store(s, store, commit_measurements, replay), replay=replay, device=device, profile=profile,
            commit=commit_measurements, cases=tuple(case or ()), steps=steps, warmup=warmup, rounds=rounds,
            wait=not no_wait, seed=seed,
            progress=None if json_out else sys.stderr)
        res = run_suite_by_name(suite, options)
    except PerfModelError as e:
        fail(str(e))
    if json_out:
        typer.echo(dumps(res.to_dict()))
        return
    typer.echo(_render(s.text(res)))
    if report is not None:
        typer.echo(f"\nreport written to {report}/")


def _calibrate_links(out: Optional[Path], json_out: bool) -> None:
    """calibrate --links: cluster-emu's link calibration (perfmodel.validation.cluster_emu_links.calibrate_links)."""
    try:
        paths = calibrate_links(out, (lambda m: None) if json_out else (lambda m: print(m, file=sys.stderr)))
    except PerfModelError as e:
        fail(str(e))
    typer.echo(dumps({"links": [str(p) for p in paths]}) if json_out else "\n".join(f"wrote {p}" for p in paths))


def _calibration_text(r) -> str:
    """The terminal summary of a calibration result (perfmodel.calibration.profile.CalibrationResult)."""
    p, f = r.profile, r.fit
    errs = [abs(x["error_pct"]) for x in r.residuals]
    lines = [f"{p['name']}: {p['model']}", f"source: {p['source']}",
             f"benchmarks: {len(r.samples)} samples in {r.wall_s:.1f} s",
             f"peak fp32 {fmt_count(f.peak_flops['fp32'], 'FLOP/s')}"
             + "".join(f", {k} {fmt_count(v, 'FLOP/s')}" for k, v in f.peak_flops.items() if k != "fp32"),
             f"memory bandwidth {fmt_bytes(f.memory_bandwidth_Bps)}/s, kernel overhead {f.kernel_overhead_s * 1e6:.2f} us"]
    if f.is_cpu:
        lines.append(f"thread scaling: serial fraction {f.serial_fraction:.3f}, per-core bandwidth "
                     f"{fmt_bytes(f.per_core_bandwidth_Bps or 0)}/s, hyperthread penalty {f.hyperthread_penalty}")
    if f.elementwise:
        lines.append("elementwise rates per core: " + ", ".join(
            f"{k} {fmt_count(v, 'FLOP/s')}" for k, v in sorted(f.elementwise.items(), key=lambda kv: kv[1])[:4])
            + f", ... ({len(f.elementwise)} keys)")
    if errs:
        lines.append(f"fit residuals on the benchmark samples: median {statistics.median(errs):.1f}%, "
                     f"p90 {sorted(errs)[int(0.9 * (len(errs) - 1))]:.1f}%")
    for c in r.checks:
        lines.append(f"check {c['label']} at {c['threads']} threads: measured {c['measured_s'] * 1e3:.2f} ms, "
                     f"predicted {c['predicted_s'] * 1e3:.2f} ms ({c['error_pct']:+.0f}%)")
    lines.append(f"profile written to {r.path}" if r.path else "(no --out: profile not written)")
    return "\n".join(lines)


def _samples_file(samples: Optional[Path], device: str) -> Path:
    """--samples, else the user data folder (validation.storage.calibration_samples_path); says where on stderr."""
    path = Path(samples) if samples is not None else calibration_samples_path(device)
    typer.echo(f"raw timings are appended to {path} (refit: `perfmodel calibrate --from-samples {path}`)", err=True)
    return path


@app.command()
def calibrate(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="profile file to write, e.g. "
                                       "hardware_profiles/devices/<name>.yaml (default: print only)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU: measure 1, powers of two and up to this many "
                                          "threads (default: the physical cores; more than that measures oversubscription)"),
    quick: bool = typer.Option(False, "--quick", help="a smaller grid (about a third of the time)"),
    name: Optional[str] = typer.Option(None, "--name", help="profile name (default: the file stem)"),
    samples: Optional[Path] = typer.Option(None, "--samples", help="append the raw timings to this JSONL file "
                                           "(default: <user data folder>/calibration/<device>-samples.jsonl)"),
    from_samples: Optional[Path] = typer.Option(None, "--from-samples", help="fit again from a samples file; runs no benchmark"),
    record: int = typer.Option(-1, "--record", help="with --from-samples: which calibration run of the file (0 = first, -1 = last)"),
    pool: bool = typer.Option(False, "--pool", help="with --from-samples: pool every run of the file made on the "
                              "same grid (per benchmark the median over runs); steadier on a shared machine"),
    statistic: str = typer.Option("median", "--statistic", help="with --from-samples: how each sample's repeats "
                                  "become its time: median (as measured), min or mean"),
    allow_busy: bool = typer.Option(False, "--allow-busy", help="write the profile even when other processes disturbed "
                                    "more than 20% of the samples"),
    links: bool = typer.Option(False, "--links", help="fit alpha-beta link profiles from gloo all-reduce and send/recv "
                               "(4 KiB..64 MiB): across the nodes under torchrun, else in the emulated cluster (root); "
                               "--out is then the folder (default hardware_profiles/links/calibrated/)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output (the profile and the fit residuals)"),
) -> None:
    """Microbenchmark this machine (GEMM, convolution, memory passes, dispatch, optimizer step) and fit its profile."""
    import sys

    if links:
        return _calibrate_links(out, json_out)

    if device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, got '{device}'")
    if threads is not None and threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    if from_samples is not None:  # a refit needs no torch (perfmodel.calibration)
        from ..calibration.profile import refit
        from ..optimizers import calibration_check_time

        if statistic not in ("median", "min", "mean"):
            fail(f"--statistic must be median, min or mean, got '{statistic}'")
        r = refit(from_samples, out, name, record=record, allow_busy=allow_busy, statistic=statistic, pool=pool,
                  check_time=calibration_check_time)
    else:
        try:
            from ..torch import calibrate as cal
        except ImportError as e:
            fail(f"calibrate needs PyTorch ({e}); install it with: pip install 'perfmodel[torch]'")
        samples = _samples_file(samples, device)
        try:
            r = cal.calibrate(out, device=device, threads=threads, quick=quick, name=name,
                              progress=None if json_out else sys.stderr, samples_path=samples, allow_busy=allow_busy)
        except PerfModelError:
            if samples.is_file():
                typer.echo(f"the samples are kept in {samples}: refit without measuring again with "
                           f"`perfmodel calibrate --from-samples {samples} --allow-busy`", err=True)
            raise
    if json_out:
        typer.echo(dumps({"profile": r.profile, "path": str(r.path) if r.path else None, "wall_s": r.wall_s,
                          "residuals": r.residuals, "checks": r.checks}))
        return
    typer.echo(_calibration_text(r))
