"""`perfmodel validate`: run a validation suite, print its summary and write its report.

Suites register in SUITES (name -> Suite): `run(report_dir, data_path)` returns a result object with
`to_dict()`, `text(result)` renders the terminal summary. Heavy imports happen inside the runners.
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
    run: Callable[[Optional[Path], Optional[Path]], Any]
    text: Callable[[Any], str]
    help: str = ""


def _dlbench_run(report: Optional[Path], data: Optional[Path]):
    from ..validation.dlbench import run_dlbench

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


SUITES: dict[str, Suite] = {
    "dlbench-2016": Suite(_dlbench_run, _dlbench_text,
                          "Shi et al. 2016 table: 6 networks x 4 frameworks x 2 CPUs (threads) + 3 GPUs"),
}


@app.command()
def validate(
    suite: str = typer.Option(..., "--suite", help="validation suite: " + ", ".join(SUITES)),
    report: Optional[Path] = typer.Option(None, "--report", help="folder to write the report into (markdown, HTML, JSON)"),
    data: Optional[Path] = typer.Option(None, "--data", help="published table or measurements to use instead of the committed copy"),
    json_out: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Compare the model with a validation suite (published tables or measured runs) and write its report."""
    if suite not in SUITES:
        fail(f"unknown suite '{suite}'; known: {', '.join(SUITES)}")
    res = SUITES[suite].run(report, data)
    if json_out:
        typer.echo(dumps(res.to_dict()))
        return
    typer.echo(SUITES[suite].text(res))
    if report is not None:
        typer.echo(f"\nreport written to {report}/")
