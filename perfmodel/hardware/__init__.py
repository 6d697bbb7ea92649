"""Hardware profiles: schemas (Device, Link, Storage, ...), loading by name or file, efficiency model."""

from .loader import builtin_hardware, hardware_from_dict, list_hardware, load_hardware, register_kind
from .schema import Device, Efficiency, EfficiencyCurve, Link, Storage, ThreadScaling
from .topology import Cluster, Node, PCIeGroup, System, resolve_system  # registers the node and cluster kinds

__all__ = [
    "Cluster", "Node", "PCIeGroup", "System", "resolve_system",
    "Device", "Efficiency", "EfficiencyCurve", "Link", "Storage", "ThreadScaling", "builtin_hardware",
    "hardware_from_dict", "list_hardware", "load_hardware", "register_kind",
]
