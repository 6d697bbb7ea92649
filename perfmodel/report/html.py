"""Self-contained HTML pages of plotly figures (plotly.js embedded once, so the page opens offline).

`write_report` builds the `perfmodel report` page for a network on one or more hardware profiles: a
summary table, the per-layer time chart, the breakdown, the memory chart and the scaling curve
(multi-device predictions through perfmodel.parallel; a note instead when that model is missing).
"""

from __future__ import annotations

import datetime as _dt
import html as _html
from pathlib import Path
from typing import Any, Sequence

from ..units import fmt_bytes, fmt_count, fmt_seconds

DEFAULT_SCALING_DEVICES = (1, 2, 4, 8, 16, 32, 64)
MAX_LAYER_BARS = 400  # above this many layers the per-layer chart shows the costliest ones

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 24px 40px; color: #222; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 16px; margin-top: 22px; }
table { border-collapse: collapse; margin: 8px 0 16px 0; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 9px; text-align: right; } th { background: #f4f4f4; }
td.l, th.l { text-align: left; }
.note { color: #555; font-size: 13px; max-width: 1100px; } .warn { color: #a33; font-size: 13px; }
.chart { width: 100%; min-height: 460px; }
"""


def _e(x: Any) -> str:
    return _html.escape(str(x))


def figure_div(fig: Any, include_plotlyjs: bool, height: int = 460) -> str:
    """One figure as an HTML <div> (with plotly.js inlined when include_plotlyjs); a figure that sets its own
    height (the per-layer chart of a large network) keeps it."""
    import plotly.io as pio

    height = fig.layout.height or height
    fig.update_layout(height=height)
    return pio.to_html(fig, include_plotlyjs=bool(include_plotlyjs), full_html=False, default_width="100%",
                       default_height=f"{height}px", config={"displaylogo": False, "responsive": True})


def page(title: str, body_parts: Sequence[str]) -> str:
    """A full HTML page from body fragments."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body_parts) + "\n</body></html>\n")


def table_html(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A simple HTML table; the first `left` columns are left-aligned."""
    h = "".join(f"<th class=\"{'l' if i < left else ''}\">{_e(c)}</th>" for i, c in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td class=\"{'l' if i < left else ''}\">{_e(c)}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def figures_html(sections: Sequence[tuple[str, Sequence[Any]]], title: str, intro: str = "") -> str:
    """A page of sections (heading, items); an item is a plotly figure or an HTML string. plotly.js is
    embedded once, with the first figure."""
    parts = [f"<h1>{_e(title)}</h1>"]
    if intro:
        parts.append(intro)
    js_done = False
    for heading, items in sections:
        if heading:
            parts.append(f"<h2>{_e(heading)}</h2>")
        for it in items:
            if isinstance(it, str):
                parts.append(it)
            else:
                parts.append(f"<div class=\"chart\">{figure_div(it, include_plotlyjs=not js_done)}</div>")
                js_done = True
    return page(title, parts)


def write_figures_html(figures: Sequence[Any], path: str | Path, title: str, intro: str = "") -> Path:
    """Write figures as one self-contained page."""
    p = Path(path)
    p.write_text(figures_html([("", list(figures))], title, intro), encoding="utf-8")
    return p


def efficiency_origin(device: Any) -> str:
    """How a device's efficiency curves were obtained, from its `efficiency.source`: 'calibrated' (measured
    by `perfmodel calibrate`), 'fitted' (fitted to published or measured tables) or 'default' (guesses)."""
    src = str(getattr(getattr(device, "efficiency", None), "source", "") or "").strip().lower()
    if src.startswith("calibrated"):
        return "calibrated"
    if src.startswith("fitted"):
        return "fitted"
    return "default"


EFFICIENCY_WORDS = {
    "calibrated": "calibrated efficiencies (measured on the machine by perfmodel calibrate)",
    "fitted": "fitted efficiencies (see the profile's efficiency source)",
    "default": "default efficiency guesses (not measured; perfmodel calibrate replaces them)",
}


def _summary_table(p, device: Any = None) -> str:
    m = p.memory
    rows = [
        ("iteration time", fmt_seconds(p.iteration_time_s)),
        ("throughput", f"{p.throughput_samples_per_s:,.1f} samples/s"),
        ("batch", f"{p.batch} ({p.devices} device{'s' if p.devices > 1 else ''})"),
        ("work per iteration", fmt_count(p.flops["total"], "FLOP")),
        ("achieved / peak", f"{fmt_count(p.achieved_flops, 'FLOP/s')} / {fmt_count(p.peak_flops, 'FLOP/s')} "
                            f"= {p.utilization:.1%}"),
        ("memory per device", f"{fmt_bytes(m.total_bytes)} of {fmt_bytes(m.capacity_bytes)} "
                              f"({'fits' if m.fits else 'DOES NOT FIT'}); largest batch that fits: {m.max_batch}"),
        ("bottleneck", p.bottleneck),
    ]
    heap = p.assumptions.get("heap_refault_s")
    if heap and p.iteration_time_s > 0:  # engine.heap: part of the forward's memory-bound time
        rows.append(("page faults (heap pages given back and faulted in again, mapped LSTM workspaces)",
                     f"{fmt_seconds(heap)} ({heap / p.iteration_time_s:.1%})"))
    if device is not None:
        rows.append(("efficiencies", f"{getattr(device, 'name', '')}: {EFFICIENCY_WORDS[efficiency_origin(device)]}"))
    rows += [(f"breakdown: {k}", f"{fmt_seconds(v)} ({v / p.iteration_time_s:.1%})")
             for k, v in p.breakdown.items() if v > 0 and p.iteration_time_s > 0]
    return table_html(["quantity", "value"], rows, left=2)


def scaling_points(network: Any, hardware: Any, devices: Sequence[int], *, batch: int | None, dtype: str,
                   optimizer: str) -> tuple[list[dict[str, Any]], str | None]:
    """Weak-scaling points (per-device batch fixed) via perfmodel.sweep; (points, note when unavailable)."""
    try:
        import perfmodel.parallel.predict  # noqa: F401
    except ImportError as e:
        return [], (f"The multi-device model is not available in this installation ({e}); "
                    "no scaling curve is drawn.")
    from ..sweeps import sweep

    res = sweep(network, hardware, devices=list(devices), batch=batch, dtype=dtype, optimizer=optimizer)
    pts = [r for r in res.rows if r["throughput"]]
    bad = [r for r in res.rows if r["error"] and not r["throughput"]]
    note = None
    if bad:
        note = "; ".join(f"{r['devices']} devices: {r['error']}" for r in bad[:4])
    return pts, note


def write_report(network: Any, hardware: Sequence[Any] | Any, out: str | Path, *, batch: int | None = None,
                 dtype: str = "fp32", optimizer: str = "sgd", threads: int | None = None,
                 devices: Sequence[int] | None = DEFAULT_SCALING_DEVICES, title: str | None = None) -> Path:
    """Write the HTML report of `network` on each of `hardware` to `out`; returns the path.

    Sections per hardware: summary, per-layer times, breakdown, memory vs batch; then the scaling curve
    (throughput and efficiency vs `devices`, weak scaling at the per-device batch) for all hardware.
    """
    from ..graph.io import load_network
    from ..hardware.loader import load_hardware
    from ..prediction import predict
    from ..serving import _serving_device
    from . import figures as F

    hws = list(hardware) if isinstance(hardware, (list, tuple)) else [hardware]
    g = load_network(network)
    sections: list[tuple[str, list[Any]]] = []
    scaling: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = []
    origins: set[str] = set()
    for h in hws:
        hw = load_hardware(h)
        dev = _serving_device(hw)
        origins.add(efficiency_origin(dev))
        p = predict(g, hw, batch=batch, dtype=dtype, threads=threads, optimizer=optimizer, layers=True)
        items: list[Any] = [_summary_table(p, dev)]
        items += [f"<p class=\"warn\">warning: {_e(w)}</p>" for w in p.warnings]
        top = MAX_LAYER_BARS if len(p.layers) > MAX_LAYER_BARS else None
        items += [F.layer_time_figure(p, top=top), F.breakdown_figure(p),
                  F.memory_figure(g, dev, p.batch // max(1, p.devices), dtype, optimizer)]
        sections.append((f"{p.network} on {p.hardware}: batch {p.batch}, {dtype}, optimizer {optimizer}", items))
        if devices:
            pts, note = scaling_points(g, hw, devices, batch=batch, dtype=dtype, optimizer=optimizer)
            if pts:
                scaling[getattr(hw, "name", str(h))] = pts
            if note:
                notes.append(f"{getattr(hw, 'name', h)}: {note}")
    if devices:
        items = []
        if scaling:
            items.append(F.scaling_figure(scaling, f"Scaling of {g.name}: throughput and efficiency vs devices "
                                                   "(weak scaling: per-device batch fixed)"))
            rows = [(name, r["devices"], r["global_batch"], fmt_seconds(r["iteration_time_s"]),
                     f"{r['throughput']:,.1f}", f"{r['scaling_efficiency']:.3f}" if r["scaling_efficiency"] else "-",
                     fmt_seconds(r["communication_s"]), r["error"] or "")
                    for name, pts in scaling.items() for r in pts]
            items.append(table_html(["hardware", "devices", "global batch", "iteration", "samples/s", "efficiency",
                                     "exposed comm.", "note"], rows, left=1))
        for n in notes:
            items.append(f"<p class=\"note\">{_e(n)}</p>")
        if not scaling and not notes:
            items.append("<p class=\"note\">no scaling points</p>")
        sections.append(("Scaling", items))
    import perfmodel

    intro = (f"<p class=\"note\">perfmodel {perfmodel.__version__}, generated "
             f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}. Predictions of an analytical model (roofline with "
             f"{' / '.join(EFFICIENCY_WORDS[o] for o in sorted(origins))}, per-kernel overheads, collective and "
             "data-flow models); see each profile's source for where the hardware numbers come from.</p>")
    text = figures_html(sections, title or f"perfmodel report: {g.name}", intro)
    path = Path(out)
    path.write_text(text, encoding="utf-8")
    return path
