"""Stored calibration samples (no torch): append a run, read one back, pool runs, re-derive a statistic."""

from __future__ import annotations

import datetime as _dt
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from .fit import Sample

def save_samples(samples: list[Sample], machine: dict[str, Any], path: Path) -> None:
    """Append the raw samples as one JSON line (machine + samples): perfmodel.store (locked, whole line, fsync,
    no temp file), so concurrent or killed calibrations lose nothing."""
    from ..store import append_jsonl

    rec = {"kind": "calibration", "time": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine,
           "samples": [s.to_dict() for s in samples]}
    append_jsonl(path, rec)


def _records(path: Path) -> list[dict[str, Any]]:
    """Every calibration record (one JSON line each) of a samples file; a torn line is skipped with a warning."""
    from ..store import read_jsonl

    return read_jsonl(path)


def load_samples(path: Path, record: int = -1) -> tuple[list[Sample], dict[str, Any]]:
    """One calibration record of a samples file (default: the last)."""
    recs = _records(path)
    try:
        rec = recs[record]
    except IndexError:
        from ..errors import InputError

        raise InputError(f"{path} holds {len(recs)} calibration records; record {record} does not exist") from None
    return [Sample.from_dict(d) for d in rec["samples"]], rec["machine"]


def _grid_key(s: Sample) -> tuple[str, str, int, str]:
    return (s.family, s.label, s.threads, s.dtype)


def pool_samples(path: Path, statistic: str = "median") -> tuple[list[Sample], dict[str, Any]]:
    """Samples pooled over every calibration run of a samples file made on the same grid as its last run.

    A shared machine's speed drifts by 10-20% from minute to minute, so one 2-minute run describes one
    moment; pooling takes, per benchmark, the median over the runs of each run's `statistic` of its
    repeats. Only runs with exactly the last run's benchmarks, CPU and torch version are pooled.
    """
    recs = _records(path)
    if not recs:
        from ..errors import InputError

        raise InputError(f"{path} holds no calibration record")
    ident = lambda m: (m.get("device"), (m.get("cpu") or {}).get("model"), m.get("torch"))  # noqa: E731
    machine_id = ident(recs[-1]["machine"])
    grid = sorted(_grid_key(Sample.from_dict(d)) for d in recs[-1]["samples"])
    runs = []
    for rec in recs:
        samples = with_statistic([Sample.from_dict(d) for d in rec["samples"]], statistic)
        if ident(rec["machine"]) == machine_id and sorted(map(_grid_key, samples)) == grid:
            runs.append(({_grid_key(x): x for x in samples}, rec["machine"]))
    newest = runs[-1][0]
    pooled = [replace(x, time_s=statistics.median(r[k].time_s for r, _ in runs),
                      times_s=tuple(r[k].time_s for r, _ in runs)) for k, x in newest.items()]
    machine = dict(runs[-1][1])
    machine["pooled_runs"] = len(runs)
    machine["samples_disturbed"] = statistics.median(m.get("samples_disturbed", 0) or 0 for _, m in runs)
    machine["calibration_wall_s"] = sum(m.get("calibration_wall_s") or 0 for _, m in runs) or None
    return pooled, machine


MAX_DISTURBED_SHARE = 0.2  # more disturbed samples than this: refuse to fit (unless allow_busy)


def check_quiet_enough(machine: dict[str, Any], n_samples: int, allow_busy: bool) -> None:
    """Refuse a fit from a run where other processes disturbed too many samples (the profile would describe
    the neighbours, not the hardware)."""
    bad = machine.get("samples_disturbed", 0) or 0
    if not allow_busy and n_samples and bad > MAX_DISTURBED_SHARE * n_samples:
        from ..errors import PerfModelError

        raise PerfModelError(
            f"other processes kept the CPU busy during {bad} of {n_samples} benchmark samples, even after "
            f"retries: the fit would describe them, not the hardware. Re-run `perfmodel calibrate` when the "
            f"machine is quiet (or pass --allow-busy to write the profile anyway); the raw timings are kept "
            f"when --samples is given.")



SAMPLE_STATISTICS = {"median": statistics.median, "min": min, "mean": statistics.fmean}


def with_statistic(samples: Sequence[Sample], statistic: str) -> list[Sample]:
    """The samples with each time replaced by `statistic` (median, min or mean) of its stored repeats."""
    if statistic not in SAMPLE_STATISTICS:
        from ..errors import InputError

        raise InputError(f"unknown statistic '{statistic}'; choose one of {', '.join(SAMPLE_STATISTICS)}")
    f = SAMPLE_STATISTICS[statistic]
    return [replace(s, time_s=f(s.times_s)) if s.times_s else s for s in samples]

