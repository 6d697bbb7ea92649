"""The one work_time: roofline with size-dependent efficiency plus per-kernel overhead, over numpy arrays.

Every Work item of a step is one row; a scalar call (perfmodel.compute.work_time) is a one-row table.
Assumptions: efficiency depends on the work per kernel (FLOPs for matrix/conv, bytes for memory work);
memory-family arithmetic runs at the profile's per-op elementwise rate when it has one (calibrated
CPUs), else at the vector peak times the memory efficiency; matrix/conv work of a stage named by a
stage-factor key has its rate scaled by the profile's stage factor; a GPU launch overlaps execution
(each kernel costs max(roofline, overhead)), a CPU dispatch adds to it. On a device whose profile names
a GPU architecture and a software stack (Rates.kernel), the rows the kernel model knows (GEMMs,
convolutions, recurrent steps, fused attention: engine.kernel_rows) take its time as their roofline
instead; the launch model stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..hardware.traits import curve_table, efficiency_by_index, factor_in, gemm_split_speedup, rate_in
from ..hardware.traits import efficiency_at as curve_at  # EfficiencyCurve.at over an array
from .cpu_stack import cpu_stack_rows
from .kernel_rows import kernel_row_times
from .rates import Rates
from ..ops import STAGES, OpCost
from ..ops.base import GemmShape, Work, fresh_allocs
from ..ops.recurrent import LSTM_SUFFIX

FAMILY_CODE = {"matrix": 0, "conv": 1, "memory": 2}
STAGE_CODE = {s: i for i, s in enumerate(STAGES)}


@dataclass(frozen=True)
class WorkTable:
    """Every Work item of per-layer op costs as flat arrays (one row per Work)."""

    n_layers: int
    layer: np.ndarray
    stage: np.ndarray  # 0 forward, 1 backward_data, 2 backward_weight
    family: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    kernels: np.ndarray
    ew_keys: tuple[str | None, ...] | None = None  # per row: Efficiency.elementwise key
    factor_keys: tuple[str | None, ...] | None = None  # per row: Efficiency.stage_factors key
    keys: tuple[str, ...] | None = None  # per row: the Work's efficiency_key (keyed curves, Efficiency.curves)
    written: np.ndarray | None = None  # per row: bytes written (fresh-buffer cost, Rates.fresh_bytes)
    shapes: tuple | None = None  # per row: the Work's GemmShape / ConvShape or None (kernel model, Rates.kernel)
    allocs: tuple | None = None  # per row: the buffers one kernel allocates (Work.buffers; fresh-buffer cost)
    executed: np.ndarray | None = None  # per row: executed work per model FLOP (Work.executed; CPU libraries)


def work_table(costs: Sequence[OpCost], ew_keys: Sequence[Sequence[str | None]] | None = None,
               factor_keys: Sequence[Sequence[str | None]] | None = None) -> WorkTable:
    """Flatten per-layer costs; `ew_keys`/`factor_keys`: per layer, per stage keys (calibrated profiles)."""
    blocks: dict[int, tuple] = {}  # per distinct cost object: (rows [stage, family, flops, bytes, kernels], keys)
    parts, counts, ek, fk, keys, shapes, allocs = [], [], [], [], [], [], []
    for li, c in enumerate(costs):
        blk = blocks.get(id(c))
        if blk is None:
            works = [(si, w) for si, s in enumerate(STAGES) for w in c.stage(s)]
            blk = blocks[id(c)] = (
                np.array([(si, FAMILY_CODE[w.family], w.flops, w.bytes_read + w.bytes_written, w.kernels,
                           w.bytes_written, w.executed) for si, w in works], dtype=float).reshape(-1, 7),
                [getattr(w, "efficiency_key", "") or "" for _, w in works], [si for si, _ in works],
                [w.shape for _, w in works], [w.buffers() for _, w in works])
        parts.append(blk[0])
        counts.append(len(blk[1]))
        keys.extend(blk[1])
        shapes.extend(blk[3])
        allocs.extend(blk[4])
        if ew_keys is not None:
            ek.extend(ew_keys[li][si] for si in blk[2])
            fk.extend((factor_keys[li][si] if factor_keys is not None else None) for si in blk[2])
    a = np.concatenate(parts) if parts else np.zeros((0, 7))
    layer = np.repeat(np.arange(len(costs), dtype=np.int64), counts)
    return WorkTable(len(costs), layer, a[:, 0].astype(np.int64), a[:, 1].astype(np.int64),
                     a[:, 2].copy(), a[:, 3].copy(), a[:, 4].copy(),
                     tuple(ek) if ew_keys is not None else None, tuple(fk) if ew_keys is not None else None,
                     tuple(keys), a[:, 5].copy(), tuple(shapes), tuple(allocs), a[:, 6].copy())


FAMILY_NAMES = np.array(["matrix", "conv", "memory"], dtype=object)


def keyed_efficiency(t: WorkTable, eff, dtype: str, fsize: np.ndarray, bsize: np.ndarray, fe: np.ndarray,
                     me: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's curve by its efficiency key (hardware.traits.efficiency_curve: key, prefixes, family; low
    precision first) as the compute efficiency of matrix/conv rows (at FLOPs per kernel) and the bandwidth
    efficiency of memory rows (at bytes per kernel); matrix/conv rows keep the memory curve for their bytes.
    Each row's curve is resolved once per (table, profile, dtype)."""
    cache = t.__dict__.setdefault("_curve_tables", {})
    hit = cache.get((id(eff), dtype))
    if hit is None or hit[0] is not eff:
        hit = cache[(id(eff), dtype)] = (eff, *curve_table(eff, t.keys, FAMILY_NAMES[t.family], dtype))
    mem = t.family == 2
    keyed = efficiency_by_index(hit[1], hit[2], np.where(mem, bsize, fsize))
    return np.where(mem, fe, keyed), np.where(mem, keyed, me)


def _elementwise_rates(t: WorkTable, table: dict[str, float]) -> np.ndarray:
    """Per row: the calibrated rate along hardware.traits.rate_keys (the op key "<op>[.backward]" first, then the
    row's efficiency key and its prefixes with the same suffix, then "default"), else NaN (use the vector peak)."""
    keys = t.keys if t.keys is not None else ("",) * len(t.flops)
    out = []
    for ek, key, si in zip(t.ew_keys, keys, t.stage):
        back = ek.endswith(".backward") if ek else si > 0
        op = ek.removesuffix(".backward") if ek else None
        out.append(rate_in(table, key, op, "backward_data" if back else "forward") or np.nan)
    return np.array(out, dtype=float)


def _stage_factors(t: WorkTable, table: dict[str, float]) -> np.ndarray:
    """Per row: the stage factor along hardware.traits.stage_factor_keys (the layer's "<op>.<stage>/strided[-1x1]"
    first, then "<efficiency key prefix>@<stage>"), else 1."""
    keys = t.keys if t.keys is not None else ("",) * len(t.flops)
    out = []
    for fk, key, si in zip(t.factor_keys, keys, t.stage):
        legacy = next((table[n] for n in (fk, fk.removesuffix("-1x1")) if n in table), None) if fk else None
        stage = fk.split("/")[0].rsplit(".", 1)[1] if fk else STAGES[si]
        out.append(legacy if legacy is not None else factor_in(table, key, None, stage))
    return np.array(out, dtype=float)


def split_rows(t: WorkTable) -> np.ndarray:
    """Per row: the output rows a CPU GEMM library splits between threads (GemmShape m x batch: batched products
    split over the batch too) for matrix rows with a GEMM shape, else 0. LSTM rows (keys ending
    ops.recurrent.LSTM_SUFFIX) are 0: oneDNN's fused RNN primitive has its own per-thread-count curves. Memoised."""
    cache = t.__dict__.get("_split_rows")
    if cache is None:
        keys = t.keys if t.keys is not None else ("",) * len(t.flops)
        cache = t.__dict__["_split_rows"] = np.array(
            [sh.m * sh.batch if (f == 0 and isinstance(sh, GemmShape) and not (k or "").endswith(LSTM_SUFFIX))
             else 0.0 for f, sh, k in zip(t.family, t.shapes, keys)], dtype=float)
    return cache


def split_factors(t: WorkTable, split: tuple[int, float, float]) -> np.ndarray:
    """Per row: the rate multiplier of the CPU GEMM thread split (Rates.gemm_split = (threads, split rows, the
    thread model's speedup)): gemm_split_speedup(rows, threads, split rows) / that speedup for GEMM rows, 1 else."""
    n, r0, base = split
    rows = split_rows(t)
    return np.where(rows > 0, gemm_split_speedup(np.maximum(rows, 1.0), n, r0) / base, 1.0)


def executed_flops(t: WorkTable, r: Rates) -> np.ndarray:
    """Per row: the FLOPs the kernel executes: model FLOPs x Work.executed on a CPU (a dispatch that adds to the
    kernel time: not overhead_overlaps, no GPU kernel model), where oneDNN's blocked or im2col kernels leave
    vector lanes empty; elsewhere the model FLOPs."""
    if t.executed is None or r.kernel is not None or r.overhead_overlaps:
        return t.flops
    return t.flops * t.executed


def row_times(t: WorkTable, r: Rates, scale: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per Work row: time, compute, memory, exposed overhead (seconds). `scale` (per layer) divides FLOPs and bytes."""
    flops, byts, kern = executed_flops(t, r), t.bytes, t.kernels
    if scale is not None:
        s = scale[t.layer]
        flops, byts = flops * s, byts * s
    k = np.maximum(1.0, kern)
    fam = t.family
    mem_eff = curve_at(r.memory, byts / k)
    fe = np.where(fam == 0, curve_at(r.matrix, flops / k), curve_at(r.conv, flops / k))
    if r.keyed is not None and t.keys is not None:
        fe, mem_eff = keyed_efficiency(t, r.keyed, r.dtype, flops / k, byts / k, fe, mem_eff)
    mat = r.matrix_flops * fe
    if r.stage_factors is not None and t.factor_keys is not None:
        mat = mat * _stage_factors(t, r.stage_factors)
    if r.gemm_split is not None and t.shapes is not None:
        mat = mat * split_factors(t, r.gemm_split)
    vec = r.vector_flops * mem_eff
    if r.elementwise is not None and t.ew_keys is not None:
        ew = _elementwise_rates(t, r.elementwise)
        vec = np.where(np.isnan(ew), vec, ew)
    has_f = flops != 0
    cflops = np.where(fam == 2, np.where(has_f, vec, 1.0), mat)
    with np.errstate(divide="ignore", invalid="ignore"):
        compute = np.where(has_f, flops / np.where(cflops > 0, cflops, 1.0), 0.0)
        memory = np.where(byts != 0, byts / (r.bandwidth_Bps * np.where(mem_eff > 0, mem_eff, 1.0)), 0.0)
    roof = np.where(compute > memory, compute, memory)
    kt = kernel_row_times(t, r) if r.kernel is not None and t.shapes is not None else None
    if kt is not None:  # kernel-level times where the kernel model has them
        secs, fused, launches = kt
        if scale is not None:
            secs = secs * s
        has = ~np.isnan(secs)
        compute, roof = np.where(has, secs, compute), np.where(has, secs, roof)
        memory, kern = np.where(fused, 0.0, memory), np.where(fused, 0.0, kern * launches)
    if r.fresh_bytes and t.allocs is not None:  # buffers the allocator maps and faults in afresh on every call
        per = np.where(fam == 1, r.fresh_conv_s_per_byte, r.fresh_s_per_byte)
        roof = roof + fresh_row_bytes(t, r.fresh_bytes, scale) * per
    if r.cold_bytes and r.cold_s_per_byte and t.allocs is not None:  # cold heap buffers: write-allocate from DRAM
        roof = roof + fresh_row_bytes(t, r.cold_bytes, scale, r.fresh_bytes or np.inf) * r.cold_s_per_byte
    if r.cpu_stack is not None:  # what a CPU stack runs: fused attention, per-step RNN kernels (engine.cpu_stack)
        roof, compute, memory, kern = cpu_stack_rows(t, r, roof, compute, memory, kern, scale, work_times)
    launch = kern * r.overhead_s
    exposed = np.maximum(launch - roof, 0.0) if r.overhead_overlaps else launch
    exposed = np.where(kern <= 0, 0.0, exposed)
    return {"time": roof + exposed, "compute": compute, "memory": memory, "overhead": exposed, "roof": roof}


def fresh_row_bytes(t: WorkTable, threshold: float, scale: np.ndarray | None = None,
                    below: float = np.inf) -> np.ndarray:
    """Per row: kernels x the bytes of its buffers in [threshold, below) (ops.base.fresh_allocs), memoised."""
    if scale is None:
        cache = t.__dict__.setdefault("_fresh", {})
        if (threshold, below) not in cache:
            cache[(threshold, below)] = np.array([fresh_allocs(a, threshold, 1.0, below) for a in t.allocs],
                                                 dtype=float) * t.kernels
        return cache[(threshold, below)]
    s = scale[t.layer]
    return np.array([fresh_allocs(a, threshold, si, below) for a, si in zip(t.allocs, s)], dtype=float) * t.kernels


def stage_times(t: WorkTable, r: Rates, scale: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-layer, per-stage [n_layers, 3] sums: time, compute, memory, roof_compute, roof_memory, overhead."""
    w = row_times(t, r, scale)
    cb = w["compute"] >= w["memory"]
    idx = t.layer * 3 + t.stage
    n3 = t.n_layers * 3

    def acc(v):
        return np.bincount(idx, weights=v, minlength=n3).reshape(t.n_layers, 3)

    return {"time": acc(w["time"]), "compute": acc(w["compute"]), "memory": acc(w["memory"]),
            "roof_compute": acc(np.where(cb, w["roof"], 0.0)), "roof_memory": acc(np.where(cb, 0.0, w["roof"])),
            "overhead": acc(w["overhead"])}


def one_row_table(works: tuple[Work, ...], key: str | None = None, factor_key: str | None = None) -> WorkTable:
    """Work items of one stage as a table of one layer (`key`/`factor_key` as in work_time)."""
    n = len(works)
    return WorkTable(1, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
                     np.array([FAMILY_CODE[w.family] for w in works], dtype=np.int64),
                     np.array([w.flops for w in works], dtype=float),
                     np.array([w.bytes_read + w.bytes_written for w in works], dtype=float),
                     np.array([w.kernels for w in works], dtype=float), (key,) * n, (factor_key,) * n,
                     tuple(w.efficiency_key for w in works),
                     written=np.array([w.bytes_written for w in works], dtype=float),
                     shapes=tuple(w.shape for w in works), allocs=tuple(w.buffers() for w in works),
                     executed=np.array([w.executed for w in works], dtype=float))


def work_times(works: tuple[Work, ...], r: Rates, key: str | None = None,
               factor_key: str | None = None) -> dict[str, np.ndarray]:
    """Per item: time, compute, memory, overhead and roof (seconds), by the one vectorised work_time."""
    return row_times(one_row_table(works, key, factor_key), r)
