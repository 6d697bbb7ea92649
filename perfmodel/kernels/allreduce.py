"""All-reduce over a hierarchy of link tiers with the alpha-beta model (ring algorithm).

A ring over p GPUs takes 2 (p - 1) steps; in each step every GPU sends one chunk of size/p bytes to its
neighbour, and the step lasts as long as its slowest hop: alpha + chunk / bandwidth of the slowest tier the
ring crosses. Inside a node the hops go over the intra-node tier (PCIe switches, host bridge, QPI); a ring
over several nodes also crosses the inter-node tier (e.g. FDR InfiniBand).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

import numpy as np


class Tier(BaseModel):
    """One level of the topology: achieved bandwidth per direction and per-message latency."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    bandwidth_Bps: float = Field(gt=0)
    alpha_s: float = Field(ge=0)


def ring_allreduce_s(size_bytes, gpus, nodes, intra: Tier, inter: Tier | None = None):
    """Time of a ring all-reduce of `size_bytes` over `gpus` GPUs spread evenly over `nodes` nodes."""
    S, p, n = (np.asarray(x, float) for x in (size_bytes, gpus, nodes))
    chunk = S / p
    step = intra.alpha_s + chunk / intra.bandwidth_Bps
    if inter is not None:
        step = np.where(n > 1, np.maximum(step, inter.alpha_s + chunk / inter.bandwidth_Bps), step)
    return np.where(p > 1, 2.0 * (p - 1) * step, 0.0)


def bus_bandwidth_Bps(size_bytes, gpus, time_s):
    """NCCL-style bus bandwidth of a measured all-reduce: 2 (p-1)/p x size / time."""
    p = np.asarray(gpus, float)
    return 2.0 * (p - 1) / p * np.asarray(size_bytes, float) / np.asarray(time_s, float)
