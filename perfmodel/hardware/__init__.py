"""Hardware profiles: schemas (Device, Link, Storage, ...), loading by name or file, efficiency model."""

from .loader import builtin_hardware, hardware_from_dict, list_hardware, load_hardware, register_kind
from .schema import Device, Efficiency, EfficiencyCurve, Link, Storage, ThreadScaling
from .topology import Cluster, Node, PCIeGroup, System, resolve_system  # registers the node and cluster kinds
from .backends import Backend, backend_for  # registers the backend kind (collective libraries)
from ..kernels.schema import GpuArch as _GpuArch, SoftwareStack as _SoftwareStack  # kernel-model data files

register_kind("gpu_arch", _GpuArch)
register_kind("software_stack", _SoftwareStack)

__all__ = [
    "Backend", "backend_for", "Cluster", "Node", "PCIeGroup", "System", "resolve_system",
    "Device", "Efficiency", "EfficiencyCurve", "Link", "Storage", "ThreadScaling", "builtin_hardware",
    "hardware_from_dict", "list_hardware", "load_hardware", "register_kind",
]
