"""Grids of what-if scenarios: every combination of networks, hardware, device counts, batches, dtypes, ...

    from perfmodel import sweep
    res = sweep("resnet50", hardware=["v100-sxm2", "a100-sxm4-40gb"], devices=[1, 2, 4, 8], batch=[32, 64])
    res.rows            # list of flat dicts; pandas.DataFrame(res.rows) if you have pandas
    res.to_csv("sweep.csv")

Each row is one predict() call (layers=False) on the scenario, flattened: the scenario keys, the
iteration time, throughput, scaling efficiency, the breakdown parts, the memory footprint and, when
a price per device-hour is known, the cost per hour and per sample. A scenario that cannot run (a
dtype the device lacks, a plan that is invalid, a batch that does not fit in memory) becomes a row
with an `error` text instead of stopping the sweep.

Speed: networks and hardware are loaded once; scenarios are evaluated in an order that reuses the
per-graph op-cost cache (perfmodel.ops.base.graph_costs, keyed by batch and dtype); identical
predict() calls (e.g. the one-device baselines of the scaling efficiency) are made once; and
step_profile (perfmodel.step) memoises per graph, so scenarios that differ only in device count,
all-reduce algorithm or other multi-device options share one single-device profile.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
import multiprocessing as mp
import os

from .errors import InputError, PerfModelError
from .result import BREAKDOWN_PARTS, Prediction
from .engine import memo
from .ops import DTYPE_BYTES
from .parallel.predict import evaluate
from .planning import price_per_device_hour
from .prediction import DEFAULT_BATCH, DEFAULTS, SETUP_FIELDS
from .prediction import make_setup
from .prediction.assemble import summary_row
from .units import fmt_bytes

# axes whose change leaves the one-device baseline of the scaling efficiency unchanged
_MULTI_DEVICE_ONLY = ("devices", "nodes", "plan", "sync", "allreduce", "overlap", "bucket_bytes", "straggler_cv",
                      "grad_accumulation", "ps_servers", "ps_colocated", "p2p")

SCENARIO_COLUMNS = ("network", "hardware", "devices", "batch", "global_batch", "dtype", "optimizer", "threads")
RESULT_COLUMNS = (
    "iteration_time_s", "throughput", "scaling_efficiency", "utilization", "achieved_flops",
    *(f"{p}_s" for p in BREAKDOWN_PARTS), "bottleneck_part",
    "memory_total_bytes", "memory_capacity_bytes", "fits", "max_batch",
    "price_per_device_hour", "cost_per_hour", "cost_per_sample", "error",
)

ProgressFn = Callable[[int, int], None]


class ProgressBar:
    """A text progress bar on stderr (no dependency): redrawn in place on a terminal, every 10% otherwise."""

    def __init__(self, stream=None, label: str = "sweep", width: int = 30, min_interval_s: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.width = width
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._last_decile = -1
        self._t0 = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        finished = done >= total
        frac = done / total if total else 1.0
        if self._tty:
            if not finished and now - self._last < self.min_interval_s:
                return
            self._last = now
            n = int(round(frac * self.width))
            el = now - self._t0
            eta = el / frac - el if frac > 0 else 0.0
            self.stream.write(f"\r{self.label} [{'#' * n}{'.' * (self.width - n)}] {done}/{total} "
                              f"{el:5.1f}s elapsed, ~{eta:4.1f}s left ")
            if finished:
                self.stream.write("\n")
            self.stream.flush()
        else:
            dec = int(frac * 10)
            if dec != self._last_decile and (dec > self._last_decile):
                self._last_decile = dec
                self.stream.write(f"{self.label}: {done}/{total} ({frac:.0%}) {now - self._t0:.1f}s\n")
                self.stream.flush()


@dataclass
class SweepResult:
    """Rows of a sweep (flat dicts with the same keys), in grid order, plus timing."""

    rows: list[dict[str, Any]]
    columns: tuple[str, ...]
    axes: dict[str, list[Any]]
    elapsed_s: float = 0.0
    predict_calls: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    @property
    def ok(self) -> list[dict[str, Any]]:
        """Rows that predicted successfully and fit in memory."""
        return [r for r in self.rows if r["error"] is None]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["error"] is not None]

    def best(self, key: str = "throughput", maximize: bool = True) -> dict[str, Any] | None:
        """The feasible row with the largest (or smallest) `key`."""
        ok = [r for r in self.ok if r.get(key) is not None]
        if not ok:
            return None
        return (max if maximize else min)(ok, key=lambda r: r[key])

    def to_csv(self, path: str | Path | None = None) -> str:
        """CSV text of the rows (written to `path` if given)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(self.columns), lineterminator="\n")
        w.writeheader()
        for r in self.rows:
            w.writerow({k: ("" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else v))
                        for k, v in r.items()})
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "axes": {k: [_jsonable(x) for x in v] for k, v in self.axes.items()},
                "rows": self.rows, "elapsed_s": self.elapsed_s, "predict_calls": self.predict_calls,
                "notes": self.notes}

    def to_dataframe(self):
        """A pandas DataFrame of the rows (needs pandas, which perfmodel does not depend on)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise InputError("to_dataframe needs pandas; or use pandas.DataFrame(result.rows) yourself") from e
        return pd.DataFrame(self.rows, columns=list(self.columns))


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return getattr(v, "name", str(v))


def _axis(value: Any) -> list[Any]:
    """A scalar is a one-value axis; a list/tuple/range/set is an axis (strings and dicts are scalars)."""
    if isinstance(value, (list, tuple, range)):
        out = list(value)
        if not out:
            raise InputError("a sweep axis is empty")
        return out
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return [value]


def _label(obj: Any) -> str:
    if isinstance(obj, str):
        p = Path(obj)
        return p.stem if p.suffix in (".yaml", ".yml", ".json") else obj
    if isinstance(obj, Path):
        return obj.stem
    return getattr(obj, "name", str(obj))


def prediction_row(p: Prediction, *, batch: int | None = None, devices: int | None = None) -> dict[str, Any]:
    """The result columns of one Prediction as a flat dict (without scenario keys, price or efficiency)."""
    bd = p.breakdown
    part = max(bd, key=lambda k: bd[k]) if bd else None
    m = p.memory
    row = {
        "iteration_time_s": p.iteration_time_s,
        "throughput": p.throughput_samples_per_s,
        "utilization": p.utilization,
        "achieved_flops": p.achieved_flops,
    }
    for k in BREAKDOWN_PARTS:
        row[f"{k}_s"] = float(bd.get(k, 0.0))
    row.update(bottleneck_part=part, memory_total_bytes=m.total_bytes, memory_capacity_bytes=m.capacity_bytes,
               fits=m.fits, max_batch=m.max_batch)
    return row


def _empty_result() -> dict[str, Any]:
    return {k: None for k in RESULT_COLUMNS}


def sweep(network: Any, hardware: Any, *, devices: Any = 1, batch: Any = None, dtype: Any = "fp32",
          optimizer: Any = "sgd", threads: Any = None, price_per_hour: float | dict[str, float] | None = None,
          efficiency: bool = True, progress: ProgressFn | bool | None = None, workers: int | None = 1,
          **options: Any) -> SweepResult:
    """Predict every combination of the given values and return one flat row per scenario.

    `network`, `hardware`, `devices`, `batch` (per device), `dtype`, `optimizer`, `threads` and any
    further TrainingSetup field (`allreduce`, `sync`, `nodes`, `plan`, `overlap`, `straggler_cv`,
    `scaling`, `recompute`, ...) may each be one value or a list of values (an axis). Rows come in the
    order of itertools.product over (network, hardware, devices, batch, dtype, optimizer, threads, *options).

    `price_per_hour`: one price per device-hour for all hardware, or {hardware name: price}; without
    it, the profile's `price_per_hour` or the example table (perfmodel.planning.price_per_device_hour).
    `efficiency`: also predict the one-device baseline of each scenario for `scaling_efficiency` =
    throughput / (devices x one-device throughput at the same per-device batch, dtype, hardware).
    `progress`: a callable progress(done, total), True for a bar on stderr, or None.
    `workers`: processes to spread the scenarios over (forked, so POSIX only; 1 = in this process;
    None = one per CPU core when the sweep has at least 2,000 scenarios). Rows are the same.
    """
    t0 = time.perf_counter()
    g = _Grid(network, hardware, dict(devices=devices, batch=batch, dtype=dtype, optimizer=optimizer,
                                      threads=threads), options, price_per_hour, efficiency)
    if progress is True:
        progress = ProgressBar()
    elif progress is False:
        progress = None
    total = len(g.combos)
    rows: list[dict[str, Any] | None] = [None] * total
    n_workers = _workers(workers, total)
    if n_workers <= 1:
        for done, j in enumerate(g.eval_order(), 1):
            rows[j] = g.one_row(g.combos[j])
            if progress is not None:
                progress(done, total)
    else:
        g.calls[0] += _run_forked(g.one_row, g.calls, g.combos, g.eval_order(), rows, n_workers, progress, total)
    notes = [f"price of {g.hw_labels[hi]}: {v[0]:g} USD per device-hour from the {v[1]}"
             for hi, v in g.prices.items() if v[0] is not None and v[1].startswith("example table")]
    return SweepResult(rows=rows, columns=g.columns, axes={k: list(v) for k, v in g.axes.items()},  # type: ignore
                       elapsed_s=time.perf_counter() - t0, predict_calls=g.calls[0], notes=notes)


class _Grid:
    """The axes of a sweep, the loaded networks and hardware, and the memo of identical evaluations."""

    def __init__(self, network, hardware, core: dict[str, Any], options: dict[str, Any], price_per_hour,
                 efficiency: bool):
        unknown = set(options) - set(SETUP_FIELDS)
        if unknown:
            raise InputError(f"sweep: unknown option(s) {sorted(unknown)}; known: network, hardware, "
                             f"{', '.join(SETUP_FIELDS)}")
        self.axes: dict[str, list[Any]] = {"network": _axis(network), "hardware": _axis(hardware)}
        for k, v in core.items():
            self.axes[k] = _axis(DEFAULT_BATCH if (k == "batch" and v is None) else v)
        for k, v in options.items():
            self.axes[k] = _axis(v)
        self.extra_keys = list(options)
        # load every network and hardware once (unknown names are a user error: raise now, not per row)
        self.graphs = [memo.network(n) for n in self.axes["network"]]
        self.hws = [memo.hardware(h) for h in self.axes["hardware"]]
        self.net_labels = [_label(n) for n in self.axes["network"]]
        self.hw_labels = [_label(h) for h in self.axes["hardware"]]
        self.names = list(self.axes)
        self.idx = {k: i for i, k in enumerate(self.names)}
        self.combos = list(itertools.product(*(range(len(self.axes[k])) for k in self.names)))
        self.columns = (*SCENARIO_COLUMNS, *self.extra_keys, *RESULT_COLUMNS)
        self.defaults = DEFAULTS
        self.price_per_hour, self.efficiency = price_per_hour, efficiency
        self.cache: dict[tuple, Any] = {}
        self.calls = [0]
        self.prices: dict[int, tuple[float | None, str]] = {}

    def eval_order(self) -> list[int]:
        """Network, batch, dtype (widest first), hardware, then the rest: each graph's cost cache fills once."""

        first = ["network", "batch", "dtype", "hardware", "optimizer", "threads"]
        keys = first + [k for k in self.names if k not in first]
        dts = self.axes["dtype"]

        def sort_key(c):
            return [(-DTYPE_BYTES.get(dts[c[self.idx[k]]], 0), c[self.idx[k]]) if k == "dtype" else c[self.idx[k]]
                    for k in keys]

        return sorted(range(len(self.combos)), key=lambda j: sort_key(self.combos[j]))

    def run(self, kw: dict[str, Any], gi: int, hi: int):
        """The summary row of one evaluation (or the error it raised), memoised per identical call."""

        key = (gi, hi, _freeze(kw))
        hit = self.cache.get(key)
        if hit is None:
            self.calls[0] += 1
            try:
                setup = make_setup(**kw)
                setup.check_modelled()
                hit = summary_row(evaluate(self.graphs[gi], self.hws[hi], setup))
            except (PerfModelError, ValueError) as e:
                hit = e
            self.cache[key] = hit
        return hit

    def one_row(self, c: tuple[int, ...]) -> dict[str, Any]:
        val = {k: self.axes[k][c[i]] for k, i in self.idx.items()}
        gi, hi = c[self.idx["network"]], c[self.idx["hardware"]]
        # pass only non-default keys so the call is exactly what a user would write
        kw = {k: v for k, v in val.items() if k not in ("network", "hardware")
              and not (k in self.defaults and _same(v, self.defaults[k]))}
        res = self.run(kw, gi, hi)
        row: dict[str, Any] = {
            "network": self.net_labels[gi], "hardware": self.hw_labels[hi], "devices": val["devices"],
            "batch": val["batch"], "global_batch": None, "dtype": val["dtype"], "optimizer": val["optimizer"],
            "threads": val["threads"]}
        for k in self.extra_keys:
            row[k] = _jsonable(val[k])
        out = _empty_result()
        price = self._price(hi)
        if price is not None:
            out["price_per_device_hour"] = price
        if isinstance(res, Exception):
            out["error"] = str(res)
            row.update(out)
            return row
        self._fill(out, row, res, kw, gi, hi, price)
        row.update(out)
        return row

    def _price(self, hi: int) -> float | None:
        if hi not in self.prices:
            self.prices[hi] = price_per_device_hour(self.hws[hi], self.price_per_hour)
        return self.prices[hi][0]

    def _fill(self, out: dict, row: dict, res: dict, kw: dict, gi: int, hi: int, price: float | None) -> None:
        out.update({k: res[k] for k in out if k in res})
        row["global_batch"] = res["global_batch"]
        if res["threads"] is not None:
            row["threads"] = res["threads"]
        if not res["fits"]:
            out["error"] = (f"does not fit: needs {fmt_bytes(res['memory_total_bytes'])} of "
                            f"{fmt_bytes(res['memory_capacity_bytes'])} per device; largest batch that fits: "
                            f"{res['max_batch']}")
        n, thr = res["devices"], res["throughput"]
        if self.efficiency:
            if n == 1 and not any(k in kw for k in ("nodes", "plan")):
                out["scaling_efficiency"] = 1.0
            else:
                base = self.run({k: v for k, v in kw.items() if k not in _MULTI_DEVICE_ONLY}, gi, hi)
                if not isinstance(base, Exception) and base["throughput"] > 0 and n > 0:
                    out["scaling_efficiency"] = thr / (n * base["throughput"])
        if price is not None:
            out["cost_per_hour"] = price * n
            out["cost_per_sample"] = price * n / 3600.0 / thr if thr > 0 else None


FORK_MIN_SCENARIOS = 2000  # workers=None forks only for sweeps at least this large
_CHUNKS_PER_WORKER = 8
_FORK_STATE: dict[str, Any] = {}


def _workers(workers: int | None, total: int) -> int:
    if "fork" not in mp.get_all_start_methods():
        return 1
    if workers is None:
        return min(os.cpu_count() or 1, 8) if total >= FORK_MIN_SCENARIOS else 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer or None, got {workers!r}")
    return min(workers, max(1, total))


def _chunk(indices: list[int]) -> list[tuple[int, dict[str, Any]]]:
    one_row, calls, combos = _FORK_STATE["one_row"], _FORK_STATE["calls"], _FORK_STATE["combos"]
    before = calls[0]
    out = [(j, one_row(combos[j])) for j in indices]
    return out + [(-1, {"calls": calls[0] - before})]


def _run_forked(one_row, calls, combos, eval_order, rows, n_workers, progress, total) -> int:
    """Evaluate contiguous chunks of the evaluation order in forked processes; return their predict() calls."""

    size = max(1, math.ceil(len(eval_order) / (n_workers * _CHUNKS_PER_WORKER)))
    chunks = [eval_order[i:i + size] for i in range(0, len(eval_order), size)]
    _FORK_STATE.update(one_row=one_row, calls=calls, combos=combos)
    extra = 0
    done = 0
    try:
        with mp.get_context("fork").Pool(n_workers) as pool:
            for part in pool.imap_unordered(_chunk, chunks):
                for j, row in part:
                    if j < 0:
                        extra += row["calls"]
                    else:
                        rows[j] = row
                        done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        _FORK_STATE.clear()
    return extra


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (a is None and b is None) or (
        isinstance(a, (int, float)) and not isinstance(a, bool) and isinstance(b, (int, float))
        and not isinstance(b, bool) and a == b)


def _freeze(d: Any) -> Any:
    if isinstance(d, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in d.items()))
    if isinstance(d, (list, tuple)):
        return tuple(_freeze(x) for x in d)
    if hasattr(d, "model_dump"):
        return ("obj", id(d))
    return d


def rows_by(rows: Iterable[dict[str, Any]], *keys: str) -> dict[tuple, list[dict[str, Any]]]:
    """Group rows by the values of `keys` (insertion order kept)."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def parse_list(text: str | None, cast: Callable[[str], Any] = str, option: str | None = None) -> list[Any] | None:
    """'1,2,4' -> [1, 2, 4]; for integers 'LOW..HIGH' gives the powers of two LOW, 2 LOW, ... <= HIGH; None -> None.
    `option` (e.g. '--batch') names the flag in the error."""
    if text is None:
        return None
    try:
        return _parse_list(text, cast)
    except InputError as e:
        if option is None:
            raise
        raise InputError(f"{option}: {e}") from None


def _parse_list(text: str, cast: Callable[[str], Any]) -> list[Any]:
    out: list[Any] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        if cast is int and ".." in part:
            lo_s, hi_s = part.split("..", 1)
            try:
                lo, hi = int(lo_s), int(hi_s)
            except ValueError:
                raise InputError(f"cannot read range {part!r}: expected LOW..HIGH, e.g. 1..64") from None
            if lo < 1 or hi < lo:
                raise InputError(f"range {part!r}: expected LOW..HIGH with 1 <= LOW <= HIGH")
            v = lo
            while v <= hi:
                out.append(v)
                v *= 2
            continue
        try:
            out.append(cast(part))
        except ValueError:
            raise InputError(f"cannot read {part!r} in {text!r}") from None
    if not out:
        raise InputError(f"empty list {text!r}")
    return out


__all__ = ["sweep", "SweepResult", "ProgressBar", "prediction_row", "rows_by", "parse_list",
           "SCENARIO_COLUMNS", "RESULT_COLUMNS"]

