"""Time-to-train and cost of a predicted iteration; several hardware options side by side for a deadline or budget.

Arithmetic (all documented assumptions, no hidden constants):
- iterations per epoch = ceil(dataset_samples / global_batch) (the last, partial batch is counted as a
  full iteration; `drop_last=True` uses floor, as DataLoader(drop_last=True) does);
- time to train = epochs x iterations per epoch x iteration time (steady state: no warm-up,
  checkpointing, evaluation or failures);
- device-hours = time to train [h] x devices; cost = device-hours x price per device-hour.

Price per device-hour, first found: an explicit price (argument / --price-per-hour flag), the hardware
profile's `price_per_hour` (per device; per node for node and cluster profiles, divided by the
node's devices), the example table prices/cloud_prices.yaml (each entry with its source and date).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping
import yaml

from ..errors import InputError
from ..result import Prediction
from ..errors import PerfModelError
from ..graph.io import load_network
from ..hardware.loader import load_hardware
from ..memory import memory_footprint
from ..ops import DTYPE_BYTES
from ..ops.base import graph_costs
from ..paths import data_dir
from ..prediction import predict
from ..recompute import recompute_extra_time, recompute_memory
from ..serving import _serving_device
from ..step import check_args, step_profile
from ..units import fmt_bytes
from ..units import parse_quantity

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class PriceEntry:
    name: str
    usd_per_device_hour: float
    source: str
    date: str = ""
    derived_from: str = ""


@lru_cache(maxsize=1)
def example_prices() -> dict[str, PriceEntry]:
    """The example price table (prices/cloud_prices.yaml): hardware name -> PriceEntry; empty if absent."""

    d = data_dir("prices")
    if d is None:
        return {}

    out: dict[str, PriceEntry] = {}
    for p in sorted(d.glob("*.yaml")):
        data = yaml.safe_load(p.read_text()) or {}
        for name, e in (data.get("prices") or {}).items():
            out[name] = PriceEntry(name=name, usd_per_device_hour=float(e["usd_per_device_hour"]),
                                   source=str(e.get("source", "")), date=str(e.get("date", "")),
                                   derived_from=str(e.get("derived_from", "")))
    return out


def _lookup(mapping: Mapping[str, float], name: str) -> float | None:
    """Price of `name`: exact key, else case-insensitive key, else the longest key that is a prefix of the name
    (so 'a100' prices both A100 profiles)."""
    if name in mapping:
        return float(mapping[name])
    low = {k.lower(): v for k, v in mapping.items()}
    n = name.lower()
    if n in low:
        return float(low[n])
    pre = [k for k in low if k and n.startswith(k)]
    if pre:
        return float(low[max(pre, key=len)])
    return None


def price_per_device_hour(hardware: Any, override: float | Mapping[str, float] | None = None
                          ) -> tuple[float | None, str]:
    """(price in USD per device-hour, where it came from) for a device, node or cluster profile (or name).

    `override` is one price for everything or {hardware name: price}. Returns (None, 'unknown') when
    no price is known.
    """
    if isinstance(hardware, (str, Path)):
        hardware = load_hardware(hardware)
    name = getattr(hardware, "name", str(hardware))
    if override is not None:
        if isinstance(override, (int, float)) and not isinstance(override, bool):
            if override < 0:
                raise InputError(f"price per device-hour must be >= 0, got {override}")
            return float(override), "given"
        if isinstance(override, Mapping):
            v = _lookup(override, name)
            if v is not None:
                if v < 0:
                    raise InputError(f"price per device-hour for {name} must be >= 0, got {v}")
                return v, "given"
    kind = getattr(hardware, "kind", "device")
    p = getattr(hardware, "price_per_hour", None)
    if p is not None:
        if kind == "device":
            return float(p), "profile"
        per_node = _devices_per_node(hardware)
        if per_node:
            return float(p) / per_node, f"profile ({kind} price per node / {per_node} devices)"
    if kind in ("node", "cluster"):  # the node's device profile may carry a price
        dev = _node_device(hardware)
        if dev is not None:
            v, src = price_per_device_hour(dev, override)
            if v is not None:
                return v, src
    e = example_prices().get(name)
    if e is not None:
        return e.usd_per_device_hour, f"example table ({e.source})"
    return None, "unknown"


def _node_device(hw: Any) -> Any:
    node = hw if getattr(hw, "kind", None) == "node" else getattr(hw, "node", None)
    if node is None:
        return None
    if isinstance(node, str):
        node = load_hardware(node)
    dev = getattr(node, "device", None)
    if isinstance(dev, str):
        dev = load_hardware(dev)
    return dev


def _devices_per_node(hw: Any) -> int | None:
    node = hw if getattr(hw, "kind", None) == "node" else getattr(hw, "node", None)
    if isinstance(node, str):
        node = load_hardware(node)
    return getattr(node, "devices", None)


@dataclass(frozen=True)
class TrainingEstimate:
    """Time (and cost, when priced) to train for `epochs` over `dataset_samples` samples."""

    epochs: float
    dataset_samples: int
    global_batch: int
    devices: int
    iteration_time_s: float
    iterations_per_epoch: int
    iterations: float
    time_s: float
    device_hours: float
    price_per_device_hour: float | None = None
    cost: float | None = None

    @property
    def hours(self) -> float:
        return self.time_s / SECONDS_PER_HOUR

    @property
    def days(self) -> float:
        return self.time_s / 86400.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hours"] = self.hours
        return d


def time_to_train(prediction: Prediction, epochs: float, dataset_samples: int, *,
                  price_per_device_hour: float | None = None, drop_last: bool = False) -> TrainingEstimate:
    """Time to train for `epochs` passes over `dataset_samples` samples at the predicted iteration time.

    The global batch is `prediction.batch` (all devices); device-hours count every device for the
    whole time; the cost is device-hours x `price_per_device_hour` when given.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or not epochs > 0 or math.isinf(epochs):
        raise InputError(f"epochs must be a positive number, got {epochs!r}")
    if isinstance(dataset_samples, bool) or not isinstance(dataset_samples, int) or dataset_samples < 1:
        raise InputError(f"dataset_samples must be a positive integer, got {dataset_samples!r}")
    gb = prediction.batch
    per_epoch = dataset_samples // gb if drop_last else -(-dataset_samples // gb)
    if per_epoch < 1:
        raise InputError(f"the dataset ({dataset_samples} samples) is smaller than one global batch ({gb}) "
                         "and drop_last is set")
    iters = epochs * per_epoch
    t = iters * prediction.iteration_time_s
    dh = t / SECONDS_PER_HOUR * prediction.devices
    cost = None
    if price_per_device_hour is not None:
        if price_per_device_hour < 0:
            raise InputError(f"price per device-hour must be >= 0, got {price_per_device_hour}")
        cost = training_cost(dh, price_per_device_hour)
    return TrainingEstimate(epochs=epochs, dataset_samples=dataset_samples, global_batch=gb,
                            devices=prediction.devices, iteration_time_s=prediction.iteration_time_s,
                            iterations_per_epoch=per_epoch, iterations=iters, time_s=t, device_hours=dh,
                            price_per_device_hour=price_per_device_hour, cost=cost)


def training_cost(device_hours: float, price_per_device_hour: float) -> float:
    """Cost = device-hours x price per device-hour."""
    return device_hours * price_per_device_hour


def parse_duration(text: str | float) -> float:
    """'24h', '90min', '3 days', '2d', '3600' (seconds) -> seconds."""

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip()
    if s.endswith("d") and s[:-1].strip().replace(".", "", 1).isdigit():
        return float(s[:-1]) * 86400.0
    if s.endswith("w") and s[:-1].strip().replace(".", "", 1).isdigit():
        return float(s[:-1]) * 7 * 86400.0
    try:
        v = parse_quantity(s, "time", field="deadline")
    except ValueError as e:
        raise InputError(f"{e}; also accepted: 24h, 90min, 3 days, 2d, 1w") from None
    if v <= 0:
        raise InputError(f"deadline must be positive, got {text!r}")
    return v


def parse_money(text: str | float) -> float:
    """'1000', '$1000', '1,000 USD', '2.5k' -> 1000.0 ..."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    s = str(text).strip().replace("$", "").replace(",", "").replace("USD", "").replace("usd", "").strip()
    mult = 1.0
    if s[-1:] in ("k", "K"):
        mult, s = 1e3, s[:-1]
    elif s[-1:] in ("M",):
        mult, s = 1e6, s[:-1]
    try:
        v = float(s) * mult
    except ValueError:
        raise InputError(f"cannot read the amount {text!r}; expected e.g. 1000, $1000, 2.5k") from None
    if v < 0:
        raise InputError(f"amount must be >= 0, got {text!r}")
    return v


def parse_prices(text: str | None) -> float | dict[str, float] | None:
    """'a100-sxm4-40gb=2.5,v100-sxm2=1.2' -> dict; '2.5' -> 2.5 (every hardware); None -> None."""
    if text is None or not str(text).strip():
        return None
    s = str(text).strip()
    if "=" not in s:
        return parse_money(s)
    out: dict[str, float] = {}
    for part in s.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise InputError(f"--price-per-hour: expected NAME=USD pairs like a100-sxm4-40gb=2.5, got {part!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = parse_money(v)
    return out


@dataclass(frozen=True)
class CompareRow:
    """One hardware option in a comparison."""

    hardware: str
    devices: int
    batch: int
    global_batch: int | None
    dtype: str
    iteration_time_s: float | None
    throughput: float | None
    fits: bool | None
    time_to_train_s: float | None
    device_hours: float | None
    price_per_device_hour: float | None
    price_source: str
    cost: float | None
    meets_deadline: bool | None
    meets_budget: bool | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    network: str
    epochs: float | None
    dataset_samples: int | None
    deadline_s: float | None
    budget: float | None
    rows: tuple[CompareRow, ...]

    @property
    def eligible(self) -> list[CompareRow]:
        """Options that fit and meet the deadline and the budget (those given)."""
        return [r for r in self.rows if r.error is None and r.fits and r.meets_deadline is not False
                and r.meets_budget is not False]

    def best(self) -> CompareRow | None:
        """Among eligible options: the cheapest when a cost is known for all of them, else the fastest."""
        el = self.eligible
        if not el:
            return None
        if self.epochs is not None and all(r.cost is not None for r in el):
            return min(el, key=lambda r: (r.cost, r.time_to_train_s))
        return min(el, key=lambda r: r.time_to_train_s if r.time_to_train_s is not None else r.iteration_time_s)

    def to_dict(self) -> dict[str, Any]:
        b = self.best()
        return {"network": self.network, "epochs": self.epochs, "dataset_samples": self.dataset_samples,
                "deadline_s": self.deadline_s, "budget": self.budget, "rows": [r.to_dict() for r in self.rows],
                "best": b.hardware if b else None}


def compare(network: Any, hardware: list[Any], *, devices: int = 1, batch: int | None = None, dtype: str = "fp32",
            optimizer: str = "sgd", epochs: float | None = None, dataset_samples: int | None = None,
            deadline_s: float | None = None, budget: float | None = None,
            price_per_hour: float | Mapping[str, float] | None = None, **options: Any) -> Comparison:
    """Predict `network` on each hardware option (`devices` each, per-device `batch`) and compare.

    With `epochs` and `dataset_samples`: time to train and, where a price is known, its cost; each
    option is flagged against `deadline_s` and `budget`. A budget needs a price for every option.
    """

    if (epochs is None) != (dataset_samples is None):
        raise InputError("give both epochs and dataset_samples (or neither)")
    if (deadline_s is not None or budget is not None) and epochs is None:
        raise InputError("a deadline or a budget needs epochs and dataset_samples to compute the time to train")
    if not hardware:
        raise InputError("compare needs at least one hardware option")
    g = load_network(network)
    rows = []
    for h in hardware:
        hw = load_hardware(h)
        name = getattr(hw, "name", str(h))
        price, src = price_per_device_hour(hw, price_per_hour)
        if budget is not None and price is None:
            raise InputError(f"no price per device-hour known for '{name}': pass --price-per-hour {name}=USD "
                             "(or price_per_hour=...)")
        try:
            p = predict(g, hw, batch=batch, dtype=dtype, optimizer=optimizer, devices=devices, layers=False, **options)
        except Exception as e:  # noqa: BLE001 - an impossible option is a row, not a crash

            if not isinstance(e, (PerfModelError, ValueError)):
                raise
            rows.append(CompareRow(name, devices, batch or 0, None, dtype, None, None, None, None, None, price, src,
                                   None, None, None, error=str(e)))
            continue
        ttt = dh = cost = None
        meets_d = meets_b = None
        if epochs is not None:
            est = time_to_train(p, epochs, dataset_samples, price_per_device_hour=price)  # type: ignore[arg-type]
            ttt, dh, cost = est.time_s, est.device_hours, est.cost
            if deadline_s is not None:
                meets_d = ttt <= deadline_s
            if budget is not None and cost is not None:
                meets_b = cost <= budget
        err = None
        if not p.memory.fits:
            err = (f"does not fit: needs {fmt_bytes(p.memory.total_bytes)} of {fmt_bytes(p.memory.capacity_bytes)} "
                   f"per device; largest batch that fits: {p.memory.max_batch}")
        per_dev_batch = batch if batch is not None else p.batch // max(1, p.devices)
        rows.append(CompareRow(name, p.devices, per_dev_batch, p.batch, dtype, p.iteration_time_s,
                               p.throughput_samples_per_s, p.memory.fits, ttt, dh, price, src, cost, meets_d, meets_b,
                               error=err))
    return Comparison(network=g.name, epochs=epochs, dataset_samples=dataset_samples, deadline_s=deadline_s,
                      budget=budget, rows=tuple(rows))


@dataclass(frozen=True)
class FitResult:
    """The largest per-device batch that fits in device memory, and the footprint at that batch."""

    network: str
    hardware: str
    dtype: str
    optimizer: str
    recompute: str | None  # rule used (see perfmodel.recompute), None without recomputation
    batch: int  # largest batch per device that fits (0: not even batch 1)
    memory: Any  # MemoryFootprint at `batch` (at batch 1 when batch is 0)
    next_total_bytes: float  # footprint at batch + 1 (does not fit)
    max_batch_without_recompute: int
    iteration_time_s: float | None  # one training step at `batch`, recomputation included
    recompute_time_s: float  # extra forward time of the recomputation at `batch`
    throughput: float | None
    recompute_detail: Any = None  # RecomputeMemory at `batch`

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("network", "hardware", "dtype", "optimizer", "recompute", "batch",
                                           "next_total_bytes", "max_batch_without_recompute", "iteration_time_s",
                                           "recompute_time_s", "throughput")}
        d["memory"] = self.memory.model_dump(mode="json")
        d["recompute_detail"] = None if self.recompute_detail is None else {
            k: v for k, v in asdict(self.recompute_detail).items() if k != "recomputed_layers"}
        return d


def fit(network: Any, hardware: Any, *, dtype: str = "fp32", optimizer: str = "sgd", recompute: str | None = None,
        threads: int | None = None) -> FitResult:
    """Largest training batch per device of `hardware` that fits, with the memory breakdown at that batch.

    `recompute`: None (keep every activation saved for backward) or a rule of perfmodel.recompute
    ("auto", "blocks", "sqrt"): activations are recomputed segment by segment, which lowers the
    memory and adds one forward of the recomputed layers to the step time.
    """

    g = load_network(network)
    dev = _serving_device(load_hardware(hardware))
    check_args(dev, 1, dtype, threads, optimizer)
    if not dev.supports(dtype):
        have = ", ".join(k for k in dev.peak_flops if k != "fp64")
        raise InputError(f"device '{dev.name}' has no {dtype} rate in its profile; it supports: {have}")
    b = DTYPE_BYTES[dtype]

    def footprint(batch: int):
        costs = graph_costs(g, batch, b)
        rm = recompute_memory(g, batch, dtype, recompute, costs) if recompute else None
        fp = memory_footprint(g, dev, batch, dtype, optimizer, costs=costs,
                              activations_bytes=rm.activations_bytes if rm else None)
        return fp, rm

    plain = memory_footprint(g, dev, 1, dtype, optimizer)
    fp1, _ = footprint(1)
    best = fp1.max_batch
    if best == 0:
        return FitResult(g.name, dev.name, dtype, optimizer, recompute, 0, fp1, fp1.total_bytes, plain.max_batch,
                         None, 0.0, None, None)
    # the closed form assumes every batch-dependent term is proportional to the batch; a few are not quite
    # (e.g. per-channel statistics saved by batchnorm), so step to the exact boundary
    fp, rm = footprint(best)
    while not fp.fits and best > 1:
        best -= 1
        fp, rm = footprint(best)
    nxt, _ = footprint(best + 1)
    while nxt.fits:
        best += 1
        nxt, _ = footprint(best + 1)
    fp, rm = footprint(best)
    prof = step_profile(g, dev, best, dtype, threads, optimizer)
    extra = recompute_extra_time(prof, rm) if rm else 0.0
    t = prof.total_s + extra
    return FitResult(g.name, dev.name, dtype, optimizer, rm.rule if rm else None, best, fp, nxt.total_bytes,
                     plain.max_batch, t, extra, best / t if t > 0 else None, rm)
