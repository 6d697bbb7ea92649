"""Plain-text rendering of tables and predictions for the terminal (no third-party dependencies)."""

from __future__ import annotations

import json
from typing import Any, Sequence

import re

from ..units import fmt_bytes, fmt_count, fmt_seconds

# unit -> (factor to the base unit, decimals) for the quantities a column may mix after fmt_seconds/fmt_bytes
TIME_UNITS = {"ns": (1e-9, 1), "us": (1e-6, 1), "ms": (1e-3, 2), "s": (1.0, 3), "min": (60.0, 2), "h": (3600.0, 2)}
BYTE_UNITS = {"B": (1.0, 0), "kB": (1e3, 2), "MB": (1e6, 2), "GB": (1e9, 2), "TB": (1e12, 2), "PB": (1e15, 2)}
_QUANTITY = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?) ([a-zA-Z]+)$")


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 case', '2 cases' (`many` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def _unit_table(units: list[str]) -> dict[str, tuple[float, int]] | None:
    for table_ in (TIME_UNITS, BYTE_UNITS):
        if all(u in table_ for u in units):
            return table_
    return None


def unify_units(cells: Sequence[str]) -> list[str]:
    """A column of durations or sizes in mixed units ('555.328 s', '10.1 min'; '11339.22 GB', '80.00 GB') in
    one unit: the unit of its largest value, with that unit's usual decimals ('<0.001 s' for a non-zero value
    that would round to zero). Cells that are not quantities ('-', '0', text) are
    kept; a column in one unit already is returned unchanged."""
    parsed = [(_QUANTITY.match(c), c) for c in cells]
    qty = [(float(m.group(1).replace(",", "")), m.group(2)) for m, _ in parsed if m]
    units = sorted({u for _, u in qty})
    table_ = _unit_table(units) if len(units) > 1 else None
    if table_ is None:
        return list(cells)
    base = [abs(v) * table_[u][0] for v, u in qty]
    smallest_unit = min(table_, key=lambda u: table_[u][0])
    unit = max((u for u in table_ if table_[u][0] <= max(base)), key=lambda u: table_[u][0], default=smallest_unit)
    f, dec = table_[unit]

    def cell(m: re.Match | None, c: str) -> str:
        if not m:
            return c
        v = float(m.group(1).replace(",", "")) * table_[m.group(2)][0] / f
        return f"<{10 ** -dec:.{dec}f} {unit}" if v and round(v, dec) == 0 else f"{v:,.{dec}f} {unit}"

    return [cell(m, c) for m, c in parsed]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A left/right aligned text table; `align` is a string of 'l'/'r' per column (numbers right by default).
    A column of durations or sizes printed in mixed units is shown in one unit (unify_units)."""
    body = [[str(c) for c in r] for r in rows]
    if body:
        cols = [unify_units([r[i] for r in body]) for i in range(len(headers))]
        body = [[cols[i][j] for i in range(len(headers))] for j in range(len(body))]
    cells = [[str(h) for h in headers]] + body
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        align = "".join("r" if rows and isinstance(rows[0][i], (int, float)) else "l" for i in range(len(headers)))
    out = []
    for j, r in enumerate(cells):
        line = "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align))
        out.append(line.rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def dumps(obj: Any) -> str:
    """JSON text with stable key order as produced by the API."""
    return json.dumps(obj, indent=2, default=str)


PART_LABELS = {
    "compute": "compute-bound kernels",
    "memory": "memory-bound kernels",
    "overhead": "kernel launch/dispatch overhead",
    "recompute": "activation recomputation",
    "communication": "exposed communication",
    "bubble": "pipeline bubble",
    "straggler": "straggler wait",
    "host_to_device": "host-to-device transfer",
    "io": "storage IO",
}


def prediction_text(p, show_layers: bool = False, top: int = 5) -> str:
    """Human summary of a Prediction."""
    total = p.iteration_time_s
    dev = f", {p.devices} devices" if p.devices > 1 else ""
    thr = f", {p.threads} threads" if p.threads else ""
    bl = "global batch" if p.devices > 1 else "batch"
    lines = [
        f"{p.network} on {p.hardware} ({p.device_type}{dev}{thr}), {bl} {p.batch}, {p.dtype}, optimizer {p.optimizer}",
        "",
        f"iteration time   {fmt_seconds(total)}   ({p.throughput_samples_per_s:,.1f} samples/s)",
        "",
        "breakdown (parts add up to the iteration time)",
    ]
    rows = [(PART_LABELS.get(k, k), fmt_seconds(v), f"{v / total:.1%}" if total else "-")
            for k, v in p.breakdown.items() if v > 0 or k in ("compute", "memory", "overhead")]
    lines.append(table(["part", "time", "share"], rows, "lrr"))
    if p.hidden and any(v > 0 for v in p.hidden.values()):
        hid = ", ".join(f"{k} {fmt_seconds(v)}" for k, v in p.hidden.items() if v > 0)
        lines.append(f"hidden by overlap (not in the total): {hid}")
    st = p.stages
    lines += [
        "",
        "stages: " + ", ".join(f"{k.replace('_', '-')} {fmt_seconds(v)}" for k, v in st.items() if v > 0),
        f"work: {fmt_count(p.flops['total'], 'FLOP')} per iteration; achieved {fmt_count(p.achieved_flops, 'FLOP/s')} "
        f"= {p.utilization:.1%} of the {fmt_count(p.peak_flops, 'FLOP/s')} {p.dtype} peak",
    ]
    m = p.memory
    fit = "fits" if m.fits else "DOES NOT FIT"
    lines += [
        f"memory: {fmt_bytes(m.total_bytes)} of {fmt_bytes(m.capacity_bytes)} per device, {fit}; largest batch that fits: {m.max_batch}",
        "  " + ", ".join(f"{k.replace('_bytes', '')} {fmt_bytes(getattr(m, k))}" for k in (
            "weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "workspace_bytes", "reserved_bytes")),
        f"bottleneck: {p.bottleneck}",
    ]
    heap = p.assumptions.get("heap_refault_s")
    if heap:
        lines.append(f"page faults: {fmt_seconds(heap)} ({heap / total:.1%} of the step): heap pages the C allocator "
                     "gives back after every step and faults in again (glibc trims its heap; a larger "
                     "MALLOC_TRIM_THRESHOLD_ keeps them), and fused-LSTM workspaces too large for the heap, mapped "
                     "afresh every step")
    if p.parallel:
        lines += ["", parallel_text(p.parallel)]
    for w in p.warnings:
        lines.append(f"warning: {w}")
    if show_layers and p.layers:
        lines += ["", layers_table(p.layers, total)]
    elif p.layers:
        lines += ["", f"top {plural(top, 'layer')} by time (all with --layers):", layers_table(p.top_layers(top), total)]
    return "\n".join(lines)


def _fmt_value(k: str, v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and k.endswith("_bytes"):
        return fmt_bytes(v)
    if isinstance(v, float):
        if k.endswith("_s"):
            return fmt_seconds(v)
        if k.endswith("_bytes"):
            return fmt_bytes(v)
        if "fraction" in k or "efficiency" in k:
            return f"{v:.1%}"
        return f"{v:.4g}"
    return str(v)


def parallel_text(par: dict) -> str:
    """The parallel breakdown as `key: value` lines, times and sizes in human units; empty parts left out."""
    lines = ["parallel"]
    for k, v in par.items():
        if v is None or isinstance(v, (dict, list, tuple)) or (isinstance(v, float) and v == 0.0 and k.endswith("_s")):
            continue
        label = (k[:-2] + ("_time" if k[:-2] in par else "")) if k.endswith("_s") else k
        lines.append(f"  {label.replace('_', ' '):28s} {_fmt_value(k, v)}")
    return "\n".join(lines)


def layers_table(rows, total: float) -> str:
    """Per-layer table: op, output shape, params, forward FLOPs, stage times, bound."""
    out = []
    for r in rows:
        out.append((
            r.name, r.op, "x".join(map(str, r.output_shape)), fmt_count(r.params), fmt_count(r.flops["forward"]),
            fmt_seconds(r.time_s["forward"]), fmt_seconds(r.time_s["backward_data"] + r.time_s["backward_weight"]),
            f"{r.time_s['total'] / total:.1%}" if total else "-", r.bound,
        ))
    return table(["layer", "op", "output", "params", "fwd FLOP", "fwd", "bwd", "share", "bound"], out, "llrrrrrrl")
