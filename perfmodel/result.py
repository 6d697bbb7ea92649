"""Immutable result objects: per-layer rows, memory footprint, and the Prediction with its breakdown."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Named parts of an iteration; they add up to iteration_time_s. Single-device predictions fill the
# first three; the parallel model and the data flow fill the others; "offload": exposed activation copies to
# and from host memory (offload_activations).
BREAKDOWN_PARTS = (
    "compute", "memory", "overhead", "recompute", "communication", "bubble", "straggler", "host_to_device", "io",
    "offload",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LayerRow(_Frozen):
    """One layer's cost and predicted time for the whole mini-batch."""

    name: str
    op: str
    output_shape: tuple[int, ...]
    params: int
    flops: dict[str, float]  # forward, backward_data, backward_weight
    bytes: dict[str, float]
    time_s: dict[str, float]  # forward, backward_data, backward_weight, total
    kernels: int
    bound: str  # compute, memory or overhead (of its longest stage)
    saved_bytes: float


class MemoryFootprint(_Frozen):
    """Device memory at one batch size, by kind (bytes)."""

    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    workspace_bytes: float
    reserved_bytes: float
    total_bytes: float
    capacity_bytes: float
    fits: bool
    max_batch: int  # largest batch that fits (0 if not even batch 1)
    bytes_per_sample: float  # growth of the total per extra sample


class Prediction(_Frozen):
    """A predicted training iteration: totals, breakdown (parts sum to the total), layers, memory, assumptions."""

    network: str
    hardware: str
    device_type: str
    batch: int = Field(description="samples per iteration (global batch when several devices)")
    dtype: str
    threads: int | None
    optimizer: str
    devices: int = 1
    iteration_time_s: float
    throughput_samples_per_s: float
    breakdown: dict[str, float]
    stages: dict[str, float]  # forward, backward_data, backward_weight, optimizer, other
    hidden: dict[str, float] = Field(default_factory=dict)  # time hidden by overlap, not in the total
    flops: dict[str, float]  # per iteration: forward, backward, optimizer, total
    achieved_flops: float
    peak_flops: float
    utilization: float  # achieved / peak FLOP/s on the compute dtype
    bottleneck: str
    memory: MemoryFootprint
    layers: tuple[LayerRow, ...] = ()
    assumptions: dict[str, Any] = Field(default_factory=dict)
    parallel: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        """Plain JSON-ready dict with stable keys; `layers=False` drops per-layer rows."""
        d = self.model_dump(mode="json")
        if not layers:
            d.pop("layers", None)
        return d

    def top_layers(self, n: int = 5) -> list[LayerRow]:
        """The n layers with the largest total time."""
        return sorted(self.layers, key=lambda r: r.time_s["total"], reverse=True)[:n]
