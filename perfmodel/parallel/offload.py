"""Activation offload to host memory (Megatron-LM / NeMo CPU offloading of activations).

During forward, the activations each layer keeps for backward are copied device -> host over the device's
host link (the PCIe uplink of its group, shared by the devices of the group) while the next layers compute;
during backward they are copied back host -> device ahead of the layer that needs them. Links are full duplex.
Per pipeline stage and micro-batch, with X the stage's kept bytes per micro-batch, bw the device's share of its
host link and alpha its latency:

    exposed forward  = max(0, alpha + X / bw - F)       exposed backward = max(0, alpha + X / bw - B)

F and B are the stage's forward and backward seconds per micro-batch (copies stream behind compute; the
first layer's copy cannot start before it computes, the latency term). Device memory keeps only the layers in
flight: OFFLOAD_BUFFERS x the largest layer's kept bytes (one being written out or read back, one being
produced or consumed) plus the network inputs of the micro-batches in flight; host memory holds the rest
(a warning when the node's devices offload more than its host memory). The stage cut of a pipeline is chosen
without the offload (it only adds exposed copies). With full recomputation X is what Megatron-LM offloads then,
the inputs of the checkpointed segments (plus the saved tensors of layers outside them), B includes the recomputed
forward, and the device keeps OFFLOAD_BUFFERS checkpoints in transit and, once, the larger of the layers outside
the checkpointed segments and the largest segment, re-materialised during its backward (as without offload;
stages.offload_bytes, stages._activations).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from ..hardware.topology import System
from ..hardware.traits import device_traits

OFFLOAD_BUFFERS = 2  # layers whose kept activations are on the device at once


def host_link(system: System) -> tuple[float, float]:
    """(bandwidth B/s, latency s) of one device's share of its host link: the slowest PCIe group's uplink
    divided by the devices on it."""
    if device_traits(system.device).host_memory_is_device_memory:
        raise InputError(f"offload_activations needs a device with its own memory behind a host link; "
                         f"'{system.device.name}' computes out of host memory")
    pairs = [(l.effective_bandwidth_Bps / len(g), l.latency_s) for l, g in zip(system.host_links, system.groups)]
    return min(p[0] for p in pairs), max(p[1] for p in pairs)


def device_activations(kept: np.ndarray, inputs: float, inflight: float) -> float:
    """Activation bytes left on the device with offload: the network inputs of the micro-batches in flight and
    OFFLOAD_BUFFERS x the largest per-layer kept bytes (`kept`: per layer, one micro-batch)."""
    top = np.sort(np.asarray(kept, dtype=float))[::-1][:OFFLOAD_BUFFERS]
    return inputs * inflight + float(top.sum())


def exposed_copies(F: Sequence[float], B: Sequence[float], X: Sequence[float], bandwidth_Bps: float,
                   latency_s: float) -> tuple[tuple[float, float], ...]:
    """Per stage: exposed (forward, backward) seconds of copying X bytes out and back in (module doc)."""
    out = []
    for f, b, x in zip(F, B, X):
        t = latency_s + x / bandwidth_Bps if x > 0 else 0.0
        out.append((max(0.0, t - f), max(0.0, t - b)))
    return tuple(out)


def host_bytes(kept_per_microbatch: Sequence[float], inflight: Sequence[float], devices_per_node: int) -> float:
    """Host memory the devices of a node fill: the largest stage's kept bytes x micro-batches in flight x devices."""
    return max(k * i for k, i in zip(kept_per_microbatch, inflight)) * devices_per_node


__all__ = ["OFFLOAD_BUFFERS", "device_activations", "exposed_copies", "host_bytes", "host_link"]
