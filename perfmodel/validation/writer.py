"""The one report writer of every validation suite: report.md, report.html, results.json, README_SECTION.md.

    from perfmodel.validation.writer import write_report
    write_report(report, Path("validation/reports/cpu-full"))

`report` follows `perfmodel.validation.protocol.SuiteReport`. The HTML page is the report's own
`html(markdown)` when it has one, else a generic page (predicted-vs-measured scatter from its rows and
the markdown); without plotly no HTML is written. Files are replaced atomically.
"""

from __future__ import annotations

import html as _html
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..report.html import figure_div, page
from .protocol import Row


def _write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (temporary file in the same folder, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def results_json(report: Any) -> str:
    """The report's data as indented JSON (what results.json holds)."""
    return json.dumps(report.to_dict(), indent=1, default=str) + "\n"


def rows_figure(rows: Sequence[Row], title: str) -> Any:
    """Predicted vs measured scatter (one trace per group) with y = x and +/-10%, +/-25% bands."""
    import plotly.graph_objects as go

    fig = go.Figure()
    lo = min(min(r.measured_s, r.predicted_s) for r in rows) * 0.8
    hi = max(max(r.measured_s, r.predicted_s) for r in rows) * 1.25
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(color="black", dash="dash")))
    for band, col in ((1.25, "rgba(200,0,0,0.35)"), (1.10, "rgba(0,120,0,0.35)")):
        for f in (band, 1 / band):
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo * f, hi * f], mode="lines", showlegend=f == band,
                                     name=f"+/-{round((band - 1) * 100)}%", line=dict(color=col, width=1)))
    for g in sorted({r.group for r in rows}):
        rs = [r for r in rows if r.group == g]
        fig.add_trace(go.Scatter(x=[r.measured_s for r in rs], y=[r.predicted_s for r in rs], mode="markers",
                                 name=g or "cases", text=[r.case for r in rs], marker=dict(size=9),
                                 hovertemplate="%{text}<br>measured %{x:.4g} s<br>predicted %{y:.4g} s<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="measured s", yaxis_title="predicted s", xaxis_type="log",
                      yaxis_type="log")
    return fig


def generic_html(report: Any, markdown: str) -> str | None:
    """A page with the rows' scatter and the markdown report; None without plotly."""
    rows = report.comparisons()
    try:
        parts = [figure_div(rows_figure(rows, f"{report.suite}: predicted vs measured"), True)] if rows else []
    except ImportError:
        return None
    return page(f"perfmodel validation: {report.suite}",
                [f"<h1>Validation suite {_html.escape(report.suite)}</h1>", *parts,
                 f"<pre style='white-space:pre-wrap'>{_html.escape(markdown)}</pre>"])


def write_report(report: Any, report_dir: str | Path) -> dict[str, Path]:
    """Write the report folder; returns {"markdown", "json", "readme", "html" (when written)} -> path."""
    d = Path(report_dir)
    d.mkdir(parents=True, exist_ok=True)
    md = report.markdown()
    out = {"markdown": d / "report.md", "json": d / "results.json", "readme": d / "README_SECTION.md"}
    _write_text(out["markdown"], md)
    _write_text(out["json"], results_json(report))
    _write_text(out["readme"], report.readme_section())
    page = report.html(md) if hasattr(report, "html") else generic_html(report, md)
    if page is not None:
        out["html"] = d / "report.html"
        _write_text(out["html"], page)
    return out
