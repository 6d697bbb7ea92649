"""One training step on one device: per-layer, per-stage times from op costs and device rates.

The parallel model reuses these per-layer times (pipeline stage balancing, tensor splitting, overlap
of gradient buckets with backward), so this module returns plain data, not a Prediction.
"""

from __future__ import annotations

from dataclasses import dataclass


from .engine.layers import (AMP_WEIGHT_CAST, LOWP, STRIDED_OPS, StageTime, elementwise_key, layer_table,
                            param_tensors, stage_factor_key, stage_time)
from .engine.heap import host_fault_s, layer_heap_arrays, with_heap_refaults
from .engine.rates import Rates, device_rates
from .engine.worktime import stage_times
from .errors import InputError
from .graph.layer_graph import LayerGraph
from .hardware.schema import Device
from .hardware.traits import device_traits
from .ops import DTYPE_BYTES, OpCost
from .ops.base import Work, graph_costs
from .optimizers import OPTIMIZER_NAMES, optimizer_work

__all__ = ["AMP_WEIGHT_CAST", "LOWP", "STRIDED_OPS", "LayerTime", "StageTime", "StepProfile", "check_args",
           "elementwise_key", "profile_from_costs", "stage_factor_key", "stage_time", "step_profile"]


@dataclass(frozen=True, slots=True)
class LayerTime:
    forward: StageTime
    backward_data: StageTime
    backward_weight: StageTime

    @property
    def total_s(self) -> float:
        return self.forward.time_s + self.backward_data.time_s + self.backward_weight.time_s

    def stage(self, name: str) -> StageTime:
        return getattr(self, name)


@dataclass(frozen=True)
class StepProfile:
    """Everything about one step on one device that the predictions are built from."""

    graph: LayerGraph
    device: Device
    batch: int
    dtype: str
    threads: int | None
    optimizer: str
    rates: Rates
    costs: tuple[OpCost, ...]
    times: tuple[LayerTime, ...]
    optimizer_time: StageTime
    optimizer_work: Work
    cast_time: StageTime
    params: int
    param_tensors: int

    @property
    def forward_s(self) -> float:
        return sum(t.forward.time_s for t in self.times) + self.cast_time.time_s

    @property
    def backward_s(self) -> float:
        return sum(t.backward_data.time_s + t.backward_weight.time_s for t in self.times)

    @property
    def compute_s(self) -> float:
        """Forward plus backward (no optimizer step)."""
        return self.forward_s + self.backward_s

    @property
    def total_s(self) -> float:
        return self.compute_s + self.optimizer_time.time_s


def check_args(device: Device, batch: int, dtype: str, threads: int | None, optimizer: str) -> None:
    """Reject nonsensical arguments with a message naming the argument and what is expected."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive integer, got {batch!r}")
    if dtype not in DTYPE_BYTES:
        raise InputError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
    if optimizer not in OPTIMIZER_NAMES:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZER_NAMES)}, got {optimizer!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be a positive integer, got {threads!r}")


_PROFILE_CACHE_SIZE = 64  # step profiles kept per graph (sweeps revisit the same device and batch)


def step_profile(graph: LayerGraph, device: Device, batch: int, dtype: str = "fp32",
                 threads: int | None = None, optimizer: str = "sgd") -> StepProfile:
    """Per-layer and per-stage times of one training step of `graph` at `batch` on `device`.

    Memoised on the graph per (device object, batch, dtype, threads, optimizer): graphs, devices and
    profiles are immutable, so a repeated question (sweeps, plan search) is answered from the cache.
    """
    cache = graph.__dict__.setdefault("_profile_cache", {})
    key = (id(device), batch, dtype, threads, optimizer)
    hit = cache.get(key)
    if hit is not None and hit.device is device:
        return hit
    prof = _step_profile(graph, device, batch, dtype, threads, optimizer)
    if len(cache) >= _PROFILE_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = prof  # holds the device, so its id cannot be reused while cached
    return prof


def _step_profile(graph: LayerGraph, device: Device, batch: int, dtype: str, threads: int | None,
                  optimizer: str) -> StepProfile:
    check_args(device, batch, dtype, threads, optimizer)  # before costing at a bad batch or dtype
    return profile_from_costs(graph, device, batch, dtype, threads, optimizer,
                              graph_costs(graph, batch, DTYPE_BYTES[dtype]))


def profile_from_costs(graph: LayerGraph, device: Device, batch: int, dtype: str, threads: int | None,
                       optimizer: str, costs: tuple[OpCost, ...]) -> StepProfile:
    """A StepProfile from given per-layer costs (the graph's, or e.g. tensor-parallel shards of them)."""
    check_args(device, batch, dtype, threads, optimizer)
    r = device_rates(device, dtype, threads)
    b = DTYPE_BYTES[dtype]
    keyed = r.elementwise is not None or r.stage_factors is not None
    faults = host_fault_s(*layer_heap_arrays(graph, device, costs), costs, r)
    st = with_heap_refaults(stage_times(layer_table(graph, costs, keyed), r), faults)
    cols = [st[k].tolist() for k in ("time", "compute", "memory", "overhead", "roof_compute", "roof_memory")]
    times = tuple(LayerTime(*(StageTime(*(col[i][j] for col in cols)) for j in range(3))) for i in range(len(costs)))
    params = sum(c.params for c in costs)
    tensors = sum(param_tensors(c) for c in costs)
    ow = optimizer_work(optimizer, params, tensors, style=device_traits(device).optimizer_kernels)
    ot = stage_time((ow,), r, "optimizer")
    if AMP_WEIGHT_CAST and dtype in LOWP and params:
        cast = Work("memory", flops=0.0, bytes_read=4.0 * params, bytes_written=float(b * params),
                    kernels=max(1, tensors))
        ct = stage_time((cast,), r)
    else:
        ct = StageTime()
    return StepProfile(graph, device, batch, dtype, threads if device_traits(device).thread_model == "cores" else None, optimizer, r, costs,
                       times, ot, ow, ct, params, tensors)
