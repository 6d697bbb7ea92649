"""Data flow: storage -> host RAM -> device, with shared PCIe links and prefetching.

Per iteration and node:
- **Storage IO.** The dataset is cached in host RAM (page cache) up to HOST_RAM_CACHE_FRACTION of the
  node's RAM. If it fits, steady-state epochs read from memory (no storage IO; the copy out of the
  page cache is loader CPU work, not modelled). Otherwise the missing fraction of every batch is read
  from storage: bytes / read bandwidth (RAID0 of k disks: k x bandwidth x raid efficiency) plus one
  access latency per sample, IO_QUEUE_DEPTH requests in flight per disk with prefetching (loader
  workers / NCQ; shuffled datasets read one file per sample), one request at a time without it (the
  training process reads its samples one after another, PyTorch num_workers=0; measured on the
  cluster-emu input cases).
  A storage of type "network" (a remote source fetched per sample, e.g. over HTTP from an object store)
  bypasses the page cache: every epoch reads all of it from the source.
- **Host to device.** Each device that consumes input receives its batch over PCIe; devices behind
  one root port or switch share that upstream link, so the group's copy takes (sum of its devices'
  bytes) / link bandwidth. CPU devices read host memory directly (no copy).
- **Prefetch.** With prefetching (loader workers + a copy stream, double buffering) IO and copies
  overlap compute: only max(0, max(io, copy) - step) is exposed. Without it they run before the step.

`shared_link_refill` is the small worked example of the issue (devices refilling their memory in turn
over one shared link) and `pcie_refill_scenarios` what changes with prefetching, PCIe 5.0 or a switch
per device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .errors import InputError
from .graph.layer_graph import LayerGraph
from .hardware.schema import Storage
from .ops import DTYPE_BYTES, op_cost

HOST_RAM_CACHE_FRACTION = 0.8  # share of host RAM the page cache can hold the dataset in (rest: OS, framework, pinned buffers)
IO_QUEUE_DEPTH = 4  # outstanding per-sample reads per disk (data-loader workers / NCQ)
NETWORK_STORAGE = "network"  # Storage.type of a remote source read per sample (HTTP / object store): never page-cached


def dataset_presets() -> dict[str, tuple[int, float]]:
    """Built-in dataset presets (prices/dataset_presets.yaml): name -> (samples, bytes of one sample on disk)."""
    from .datafile import read_data_file
    from .paths import data_dir
    from .units import parse_quantity

    d = data_dir("prices")
    p = d / "dataset_presets.yaml" if d is not None else None
    if p is None or not p.is_file():
        return {}
    data = read_data_file(p) or {}
    return {name: (int(e["samples"]), parse_quantity(str(e["sample_size"]), "bytes"))
            for name, e in (data.get("datasets") or {}).items()}


def dataset_preset(name: str) -> tuple[int, float]:
    """(samples, sample bytes on disk) of a built-in dataset preset; InputError listing the known ones."""
    presets = dataset_presets()
    key = name.lower()
    if key not in presets:
        raise InputError(f"unknown dataset preset '{name}'; known: {', '.join(sorted(presets)) or 'none'}")
    return presets[key]


def input_bytes_per_sample(graph: LayerGraph, dtype: str = "fp32") -> float:
    """Bytes of one sample's input tensors (the graph's input layers) as the device receives them."""
    cache = graph.__dict__.setdefault("_input_bytes", {})
    if dtype not in cache:
        b = DTYPE_BYTES[dtype]
        cache[dtype] = sum(op_cost(l, 1, b).output_bytes for l in graph.layers if l.op == "input")
    return cache[dtype]


def ram_hit_fraction(dataset_bytes: float | None, host_memory_bytes: float) -> float:
    """Fraction of the dataset served from the page cache in steady state."""
    if dataset_bytes is None or dataset_bytes <= 0:
        return 1.0
    cap = HOST_RAM_CACHE_FRACTION * host_memory_bytes
    return min(1.0, cap / dataset_bytes)


@dataclass(frozen=True)
class DataFlow:
    """Per-iteration data movement on the busiest node / PCIe group, and what overlap exposes."""

    io_s: float
    host_to_device_s: float
    exposed_io_s: float
    exposed_host_to_device_s: float
    hidden_io_s: float
    hidden_host_to_device_s: float
    ram_hit_fraction: float
    storage: str | None
    bytes_per_sample: float
    node_io_bytes: float
    group_copy_bytes: float
    prefetch: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def io_time(samples: float, bytes_per_sample: float, storage: Storage | None, hit: float,
            in_flight: float | None = None) -> float:
    """Seconds to read the storage-resident part of `samples` samples with `in_flight` reads outstanding
    (default IO_QUEUE_DEPTH per disk; 1 when the training process reads one sample after another)."""
    miss = 1.0 - hit
    if miss <= 0 or samples <= 0:
        return 0.0
    if storage is None:
        raise InputError("the dataset does not fit in host RAM, so it is read from storage: give a storage profile "
                         "(e.g. storage='nvme-pcie4') or use a node profile that has one")
    read = samples * miss * bytes_per_sample / storage.effective_read_Bps
    seeks = samples * miss * storage.latency_s / (in_flight or IO_QUEUE_DEPTH * storage.disks)
    return read + seeks


def data_flow(*, compute_s: float, node_samples: float, group_bytes: float, group_link_Bps: float,
              bytes_per_sample: float, storage: Storage | None, dataset_bytes: float | None,
              host_memory_bytes: float, prefetch: bool = True) -> DataFlow:
    """IO and host-to-device time of one iteration and how much of it the step hides.

    `node_samples`: samples the busiest node reads per iteration; `group_bytes`: input bytes crossing
    the busiest shared PCIe uplink per iteration (0 for CPU devices); `compute_s`: the step without IO.
    """
    hit = 0.0 if storage is not None and storage.type == NETWORK_STORAGE else ram_hit_fraction(dataset_bytes,
                                                                                               host_memory_bytes)
    io = io_time(node_samples, bytes_per_sample, storage, hit, None if prefetch else 1) \
        if dataset_bytes is not None else 0.0
    h2d = group_bytes / group_link_Bps if group_bytes > 0 else 0.0
    if prefetch:
        extra = max(0.0, max(io, h2d) - compute_s)
        e_io, e_h2d = (extra, 0.0) if io >= h2d else (0.0, extra)
    else:
        e_io, e_h2d = io, h2d
    return DataFlow(io, h2d, e_io, e_h2d, io - e_io, h2d - e_h2d, hit, storage.name if storage else None,
                    bytes_per_sample, node_samples * bytes_per_sample, group_bytes, prefetch)


# ---------------------------------------------------------------------------------------------
# the worked example: devices refilling their memory in turn over one shared link


@dataclass(frozen=True)
class RefillTiming:
    """Steady state of `devices` devices that each refill `bytes_per_device` per iteration over shared links."""

    devices_per_link: int
    per_device_s: float  # one device's refill alone on the link
    all_devices_s: float  # the link busy with every device's refill, in turn
    wait_for_others_s: float  # after its own refill, the time the others' refills occupy the link
    compute_s: float
    prefetch: bool
    period_s: float  # one iteration in steady state
    utilization: float  # compute_s / period_s: share of wall time a device computes
    compute_share_of_wait: float  # compute_s / wait_for_others_s (capped at 1): the 65.6% figure

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shared_link_refill(bytes_per_device: float = 8e9, devices_per_link: int = 4, link_bandwidth_Bps: float = 31.5e9,
                       compute_s: float = 0.5, efficiency: float = 1.0, prefetch: bool = False) -> RefillTiming:
    """Devices behind one link refill their memory one after another, then compute.

    Without prefetching a device computes only after its own refill: period = max(refill + compute,
    all refills). With prefetching (double buffering) the refill overlaps its own compute:
    period = max(compute, all refills). The link's bandwidth is used at `efficiency` (1.0 for the
    issue's worked example: 8 GB over 31.5 GB/s = 0.254 s per device, 1.016 s for four; a device
    computing 0.5 s waits 0.762 s for the other three, computing during 65.6% of that wait).
    """
    if devices_per_link < 1:
        raise InputError(f"devices_per_link must be >= 1, got {devices_per_link}")
    if link_bandwidth_Bps <= 0 or not 0 < efficiency <= 1:
        raise InputError("link bandwidth must be > 0 and efficiency in (0, 1]")
    per = bytes_per_device / (link_bandwidth_Bps * efficiency)
    total = per * devices_per_link
    wait = total - per
    period = max(compute_s, total) if prefetch else max(per + compute_s, total)
    share = min(1.0, compute_s / wait) if wait > 0 else 1.0
    return RefillTiming(devices_per_link, per, total, wait, compute_s, prefetch, period,
                        compute_s / period if period > 0 else 1.0, share)


PCIE4_X16_Bps = 31.5e9  # per direction after 128b/130b coding [I1]
PCIE5_X16_Bps = 63.0e9


def pcie_refill_scenarios(bytes_per_device: float = 8e9, devices: int = 4, compute_s: float = 0.5,
                          efficiency: float = 1.0) -> dict[str, RefillTiming]:
    """The worked example and what changes with prefetching, PCIe 5.0, or a switch (own x16 uplink) per device."""
    out = {}
    for name, bw, share, pf in (
        ("pcie4, 4 devices share one x16", PCIE4_X16_Bps, devices, False),
        ("pcie4 shared + prefetch", PCIE4_X16_Bps, devices, True),
        ("pcie5, 4 devices share one x16", PCIE5_X16_Bps, devices, False),
        ("pcie5 shared + prefetch", PCIE5_X16_Bps, devices, True),
        ("pcie4, one switch per device", PCIE4_X16_Bps, 1, False),
        ("pcie4 switch per device + prefetch", PCIE4_X16_Bps, 1, True),
    ):
        out[name] = shared_link_refill(bytes_per_device, share, bw, compute_s, efficiency, pf)
    return out
