"""Plotly figures of predictions, sweeps, memory and scaling. Imports plotly inside each function.

Every function returns a plotly.graph_objects.Figure; nothing is written or shown here.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..result import BREAKDOWN_PARTS

PART_COLORS = {
    "compute": "#1f77b4", "memory": "#ff7f0e", "overhead": "#7f7f7f", "communication": "#d62728",
    "bubble": "#9467bd", "straggler": "#8c564b", "host_to_device": "#e377c2", "io": "#bcbd22",
}
STAGE_COLORS = {"forward": "#2ca02c", "backward_data": "#1f77b4", "backward_weight": "#9467bd"}
MEMORY_COLORS = {"weights": "#1f77b4", "gradients": "#aec7e8", "optimizer": "#ff7f0e", "activations": "#2ca02c",
                 "workspace": "#98df8a", "reserved": "#7f7f7f"}
MEMORY_TERMS = ("weights", "gradients", "optimizer", "activations", "workspace", "reserved")
MAX_TRACES = 24  # more line traces than this: plot the best row per (hardware, devices) instead
MAX_BARS = 120  # more scenarios than this in the breakdown bar: only the plotted (best) rows


def _go():
    try:
        import plotly.graph_objects as go
    except ImportError as e:  # pragma: no cover - depends on the environment
        from ..errors import InputError

        raise InputError("plots need plotly: pip install 'perfmodel[plot]' (or pip install plotly)") from e
    return go


def _layout(fig, title: str, **kw) -> Any:
    base = dict(template="plotly_white", margin=dict(l=60, r=20, t=60, b=60), legend=dict(orientation="v"))
    fig.update_layout(title=title, **{**base, **kw})
    return fig


# ---- sweeps -------------------------------------------------------------------------------------------------

def _varying(rows: Sequence[dict[str, Any]], keys: Iterable[str]) -> list[str]:
    return [k for k in keys if len({repr(r.get(k)) for r in rows}) > 1]


def sweep_series(rows: Sequence[dict[str, Any]], scenario_keys: Sequence[str]) -> tuple[dict[str, list[dict]], str]:
    """Feasible rows grouped into line series over `devices`: one per combination of the other varying keys,
    or, when that gives more than MAX_TRACES series, the best-throughput row per (network, hardware, devices)."""
    ok = [r for r in rows if r.get("error") is None and r.get("throughput")]
    other = [k for k in _varying(ok, scenario_keys) if k not in ("devices", "global_batch")]
    groups: dict[str, list[dict]] = {}
    for r in ok:
        name = " ".join(f"{r[k]}" if k in ("network", "hardware") else f"{k}={r[k]}" for k in other) or "all"
        groups.setdefault(name, []).append(r)
    note = ""
    if len(groups) > MAX_TRACES:
        keys = [k for k in ("network", "hardware") if k in other]
        best: dict[tuple, dict] = {}
        for r in ok:
            kk = tuple(r[k] for k in keys) + (r["devices"],)
            if kk not in best or r["throughput"] > best[kk]["throughput"]:
                best[kk] = r
        groups = {}
        for kk, r in best.items():
            groups.setdefault(" ".join(str(x) for x in kk[:-1]) or "best", []).append(r)
        rest = [k for k in other if k not in keys]
        note = f" (best over {', '.join(rest)} per device count)" if rest else ""
    for g in groups.values():
        g.sort(key=lambda r: r["devices"])
    return groups, note


def sweep_figures(result) -> list[Any]:
    """Throughput vs devices, scaling efficiency vs devices (one line per hardware / scenario family), and a
    stacked bar of the breakdown per scenario."""
    go = _go()
    rows = result.rows
    scen = [c for c in result.columns if c not in ("iteration_time_s",) and not c.endswith("_s")
            and c in (*result.axes.keys(),)]
    groups, note = sweep_series(rows, scen)
    f1 = go.Figure()
    f2 = go.Figure()
    nets = list(dict.fromkeys(r["network"] for rs in groups.values() for r in rs))
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    for name, rs in groups.items():
        x = [r["devices"] for r in rs]
        text = [f"batch {r['batch']}, {r['dtype']}, {r['iteration_time_s'] * 1e3:.2f} ms/iter" for r in rs]
        line = dict(dash=dashes[nets.index(rs[0]["network"]) % len(dashes)])
        f1.add_trace(go.Scatter(x=x, y=[r["throughput"] for r in rs], mode="lines+markers", name=name, text=text,
                                line=line))
        f2.add_trace(go.Scatter(x=x, y=[r["scaling_efficiency"] for r in rs], mode="lines+markers", name=name,
                                text=text, line=line))
    axis = dict(type="log", dtick=0.30102999566, title="devices")  # log2-spaced ticks
    _layout(f1, "Throughput vs devices" + note, xaxis=axis, yaxis=dict(title="samples / s", type="log"))
    _layout(f2, "Scaling efficiency vs devices" + note, xaxis=axis,
            yaxis=dict(title="throughput / (devices x 1-device throughput)", rangemode="tozero"))
    bars = [r for rs in groups.values() for r in rs]
    ok_all = [r for r in rows if r.get("error") is None and r.get("iteration_time_s")]
    if len(ok_all) <= MAX_BARS:
        bars = ok_all
    bars = bars[:MAX_BARS]
    f3 = breakdown_bars(bars, [k for k in scen if k != "global_batch"])
    return [f1, f2, f3]


def breakdown_bars(rows: Sequence[dict[str, Any]], scenario_keys: Sequence[str], title: str | None = None) -> Any:
    """Stacked bar of the breakdown parts (ms per iteration) per scenario row."""
    go = _go()
    keys = _varying(rows, scenario_keys) or ["hardware"]
    labels = [" ".join(f"{r[k]}" if k in ("network", "hardware") else f"{k}={r[k]}" for k in keys) for r in rows]
    fig = go.Figure()
    for part in BREAKDOWN_PARTS:
        ys = [(r.get(f"{part}_s") or 0.0) * 1e3 for r in rows]
        if any(y > 0 for y in ys):
            fig.add_trace(go.Bar(x=labels, y=ys, name=part, marker_color=PART_COLORS.get(part)))
    _layout(fig, title or "Breakdown of the iteration time per scenario", barmode="stack",
            yaxis=dict(title="ms per iteration"), xaxis=dict(tickangle=-45, automargin=True))
    return fig


# ---- one prediction --------------------------------------------------------------------------------------------

LAYER_ROW_PX = 14  # height per layer when the per-layer chart turns horizontal
HORIZONTAL_LAYERS = 30  # more layers than this: one row per layer (labels stay readable at ResNet-50 scale)


def layer_time_figure(prediction, top: int | None = None) -> Any:
    """Per-layer time (ms), stacked forward / backward-data / backward-weight, in execution order.

    Up to HORIZONTAL_LAYERS layers are columns; more are rows (top to bottom in execution order) on a figure
    whose height grows with the layer count, so every label is printed at a readable size without overlap."""
    go = _go()
    rows = list(prediction.layers)
    if top is not None and len(rows) > top:
        keep = {id(r) for r in sorted(rows, key=lambda r: r.time_s["total"], reverse=True)[:top]}
        rows = [r for r in rows if id(r) in keep]
    names = [r.name for r in rows]
    horizontal = len(rows) > HORIZONTAL_LAYERS
    fig = go.Figure()
    for st in ("forward", "backward_data", "backward_weight"):
        ms = [r.time_s[st] * 1e3 for r in rows]
        xy = dict(x=ms, y=names, orientation="h") if horizontal else dict(x=names, y=ms)
        hover = "%{y}" if horizontal else "%{x}"
        value = "%{x:.3f}" if horizontal else "%{y:.3f}"
        fig.add_trace(go.Bar(**xy, name=st.replace("_", "-"), marker_color=STAGE_COLORS[st],
                             customdata=[[r.op, r.bound] for r in rows],
                             hovertemplate=f"{hover}<br>%{{customdata[0]}}, %{{customdata[1]}}-bound<br>{value} ms"))
    title = (f"Time per layer: {prediction.network} on {prediction.hardware}, batch {prediction.batch}, "
             f"{prediction.dtype}" + (f" (top {top} layers)" if top and len(prediction.layers) > top else ""))
    value_axis = dict(title="ms per iteration")
    if horizontal:
        layer_axis = dict(title="layer (execution order, top to bottom)", autorange="reversed", automargin=True,
                          tickfont=dict(size=10), dtick=1)
        _layout(fig, title, barmode="stack", xaxis=dict(**value_axis, side="top"), yaxis=layer_axis,
                height=max(460, LAYER_ROW_PX * len(rows) + 160), margin=dict(l=60, r=20, t=110, b=40))
    else:
        _layout(fig, title, barmode="stack", yaxis=value_axis,
                xaxis=dict(title="layer (execution order)", tickangle=-45, automargin=True, tickfont=dict(size=11)))
    return fig


def breakdown_figure(prediction) -> Any:
    """The breakdown parts (adding up to the iteration time) and the stages, as two horizontal bars."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("breakdown (adds up to the iteration time)", "stages"))
    total = prediction.iteration_time_s
    for part in BREAKDOWN_PARTS:
        v = prediction.breakdown.get(part, 0.0)
        if v > 0:
            fig.add_trace(go.Bar(y=["iteration"], x=[v * 1e3], name=part, orientation="h",
                                 marker_color=PART_COLORS.get(part),
                                 hovertemplate=f"{part}: %{{x:.3f}} ms ({v / total:.1%})" if total else None),
                          row=1, col=1)
    st = {k: v for k, v in prediction.stages.items() if v > 0}
    fig.add_trace(go.Bar(x=[v * 1e3 for v in st.values()], y=[k.replace("_", "-") for k in st], orientation="h",
                         name="stages", marker_color="#17becf", showlegend=False), row=1, col=2)
    _layout(fig, f"Iteration time {total * 1e3:.2f} ms: where it goes", barmode="stack")
    fig.update_xaxes(title_text="ms", row=1, col=1)
    fig.update_xaxes(title_text="ms", row=1, col=2)
    return fig


def memory_figure(graph, device, batch: int, dtype: str = "fp32", optimizer: str = "sgd",
                  batches: Sequence[int] | None = None) -> Any:
    """Memory footprint by kind vs batch (stacked), with the device capacity and the chosen batch marked."""
    go = _go()
    from ..memory import memory_footprint

    fp0 = memory_footprint(graph, device, batch, dtype, optimizer)
    if batches is None:
        hi = max(batch * 2, min(max(fp0.max_batch, 1) * 5 // 4, batch * 16))
        batches = sorted({max(1, round(hi * i / 12)) for i in range(1, 13)} | {batch})
    fps = [memory_footprint(graph, device, b, dtype, optimizer) for b in batches]
    fig = go.Figure()
    for term in MEMORY_TERMS:
        fig.add_trace(go.Scatter(x=list(batches), y=[getattr(f, f"{term}_bytes") / 1e9 for f in fps], name=term,
                                 stackgroup="mem", mode="lines", line=dict(width=0.5, color=MEMORY_COLORS[term])))
    cap = device.memory_bytes / 1e9
    fig.add_trace(go.Scatter(x=[batches[0], batches[-1]], y=[cap, cap], name=f"capacity {cap:.1f} GB", mode="lines",
                             line=dict(color="black", dash="dash")))
    fig.add_trace(go.Scatter(x=[batch], y=[fp0.total_bytes / 1e9], name=f"batch {batch}", mode="markers",
                             marker=dict(size=11, color="red", symbol="x")))
    _layout(fig, f"Memory per device vs batch ({dtype}, {optimizer}); largest batch that fits: {fp0.max_batch}",
            xaxis=dict(title="batch per device"), yaxis=dict(title="GB"))
    return fig


def scaling_figure(points: dict[str, list[dict[str, Any]]], title: str = "Scaling") -> Any:
    """Throughput (left) and scaling efficiency (right) vs devices; points: name -> [{devices, throughput,
    scaling_efficiency}]."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("throughput (samples/s)",
                                                        "scaling efficiency = throughput / (N x 1-device)"))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#e377c2"]
    for i, (name, ps) in enumerate(points.items()):
        x = [p["devices"] for p in ps]
        c = palette[i % len(palette)]
        fig.add_trace(go.Scatter(x=x, y=[p["throughput"] for p in ps], mode="lines+markers", name=name,
                                 line=dict(color=c), legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[p["scaling_efficiency"] for p in ps], mode="lines+markers", name=name,
                                 line=dict(color=c), legendgroup=name, showlegend=False), row=1, col=2)
    _layout(fig, title)
    for col in (1, 2):
        fig.update_xaxes(type="log", dtick=0.30102999566, title_text="devices", row=1, col=col)
    fig.update_yaxes(type="log", title_text="samples / s", row=1, col=1)
    fig.update_yaxes(range=[0, 1.05], tickmode="linear", dtick=0.1, title_text="efficiency", row=1, col=2)
    return fig


def serving_figure(result) -> Any:
    """Latency and throughput vs batch size for a serving result."""
    go = _go()
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = [p.batch for p in result.points]
    fig.add_trace(go.Scatter(x=x, y=[p.latency_s * 1e3 for p in result.points], name="latency (ms)",
                             mode="lines+markers"), secondary_y=False)
    fig.add_trace(go.Scatter(x=x, y=[p.throughput for p in result.points], name="throughput (samples/s)",
                             mode="lines+markers", line=dict(dash="dot")), secondary_y=True)
    _layout(fig, f"Serving {result.network} on {result.hardware} ({result.dtype})",
            xaxis=dict(type="log", title="batch"))
    fig.update_yaxes(title_text="ms", secondary_y=False)
    fig.update_yaxes(title_text="samples / s", secondary_y=True)
    return fig
