"""Nodes (devices + host + PCIe tree + device fabric + NICs + storage) and clusters (nodes + network).

A Node names its parts by profile name (or holds them inline, which is handy for machines described
in code, e.g. the local machine in the torch.distributed check). `resolve_system` loads every part
once and returns a `System`: the plain numbers the parallel model and the data flow use.

Modelling choices (each a named field with a default; the profiles say where their numbers come from):
- PCIe: `pcie_groups` lists devices that share one upstream link (a root port or a PCIe switch's
  uplink). Host-to-device traffic of all devices in one group shares that link's bandwidth. Without
  groups, every device has its own upstream link (`Device.host_link`).
- Device-to-device fabric (`fabric_type`):
  * `nvlink` / `nvswitch`: collectives inside the node run over `fabric` at `fabric_bandwidth`
    per device per direction (e.g. DGX-1: 6 NVLink2 links used by NCCL's rings together);
  * `pcie-p2p`: GPUDirect peer-to-peer over PCIe. A ring laid out group by group crosses each
    upstream link once per direction, so a ring runs at the slowest PCIe link on its path;
  * `host`: copies are staged through host memory: every ring hop goes up and down the PCIe tree,
    so the devices of one group share their upstream link (per device: link / group size);
  * `loopback`: worker processes on one host exchanging data through the operating system (e.g.
    gloo over TCP on 127.0.0.1); collectives run over `fabric`, typically a measured link profile.
- CPU nodes: `devices` is the number of worker processes sharing the node's CPU (the device profile
  describes the whole CPU); the parallel model gives each an equal share of the memory bandwidth and
  its own cores (time-shared when oversubscribed), or the measured `process_speed` when given (cores
  of a virtual machine or SMT siblings are not independent), and the measured `memory_speed` for
  memory-bound work when given (the processes share the last-level cache and DRAM).
- Network: a cluster's nodes talk over `network` with `nics` ports per node (aggregate bandwidth
  nics x link), divided by `oversubscription` of the fabric core when there is more than one node.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import HardwareError
from ..kernels.data import stack_with_memory_format
from .loader import load_hardware, register_kind
from .schema import Bandwidth, Bytes, Device, Link, Storage
from .traits import device_traits


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


DeviceRef = Union[str, Device]
LinkRef = Union[str, Link]
StorageRef = Union[str, Storage]

FABRIC_TYPES = ("nvlink", "nvswitch", "pcie-p2p", "host", "loopback")
LINK_FABRICS = ("nvlink", "nvswitch", "loopback")  # fabrics whose collectives run over the `fabric` link


def _ref_name(ref) -> str:
    return ref if isinstance(ref, str) else ref.name


class PCIeGroup(_Frozen):
    """Devices (indices in the node) behind one upstream PCIe link: a root port or a switch uplink."""

    devices: tuple[int, ...] = Field(min_length=1)
    link: LinkRef
    name: str = ""


class Node(_Frozen):
    """One machine: `devices` identical compute devices, a host, a PCIe tree, a device fabric, NICs, storage."""

    kind: Literal["node"] = "node"
    name: str = Field(min_length=1)
    source: str = Field(min_length=1, description="datasheet or document the topology comes from")
    notes: str = ""
    device: DeviceRef = Field(description="device profile name (or inline device)")
    devices: int = Field(gt=0, le=10**6, description="number of compute devices")
    host_cpu: str = Field(default="", description="host CPUs, e.g. '2 x Xeon E5-2698 v4' (informational)")
    host_memory_bytes: Bytes = Field(alias="host_memory")
    pcie_groups: tuple[PCIeGroup, ...] = Field(
        default=(), description="devices sharing one upstream PCIe link; empty: each device on its own host_link")
    fabric_type: Literal["nvlink", "nvswitch", "pcie-p2p", "host", "loopback"] = "pcie-p2p"
    fabric: LinkRef | None = Field(default=None, description="device-to-device link for nvlink / nvswitch")
    fabric_bandwidth_Bps: Bandwidth | None = Field(
        default=None, alias="fabric_bandwidth",
        description="per device per direction bandwidth collectives reach over the fabric (default: the fabric link's)")
    nics: int = Field(default=0, ge=0, description="network ports used for inter-node traffic")
    nic_link: LinkRef | None = None
    process_speed: float | None = Field(
        default=None, gt=0, le=1,
        description="CPU nodes running several worker processes: each one's compute speed, relative to a lone "
                    "process, while all run (measured); default: every process has its own cores")
    memory_speed: float | None = Field(
        default=None, gt=0, le=1,
        description="CPU nodes running several worker processes: each one's speed on memory-bound work (shared "
                    "last-level cache and DRAM), relative to a lone process, while all run (measured); default: "
                    "each gets an equal share of the memory bandwidth")
    storage: StorageRef | None = Field(default=None, description="local dataset storage (profile name or inline)")
    storage_disks: int = Field(default=1, gt=0, description="RAID0 stripe of this many storage devices")
    price_per_hour: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self):
        if self.fabric_type in LINK_FABRICS and self.fabric is None:
            raise ValueError(f"fabric_type {self.fabric_type!r} needs 'fabric' (the link name, e.g. nvlink2)")
        if self.pcie_groups:
            seen: list[int] = []
            for g in self.pcie_groups:
                for i in g.devices:
                    if not 0 <= i < self.devices:
                        raise ValueError(f"pcie_groups: device index {i} out of range 0..{self.devices - 1}")
                    seen.append(i)
            if sorted(seen) != list(range(self.devices)):
                raise ValueError(f"pcie_groups must name every device 0..{self.devices - 1} exactly once, got {sorted(seen)}")
        if self.nics and self.nic_link is None:
            raise ValueError("nics > 0 needs 'nic_link' (e.g. infiniband-edr)")
        return self

    def summary(self) -> str:
        fab = self.fabric_type + (f" ({_ref_name(self.fabric)})" if self.fabric is not None else "")
        groups = (f", {len(self.pcie_groups)} PCIe groups of "
                  f"{'/'.join(str(len(g.devices)) for g in self.pcie_groups)}") if self.pcie_groups else ""
        nic = f", {self.nics} x {_ref_name(self.nic_link)}" if self.nics else ""
        return (f"{self.devices} x {_ref_name(self.device)}, {fab}{groups}, host RAM "
                f"{self.host_memory_bytes / 1e9:.0f} GB{nic}")


class Cluster(_Frozen):
    """`nodes` identical nodes on one network."""

    kind: Literal["cluster"] = "cluster"
    name: str = Field(min_length=1)
    source: str = Field(min_length=1)
    notes: str = ""
    node: Union[str, Node]
    nodes: int = Field(gt=0, le=10**6, description="number of nodes in the cluster (the most a plan may use)")
    network: LinkRef = Field(description="inter-node link (one port), e.g. infiniband-edr")
    nics_per_node: int | None = Field(default=None, gt=0, description="ports per node on this network (default: the node's nics, else 1)")
    oversubscription: float = Field(default=1.0, ge=1.0, description="core oversubscription of the network fabric")
    price_per_hour: float | None = Field(default=None, ge=0, description="per node")

    def summary(self) -> str:
        nics = f"{self.nics_per_node} x " if self.nics_per_node else ""
        over = f", {self.oversubscription:g}:1 oversubscribed" if self.oversubscription > 1 else ""
        return f"{self.nodes} x {_ref_name(self.node)} over {nics}{_ref_name(self.network)}{over}"


register_kind("node", Node)
register_kind("cluster", Cluster)


# ---------------------------------------------------------------------------------------------
# resolution into plain numbers


def _load(ref, kind: str):
    if ref is None:
        return None
    if not isinstance(ref, str):
        return ref
    return load_hardware(ref, kind=kind)


def device_with_memory_format(device: Device, memory_format: str) -> Device:
    """`device` running activations in `memory_format` (contiguous or channels_last): a GPU with a kernel model
    names its software stack's '+channels_last' variant; anything else is returned as it is."""
    name = stack_with_memory_format(device.software_stack, memory_format)
    if name == device.software_stack or not device.gpu_arch:  # CPUs: no kernel model of the layout
        return device
    return device.model_copy(update={"software_stack": name})


@dataclass(frozen=True)
class System:
    """A node or cluster with every referenced profile loaded: what the parallel model works from."""

    name: str
    kind: str  # device, node or cluster
    device: Device
    node: Node
    cluster: Cluster | None
    max_nodes: int
    devices_per_node: int
    host_links: tuple[Link, ...]  # one per PCIe group
    groups: tuple[tuple[int, ...], ...]  # device indices of each PCIe group
    fabric_type: str
    fabric: Link | None
    fabric_bandwidth_Bps: float  # per device per direction inside the node, for collectives
    fabric_latency_s: float
    network: Link | None
    nics: int
    oversubscription: float
    storage: Storage | None
    host_memory_bytes: float

    @property
    def max_devices(self) -> int:
        return self.max_nodes * self.devices_per_node

    @cached_property
    def _group_index(self) -> dict[int, int]:
        return {i: gi for gi, g in enumerate(self.groups) for i in g}

    def group_of(self, device_index: int) -> int:
        try:  # a dict, not a scan: busiest_input asks for every device (10^5 devices took minutes)
            return self._group_index[device_index]
        except KeyError:
            raise IndexError(device_index) from None

    def network_bandwidth_Bps(self, nodes: int) -> float:
        """Aggregate per-node network bandwidth (per direction) with `nodes` nodes in use."""
        if self.network is None or nodes <= 1:
            return 0.0
        return self.nics * self.network.effective_bandwidth_Bps / self.oversubscription

    @property
    def network_latency_s(self) -> float:
        return self.network.latency_s if self.network is not None else 0.0

    def with_memory_format(self, memory_format: str) -> "System":
        """The same system with its device running activations in `memory_format` (TrainingSetup.memory_format)."""
        dev = device_with_memory_format(self.device, memory_format)
        if dev is self.device:
            return self
        from dataclasses import replace

        return replace(self, device=dev)

    def with_p2p(self, p2p: bool | None) -> "System":
        """The same system with peer-to-peer over PCIe forced on or off (NVLink fabrics are unaffected)."""
        if p2p is None or self.fabric_type in LINK_FABRICS:
            return self
        ft = "pcie-p2p" if p2p else "host"
        if ft == self.fabric_type:
            return self
        bw, lat = _pcie_ring(self.device, self.host_links, self.groups, ft)
        from dataclasses import replace

        return replace(self, fabric_type=ft, fabric_bandwidth_Bps=bw, fabric_latency_s=lat)


def _node_storage(node: Node) -> Storage | None:
    st = _load(node.storage, "storage")
    if st is not None and node.storage_disks > 1:
        st = st.raid0(node.storage_disks)
    return st


def _device_link(device: Device) -> Link:
    if not device.host_link:
        # CPUs (and devices without a host link) exchange data through host memory
        return Link(name=f"{device.name}-memory", type="memory", source="device memory bandwidth",
                    bandwidth=device.memory_bandwidth_Bps, latency=1e-6, efficiency=1.0)
    return load_hardware(device.host_link, kind="link")


def _pcie_ring(device: Device, host_links, groups, fabric_type: str) -> tuple[float, float]:
    """Per-device ring bandwidth and per-hop latency inside a node whose devices talk over PCIe."""
    dev_link = _device_link(device)
    if fabric_type == "pcie-p2p":
        bw = min([dev_link.effective_bandwidth_Bps] + [l.effective_bandwidth_Bps for l in host_links])
        lat = max([dev_link.latency_s] + [l.latency_s for l in host_links])
        return bw, lat
    # through host memory: every hop goes up and down the tree; a group's uplink carries all its devices' flows
    bw = min([dev_link.effective_bandwidth_Bps] +
             [l.effective_bandwidth_Bps / len(g) for l, g in zip(host_links, groups)])
    lat = 2 * max([dev_link.latency_s] + [l.latency_s for l in host_links])
    return bw, lat


def node_from_device(device: Device, devices: int = 1) -> Node:
    """An implicit node of `devices` copies of a bare device, each on its own host link, talking through PCIe
    (or, for a device computing out of host memory, through that memory)."""
    in_host = device_traits(device).host_memory_is_device_memory
    host_mem = device.memory_bytes if in_host else DEFAULT_HOST_MEMORY_BYTES
    ft = "host" if in_host else "pcie-p2p"
    return Node(name=f"{devices}x-{device.name}" if devices > 1 else device.name,
                source="implicit node built from a device profile", device=device, devices=devices,
                host_memory=host_mem, fabric_type=ft)


# A bare GPU profile says nothing about its host; this much host RAM is assumed for the data-flow model.
DEFAULT_HOST_MEMORY_BYTES = 256e9


def resolve_system(hw, devices: int = 1) -> System:
    """Load every part of a device / node / cluster profile. A bare device becomes a node of `devices` copies."""
    kind = getattr(hw, "kind", None)
    cluster = None
    if kind == "device":
        node = node_from_device(hw, max(1, devices))
        max_nodes = 1
    elif kind == "node":
        node = hw
        max_nodes = 1
    elif kind == "cluster":
        cluster = hw
        node = _load(hw.node, "node")
        max_nodes = hw.nodes
    else:
        raise HardwareError(f"expected a device, node or cluster profile, got {kind!r}")
    device = _load(node.device, "device")
    if node.pcie_groups:
        groups = tuple(tuple(g.devices) for g in node.pcie_groups)
        host_links = tuple(_load(g.link, "link") for g in node.pcie_groups)
    else:
        groups = tuple((i,) for i in range(node.devices))
        dl = _device_link(device)
        host_links = tuple(dl for _ in groups)
    fabric = _load(node.fabric, "link")
    if node.fabric_type in LINK_FABRICS:
        fbw = node.fabric_bandwidth_Bps * fabric.efficiency if node.fabric_bandwidth_Bps else fabric.effective_bandwidth_Bps
        flat = fabric.latency_s
    else:
        fbw, flat = _pcie_ring(device, host_links, groups, node.fabric_type)
    if cluster is not None:
        network = _load(cluster.network, "link")
        nics = cluster.nics_per_node or node.nics or 1
        over = cluster.oversubscription
    else:
        network = _load(node.nic_link, "link") if node.nics else None
        nics = node.nics
        over = 1.0
    return System(
        name=hw.name, kind=kind, device=device, node=node, cluster=cluster, max_nodes=max_nodes,
        devices_per_node=node.devices, host_links=host_links, groups=groups, fabric_type=node.fabric_type,
        fabric=fabric, fabric_bandwidth_Bps=fbw, fabric_latency_s=flat, network=network, nics=nics,
        oversubscription=over, storage=_node_storage(node), host_memory_bytes=node.host_memory_bytes,
    )
