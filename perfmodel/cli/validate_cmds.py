"""`perfmodel validate` and `perfmodel calibrate`.

validate: run a validation suite, print its summary and write its report. Suites register in SUITES
(name -> Suite): `run(report_dir, data_path, options)` returns a result object with `to_dict()`,
`text(result)` renders the terminal summary; `options` holds the measured suites' flags (device,
profile, measurements file, cases, steps). Heavy imports (torch, plotly) happen inside the runners.

calibrate: microbenchmarks -> a fitted device profile (perfmodel.torch.calibrate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from .app import app, fail
from .render import dumps, table


@dataclass(frozen=True)
class Suite:
    run: Callable[[Optional[Path], Optional[Path], dict], Any]
    text: Callable[[Any], str]
    help: str = ""


def _dlbench_run(report: Optional[Path], data: Optional[Path], options: dict):
    try:
        from ..validation.dlbench import run_dlbench
    except ImportError as e:
        fail(f"suite 'dlbench-2016' is not available in this installation: {e}")
    return run_dlbench(report, csv_path=data)


def _dlbench_text(res) -> str:
    from ..validation.dlbench import CLASS_LABEL, DEVICE_CLASSES

    lines = [f"{res.suite}: {len(res.rows)} published rows predicted ({res.source})", "",
             "error per device class (held-out rows: all but the FCN-5 rows that fit the framework factors)"]
    rows = []
    for cls in DEVICE_CLASSES + ("all",):
        s = res.summary_for(cls)
        if s is not None:
            rows.append((CLASS_LABEL.get(cls, "all"), s.n, f"{s.median_abs_error_pct:.0f}%",
                         f"{s.p90_abs_error_pct:.0f}%", f"{s.worst_abs_error_pct:.0f}%", s.worst_row))
    lines.append(table(["device class", "rows", "median", "p90", "worst", "worst row"], rows, "lrrrrl"))
    lines += ["", "fitted factors (published / model on FCN-5 rows)"]
    lines.append(table(["framework", "device class", "factor", "rows"],
                       [(f.framework, f.device_class, f"{f.factor:.3f}", len(f.rows) if f.fitted else "none: 1")
                        for f in res.factors], "llrr"))
    lines += ["", "claims"] + [f"  {c.reproduced:7s} {c.claim}" for c in res.claims]
    return "\n".join(lines)


def _measured_run(name: str):
    def run(report: Optional[Path], data: Optional[Path], options: dict):
        import sys

        from ..validation.suites import run_suite

        return run_suite(name, device=options.get("device"), profile=options.get("profile"), report_dir=report,
                         measurements_path=data, cases=options.get("cases") or None, steps=options.get("steps"),
                         warmup=options.get("warmup"), progress=None if options.get("json") else sys.stderr,
                         rounds=options.get("rounds"), replay=options.get("replay"),
                         wait_for_idle=not options.get("no_wait"))

    return run


def _measured_text(res) -> str:
    from ..validation.report import summary_rows

    lines = [f"{res.suite}: {len(res.cases)} cases on {res.device}, profile {res.profile}", ""]
    rows = [(r.case.name, f"{r.measured_s * 1e3:.1f}", f"{r.predicted_s * 1e3:.1f}", f"{r.error_pct:+.1f}%")
            for r in res.cases]
    lines.append(table(["case", "measured ms", "predicted ms", "error"], rows, "lrrr"))
    lines += ["", table(["metric", "value"], summary_rows(res.summary), "lr"),
              f"target (median <= {res.target_median_pct:.0f}%, worst <= {res.target_worst_pct:.0f}%): "
              f"{'met' if res.meets_target else 'not met'}"]
    lines += [f"note: {n}" for n in res.notes]
    lines.append(f"{'compared with the measurements stored in' if res.replayed else 'measurements appended to'} "
                 f"{res.measurements_path}")
    return "\n".join(lines)


def _ddp_run(report: Optional[Path], data: Optional[Path], options: dict):
    import sys

    try:
        from ..torch.ddp import SUITE_ROUNDS, report_from_measurements, run_ddp_suite
    except ImportError as e:
        fail(f"suite 'ddp-cpu' is not available (perfmodel.torch.ddp.run_ddp_suite could not be imported: {e}); "
             "it needs PyTorch with torch.distributed")
    if options.get("device") not in (None, "cpu"):
        fail(f"suite 'ddp-cpu' runs on the CPU only (gloo); got --device {options.get('device')}")
    if options.get("replay") is not None:
        return report_from_measurements(options["replay"], profile=options.get("profile"), report_dir=report,
                                        write=report is not None)
    return run_ddp_suite(report, data, cases=options.get("cases") or None, profile=options.get("profile"),
                         steps=options.get("steps"), warmup=options.get("warmup"),
                         rounds=options.get("rounds") or SUITE_ROUNDS, wait_idle=not options.get("no_wait"),
                         progress=None if options.get("json") else sys.stderr)


def _generic_text(res) -> str:
    if hasattr(res, "text") and callable(res.text):
        return res.text()
    d = res.to_dict() if hasattr(res, "to_dict") else res
    if isinstance(d, dict) and "summary" in d:
        return dumps(d["summary"])
    return dumps(d)


SUITES: dict[str, Suite] = {
    "dlbench-2016": Suite(_dlbench_run, _dlbench_text,
                          "Shi et al. 2016 table: 6 networks x 4 frameworks x 2 CPUs (threads) + 3 GPUs"),
    "cpu-quick": Suite(_measured_run("cpu-quick"), _measured_text, "four small measured cases on this CPU (minutes)"),
    "cpu-full": Suite(_measured_run("cpu-full"), _measured_text,
                      "16 measured cases on this CPU: 8 network kinds at 1 and 2 threads"),
    "gpu": Suite(_measured_run("gpu"), _measured_text, "the cpu-full kinds at GPU batches, fp32 and bf16 (CUDA)"),
    "ddp-cpu": Suite(_ddp_run, _generic_text, "multi-process torch.distributed data parallel on CPU"),
}


@app.command()
def validate(
    suite: str = typer.Option(..., "--suite", help="validation suite: " + ", ".join(SUITES)),
    report: Optional[Path] = typer.Option(None, "--report", help="folder to write the report into (markdown, HTML, JSON)"),
    data: Optional[Path] = typer.Option(None, "--data", help="published table (dlbench-2016) or measurements JSONL file "
                                        "to append to (measured suites; default validation/measurements/<suite>.jsonl)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (measured suites; default: the suite's)"),
    profile: Optional[str] = typer.Option(None, "--profile", help="hardware profile to predict with (default: the "
                                          "profile `perfmodel calibrate` wrote for this machine)"),
    case: Optional[list[str]] = typer.Option(None, "--case", help="run only these cases (name, network or kind); repeatable"),
    steps: Optional[int] = typer.Option(None, "--steps", help="timed steps per case (default: the suite's)"),
    warmup: Optional[int] = typer.Option(None, "--warmup", help="untimed warm-up steps per case"),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="passes over the cases (measured suites; default: "
                                         "the suite's, 4 for cpu-full); step times are pooled over them"),
    replay: Optional[Path] = typer.Option(None, "--replay", help="measured suites: compare with the measurements "
                                          "stored in this JSONL file by the suite's last run instead of measuring"),
    no_wait: bool = typer.Option(False, "--no-wait", help="measured suites: measure each case once at once, without "
                                 "waiting for an idle machine or repeating a disturbed measurement (smoke tests)"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Compare the model with a validation suite (published tables or measured runs) and write its report."""
    if suite not in SUITES:
        fail(f"unknown suite '{suite}'; known: {', '.join(SUITES)}")
    if device is not None and device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, got '{device}'")
    if steps is not None and steps < 1:
        fail(f"--steps must be >= 1, got {steps}")
    if rounds is not None and rounds < 1:
        fail(f"--rounds must be >= 1, got {rounds}")
    options = {"device": device, "profile": profile, "cases": case, "steps": steps, "warmup": warmup,
               "rounds": rounds, "replay": replay, "no_wait": no_wait, "json": json_out}
    res = SUITES[suite].run(report, data, options)
    if json_out:
        typer.echo(dumps(res.to_dict()))
        return
    typer.echo(SUITES[suite].text(res))
    if report is not None:
        typer.echo(f"\nreport written to {report}/")


@app.command()
def calibrate(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="profile file to write, e.g. "
                                       "hardware_profiles/devices/<name>.yaml (default: print only)"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU: measure 1, powers of two and up to this many "
                                          "threads (default: the physical cores; more than that measures oversubscription)"),
    quick: bool = typer.Option(False, "--quick", help="a smaller grid (about a third of the time)"),
    name: Optional[str] = typer.Option(None, "--name", help="profile name (default: the file stem)"),
    samples: Optional[Path] = typer.Option(None, "--samples", help="also append the raw timings to this JSONL file"),
    from_samples: Optional[Path] = typer.Option(None, "--from-samples", help="fit again from a samples file; runs no benchmark"),
    record: int = typer.Option(-1, "--record", help="with --from-samples: which calibration run of the file (0 = first, -1 = last)"),
    pool: bool = typer.Option(False, "--pool", help="with --from-samples: pool every run of the file made on the "
                              "same grid (per benchmark the median over runs); steadier on a shared machine"),
    statistic: str = typer.Option("median", "--statistic", help="with --from-samples: how each sample's repeats "
                                  "become its time: median (as measured), min or mean"),
    allow_busy: bool = typer.Option(False, "--allow-busy", help="write the profile even when other processes disturbed "
                                    "more than 20% of the samples"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output (the profile and the fit residuals)"),
) -> None:
    """Microbenchmark this machine (GEMM, convolution, memory passes, dispatch, optimizer step) and fit its profile."""
    import sys

    if device not in ("cpu", "cuda"):
        fail(f"--device must be cpu or cuda, got '{device}'")
    if threads is not None and threads < 1:
        fail(f"--threads must be >= 1, got {threads}")
    if from_samples is not None:  # a refit needs no torch (perfmodel.calibration)
        from ..calibration.profile import refit

        if statistic not in ("median", "min", "mean"):
            fail(f"--statistic must be median, min or mean, got '{statistic}'")
        r = refit(from_samples, out, name, record=record, allow_busy=allow_busy, statistic=statistic, pool=pool)
    else:
        try:
            from ..torch import calibrate as cal
        except ImportError as e:
            fail(f"calibrate needs PyTorch ({e}); install it with: pip install 'perfmodel[torch]'")
        r = cal.calibrate(out, device=device, threads=threads, quick=quick, name=name,
                          progress=None if json_out else sys.stderr, samples_path=samples, allow_busy=allow_busy)
    if json_out:
        typer.echo(dumps({"profile": r.profile, "path": str(r.path) if r.path else None, "wall_s": r.wall_s,
                          "residuals": r.residuals, "checks": r.checks}))
        return
    import statistics

    from ..units import fmt_bytes, fmt_count

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
    typer.echo("\n".join(lines))
