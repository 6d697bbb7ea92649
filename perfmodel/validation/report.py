"""The text of the measured suites' reports (cpu-quick, cpu-full, gpu): markdown, a self-contained HTML page
(plotly, imported lazily, plotly.js embedded so the page opens offline), the README section and the
terminal summary. perfmodel.validation.writer writes the files.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

from .metrics import ErrorSummary
from .protocol import TextTable


def _ms(x: float) -> str:
    return f"{x * 1e3:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" * len(headers)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def summary_rows(s: ErrorSummary) -> list[tuple[str, str]]:
    return [
        ("cases", str(s.n)),
        ("median absolute error", f"{s.median_abs_pct:.1f}%"),
        ("mean absolute error", f"{s.mean_abs_pct:.1f}%"),
        ("90th percentile absolute error", f"{s.p90_abs_pct:.1f}%"),
        ("worst absolute error", f"{s.max_abs_pct:.1f}%"),
        ("mean signed error (bias)", f"{s.mean_signed_pct:+.1f}%"),
        ("cases within 10% / 25%", f"{s.within_10pct} / {s.within_25pct}"),
        ("worst cases", ", ".join(f"{n} ({e:+.1f}%)" for n, e in s.worst)),
    ]


def _top_breakdown(bd: dict[str, float]) -> str:
    tot = sum(bd.values()) or 1.0
    parts = sorted(((k, v) for k, v in bd.items() if v > 0), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v / tot:.0%}" for k, v in parts[:3])


def report_markdown(res, calibration: dict[str, Any] | None = None) -> str:
    """The report as markdown (res: a SuiteResult)."""
    s = res.summary
    m = res.machine
    lines = [
        f"# Validation suite `{res.suite}`: predicted vs measured training steps",
        "",
        f"Generated {res.created_utc} by `perfmodel validate --suite {res.suite}`. Every case is predicted with "
        f"the calibrated profile `{res.profile}` ({res.profile_source}) and measured with "
        "`perfmodel.torch.measure` (warm-up steps, then timed steps; the median step time is compared). "
        "The networks (validation/networks/) are not used by calibration, which fits microbenchmarks only.",
        "",
        f"Machine: {m.get('cpu_model')} ({m.get('physical_cores')} physical cores, {m.get('logical_cpus')} logical CPUs)"
        + (f", GPU {m['gpu_name']}" if m.get("gpu_name") else "")
        + f", torch {m.get('torch_version')}, Python {m.get('python_version')}, {m.get('os')}.",
        (f"Compared with the measurements stored in `{Path(res.measurements_path).name}` by the suite's last run "
         "(re-reported after a model change; nothing re-measured)." if res.replayed else
         f"Load average (1, 5, 15 min) before the run: {res.load_before}; after: {res.load_after}."
         + (f" Measurements: `{Path(res.measurements_path).name}` (append-only JSONL)." if res.measurements_path else "")),
        "",
        *([f"Calibration: `perfmodel calibrate` ran {calibration.get('samples')} microbenchmark samples "
           f"({calibration.get('grid')} grid) at {calibration.get('threads')} threads"
           + (f", {calibration['runs']} times (per benchmark the median over the runs of each run's median "
              f"repeat), {calibration.get('wall_s')} s in all." if calibration.get("runs", 1) > 1
              else f" in {calibration.get('wall_s')} s."), ""] if calibration else []),
        "## Summary",
        "",
        _md_table(["metric", "value"], summary_rows(s), "lr"),
        "",
        f"Target (median <= {res.target_median_pct:.0f}%, no case worse than {res.target_worst_pct:.0f}%): "
        f"**{'met' if res.meets_target else 'not met'}**.",
        "",
    ]
    for n in res.notes:
        lines += [f"Note: {n}", ""]
    lines += ["## Cases", "",
              "Signed error = (predicted - measured) / measured; positive means the model is too slow.", ""]
    rows = []
    for r in res.cases:
        c = r.case
        rows.append((c.name, c.kind, c.batch, c.threads if c.threads is not None else "-", c.dtype, c.optimizer,
                     _ms(r.measured_s), f"{_ms(r.p10_s)}-{_ms(r.p90_s)}", _ms(r.predicted_s), _pct(r.error_pct),
                     _top_breakdown(r.breakdown), r.load_avg[0] if r.load_avg else "-",
                     "-" if r.others_cores is None else f"{r.others_cores:.2f}", f"{r.rounds}/{r.attempts}"))
    lines.append(_md_table(["case", "kind", "batch", "threads", "dtype", "optimizer", "measured ms (median)",
                            "p10-p90 ms", "predicted ms", "error", "predicted breakdown", "load", "others",
                            "rounds/measurements"], rows, "llrrllrrrrlrrr"))
    lines += ["", "measured: median of the step times pooled over the rounds; load: 1-minute load average before "
              "the case's first round; others: most cores that other processes kept busy on average during one of "
              "the compared measurements; rounds/measurements: rounds compared and measurements taken (a "
              "disturbed one is repeated; all are stored)."]
    for r in res.cases:
        if not r.layers:
            continue
        lines += ["", f"## Per layer: `{r.case.name}`", "",
                  "Forward + backward of each layer, predicted vs measured (instrumented steps after the timed "
                  "ones; per-layer marks add a little time of their own, and with branches autograd may interleave "
                  "another branch's work into a layer's backward). The optimizer step and the dispatch between "
                  "layers are not in any layer.", ""]
        tot_p = sum(l.predicted_s for l in r.layers)
        tot_m = sum(l.measured_s for l in r.layers)
        lrows = [(l.name, l.op, f"{l.predicted_s * 1e3:.2f}", f"{l.measured_s * 1e3:.2f}", _pct(l.error_pct),
                  f"{l.measured_s / tot_m:.1%}" if tot_m else "-")
                 for l in r.layers]
        lrows.append(("**sum of layers**", "", f"{tot_p * 1e3:.2f}", f"{tot_m * 1e3:.2f}",
                      _pct(100 * (tot_p - tot_m) / tot_m if tot_m else None), ""))
        lines.append(_md_table(["layer", "op", "predicted ms", "measured ms", "error", "share of measured"], lrows,
                               "llrrrr"))
        by_op: dict[str, list[float]] = {}
        for l in r.layers:
            a = by_op.setdefault(l.op, [0.0, 0.0])
            a[0] += l.predicted_s
            a[1] += l.measured_s
        orows = [(op, f"{p * 1e3:.2f}", f"{mm * 1e3:.2f}", _pct(100 * (p - mm) / mm if mm else None))
                 for op, (p, mm) in sorted(by_op.items(), key=lambda kv: -kv[1][1])]
        lines += ["", "By op kind:", "", _md_table(["op", "predicted ms", "measured ms", "error"], orows, "lrrr")]
    lines.append("")
    return "\n".join(lines)


def report_figures(res) -> list:
    """Plotly figures: predicted vs measured scatter with y = x, error per case, per-layer comparisons."""
    import plotly.graph_objects as go

    figs = []
    kinds = sorted({r.case.kind for r in res.cases})
    sc = go.Figure()
    lo = min(min(r.measured_s, r.predicted_s) for r in res.cases) * 1e3 * 0.8
    hi = max(max(r.measured_s, r.predicted_s) for r in res.cases) * 1e3 * 1.25
    sc.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(color="black", dash="dash")))
    for band, col in ((1.25, "rgba(200,0,0,0.35)"), (1.10, "rgba(0,120,0,0.35)")):
        for f in (band, 1 / band):
            sc.add_trace(go.Scatter(x=[lo, hi], y=[lo * f, hi * f], mode="lines", showlegend=f == band,
                                    name=f"+/-{round((band - 1) * 100)}%", line=dict(color=col, width=1)))
    for k in kinds:
        rs = [r for r in res.cases if r.case.kind == k]
        sc.add_trace(go.Scatter(
            x=[r.measured_s * 1e3 for r in rs], y=[r.predicted_s * 1e3 for r in rs], mode="markers", name=k,
            marker=dict(size=10), text=[r.case.name for r in rs],
            error_x=dict(type="data", symmetric=False, array=[(r.p90_s - r.measured_s) * 1e3 for r in rs],
                         arrayminus=[(r.measured_s - r.p10_s) * 1e3 for r in rs]),
            hovertemplate="%{text}<br>measured %{x:.1f} ms<br>predicted %{y:.1f} ms<extra></extra>"))
    sc.update_layout(title=f"{res.suite}: predicted vs measured step time (median, p10-p90 bars)",
                     xaxis=dict(title="measured ms", type="log"), yaxis=dict(title="predicted ms", type="log"),
                     width=850, height=650)
    figs.append(sc)
    bar = go.Figure()
    names = [r.case.name for r in res.cases]
    errs = [r.error_pct for r in res.cases]
    bar.add_trace(go.Bar(x=names, y=errs, marker_color=["#2a7" if abs(e) <= 10 else "#e90" if abs(e) <= 25 else "#d33"
                                                        for e in errs]))
    for y in (-25, -10, 10, 25):
        bar.add_hline(y=y, line=dict(dash="dot", color="gray"))
    bar.update_layout(title="signed error per case (predicted - measured) / measured", yaxis_title="%",
                      width=1000, height=500)
    figs.append(bar)
    for r in res.cases:
        if not r.layers:
            continue
        f = go.Figure()
        ln = [l.name for l in r.layers]
        f.add_trace(go.Bar(x=ln, y=[l.measured_s * 1e3 for l in r.layers], name="measured"))
        f.add_trace(go.Bar(x=ln, y=[l.predicted_s * 1e3 for l in r.layers], name="predicted"))
        f.update_layout(title=f"{r.case.name}: forward + backward per layer", barmode="group", yaxis_title="ms",
                        width=1200, height=520, xaxis=dict(tickangle=-60))
        figs.append(f)
    return figs


def report_html(res, markdown: str | None = None) -> str | None:
    """A self-contained HTML page (plotly.js embedded); None when plotly is not installed."""
    try:
        import plotly.io as pio
    except ImportError:
        return None
    figs = report_figures(res)
    parts = []
    for i, f in enumerate(figs):
        parts.append(pio.to_html(f, full_html=False, include_plotlyjs=True if i == 0 else False))
    s = res.summary
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in summary_rows(s))
    case_rows = "".join(
        f"<tr><td>{html.escape(r.case.name)}</td><td>{r.case.threads or '-'}</td><td>{r.measured_s * 1e3:.1f}</td>"
        f"<td>{r.predicted_s * 1e3:.1f}</td><td>{r.error_pct:+.1f}%</td></tr>" for r in res.cases)
    notes = "".join(f"<p><b>Note:</b> {html.escape(n)}</p>" for n in res.notes)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>perfmodel validation: {html.escape(res.suite)}</title>
<style>body{{font-family:sans-serif;max-width:1250px;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>Validation suite {html.escape(res.suite)}</h1>
<p>Profile <code>{html.escape(res.profile)}</code>: {html.escape(res.profile_source)}.<br>
Machine: {html.escape(str(res.machine.get('cpu_model')))}, {res.machine.get('physical_cores')} cores, torch
{html.escape(str(res.machine.get('torch_version')))}. Load average before {res.load_before}, after {res.load_after}.
Generated {html.escape(res.created_utc)}.</p>
<table>{rows}</table>
<p>Target (median &le; {res.target_median_pct:.0f}%, worst &le; {res.target_worst_pct:.0f}%):
<b>{'met' if res.meets_target else 'not met'}</b></p>{notes}
{''.join(parts)}
<h2>Cases</h2><table><tr><th>case</th><th>threads</th><th>measured ms</th><th>predicted ms</th><th>error</th></tr>
{case_rows}</table>
</body></html>
"""


def readme_section(res, calibration: dict[str, Any] | None = None) -> str:
    """A short markdown section with the suite's figures, for the project README."""
    s = res.summary
    cal = ""
    if calibration:
        cal = (f" The profile `{res.profile}` came from `perfmodel calibrate` ({calibration.get('grid')} grid, "
               f"{calibration.get('samples', '?')} microbenchmark samples at {calibration.get('threads')} threads, "
               + (f"pooled over {calibration['runs']} runs, " if calibration.get("runs", 1) > 1 else "")
               + f"{calibration.get('wall_s', '?')} s); no validation network is used to fit anything.")
    worst = ", ".join(f"`{n}` {e:+.1f}%" for n, e in s.worst)
    return "\n".join([
        f"### Measured validation: `{res.suite}` on this machine",
        "",
        f"{s.n} training-step cases ({', '.join(sorted({r.case.kind for r in res.cases}))}), each predicted with "
        f"the calibrated profile of the machine and measured with PyTorch on {res.machine.get('cpu_model')} "
        f"({res.machine.get('physical_cores')} cores, torch {res.machine.get('torch_version')}).{cal}",
        "",
        "| metric | value |",
        "| --- | ---: |",
        f"| median absolute error | {s.median_abs_pct:.1f}% |",
        f"| mean absolute error | {s.mean_abs_pct:.1f}% |",
        f"| 90th percentile absolute error | {s.p90_abs_pct:.1f}% |",
        f"| worst case | {s.max_abs_pct:.1f}% |",
        f"| cases within 10% / 25% | {s.within_10pct} / {s.within_25pct} of {s.n} |",
        "",
        f"Worst cases: {worst}. Target (median <= 10%, every case <= 25%): "
        f"{'met' if res.meets_target else 'not met'}. Report: `validation/reports/{res.suite}/report.md` "
        f"(and `report.html`); reproduce with `perfmodel validate --suite {res.suite} --report "
        f"validation/reports/{res.suite}`.",
        "",
    ])


def plural(n: int, word: str) -> str:
    """The count with its noun: "1 case", "2 cases"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def terminal_text(res) -> list:
    """The summary `perfmodel validate` prints for a measured suite (lines and tables)."""
    rows = [(r.case.name, f"{r.measured_s * 1e3:.1f}", f"{r.predicted_s * 1e3:.1f}", f"{r.error_pct:+.1f}%")
            for r in res.cases]
    out = [f"{res.suite}: {plural(len(res.cases), 'case')} on {res.device}, profile {res.profile}", "",
           TextTable(["case", "measured ms", "predicted ms", "error"], rows, "lrrr"), "",
           TextTable(["metric", "value"], summary_rows(res.summary), "lr"),
           f"target (median <= {res.target_median_pct:.0f}%, worst <= {res.target_worst_pct:.0f}%): "
           f"{'met' if res.meets_target else 'not met'}"]
    out += [f"note: {n}" for n in res.notes]
    out.append(f"{'compared with the measurements stored in' if res.replayed else 'measurements appended to'} "
               f"{res.measurements_path}")
    return out
