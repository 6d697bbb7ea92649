"""Measurement records (torch-free) and their append-only JSONL storage.

A `Measurement` is what perfmodel.torch.measure.measure_training returns; replaying stored measurements
needs no torch.

Storage goes through perfmodel.store (safe under kill -9 and concurrent writers): `append_jsonl` appends
one whole line under a lock on the file and fsyncs, leaving no temp file; `read_jsonl` skips a line torn by a
killed writer (or garbled) with a StoreWarning naming the file and line; `load_measurements` also checks every
record against the Measurement schema (JsonlError naming file and line).
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import PerfModelError, format_pydantic_error
from ..paths import repo_root
from ..store import append_jsonl as _append
from ..store import read_jsonl as _read

SCHEMA = "perfmodel.measurement/1"
DTYPES = ("fp32", "tf32", "fp16", "bf16")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")

# ----------------------------------------------------------------------------------------------------------
# records


class MachineInfo(BaseModel):
    """The machine a measurement ran on (no host name)."""

    model_config = ConfigDict(frozen=True)
    cpu_model: str
    physical_cores: int
    logical_cpus: int
    threads: int  # torch intra-op threads used
    gpu_name: str | None = None
    gpu_count: int = 0
    cuda_version: str | None = None
    torch_version: str
    python_version: str
    os: str
    arch: str


class LayerTiming(BaseModel):
    """Median per-layer times over the instrumented steps (seconds)."""

    model_config = ConfigDict(frozen=True)
    name: str
    op: str
    forward_s: float
    backward_s: float | None = None  # None: the layer had no backward (or it could not be observed)


class Measurement(BaseModel):
    """One measurement of `steps` training steps: every step time plus its summary statistics."""

    schema_: Literal["perfmodel.measurement/1"] = Field(default=SCHEMA, alias="schema")
    kind: Literal["training_step"] = "training_step"
    network: str
    batch: int = Field(gt=0)
    device: str
    dtype: str
    optimizer: str
    threads: int
    warmup: int
    steps: int = Field(gt=0)
    params: int
    step_times_s: tuple[float, ...]
    median_s: float
    mean_s: float
    min_s: float
    max_s: float
    p10_s: float
    p90_s: float
    std_s: float
    samples_per_s: float
    per_layer: tuple[LayerTiming, ...] = ()
    per_layer_method: str = ""
    machine: MachineInfo
    created_utc: str
    perfmodel_version: str
    notes: tuple[str, ...] = ()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.step_times_s) != self.steps:
            raise ValueError(f"step_times_s has {len(self.step_times_s)} entries but steps is {self.steps}")
        if not self.min_s <= self.median_s <= self.max_s:
            raise ValueError("median_s must lie between min_s and max_s")
        return self

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def summarize_times(times: list[float] | tuple[float, ...]) -> dict[str, float]:
    """median, mean, min, max, p10, p90 (linear interpolation between order statistics) and std (population)."""
    if not times:
        raise ValueError("no step times")
    xs = sorted(float(t) for t in times)

    def pct(q: float) -> float:
        pos = q * (len(xs) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {
        "median_s": statistics.median(xs), "mean_s": statistics.fmean(xs), "min_s": xs[0], "max_s": xs[-1],
        "p10_s": pct(0.10), "p90_s": pct(0.90), "std_s": statistics.pstdev(xs) if len(xs) > 1 else 0.0,
    }



def physical_cores() -> int:
    """Distinct (physical id, core id) pairs of /proc/cpuinfo; falls back to the logical CPU count."""
    try:
        pairs, phys, core = set(), "0", None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":", 1)[1].strip()
            elif line.startswith("core id"):
                core = line.split(":", 1)[1].strip()
            elif not line.strip() and core is not None:
                pairs.add((phys, core))
                core = None
        if core is not None:
            pairs.add((phys, core))
        if pairs:
            return len(pairs)
    except OSError:
        pass
    return os.cpu_count() or 1


# ----------------------------------------------------------------------------------------------------------
# JSONL storage


class JsonlError(PerfModelError, ValueError):
    """A JSONL file holds a line that is not one JSON object."""


def default_measurements_dir() -> Path:
    """validation/measurements/ of the source checkout (or of the current directory when installed)."""
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "validation" / "measurements"


def default_measurements_path(name: str = "training_steps.jsonl") -> Path:
    return default_measurements_dir() / name


def _record_dict(record) -> dict[str, Any]:
    if isinstance(record, Measurement):
        return record.to_json_dict()
    if isinstance(record, BaseModel):
        return record.model_dump(mode="json", by_alias=True)
    if isinstance(record, dict):
        return record
    raise TypeError(f"append_jsonl: expected a pydantic model or a dict, got {type(record).__name__}")


def append_jsonl(path: str | Path, record) -> Path:
    """Append one record (a pydantic model or a dict) as one JSON line (perfmodel.store: locked, whole line,
    fsync, no temp file)."""
    try:
        return _append(path, _record_dict(record))
    except PerfModelError as e:
        raise JsonlError(e.detail, file=e.file or str(path), where=e.where) from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSONL file; a torn or garbled line is skipped with a perfmodel.store.StoreWarning naming
    the file and the line; an unreadable file raises JsonlError."""
    return _read(path, error_cls=JsonlError)


def load_measurements(path: str | Path) -> list[Measurement]:
    """read_jsonl + validation of every record as a Measurement (errors name the file and line)."""
    out = []
    for i, obj in enumerate(read_jsonl(path), 1):
        try:
            out.append(Measurement.model_validate(obj))
        except ValidationError as e:
            raise JsonlError(f"not a measurement record: {format_pydantic_error(e)}", file=str(path),
                             where=f"line {i}") from None
    return out
