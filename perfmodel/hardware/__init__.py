"""Hardware profiles: schemas (Device, Link, Storage, ...), loading by name or file, efficiency model."""

from .loader import builtin_hardware, hardware_from_dict, list_hardware, load_hardware, register_kind
from .schema import Device, Efficiency, EfficiencyCurve, Link, Storage, ThreadScaling

__all__ = [
    "Device", "Efficiency", "EfficiencyCurve", "Link", "Storage", "ThreadScaling", "builtin_hardware",
    "hardware_from_dict", "list_hardware", "load_hardware", "register_kind",
]
