"""Loading GPU architecture and software-stack files by name (hardware_profiles/gpu_arch, hardware_profiles/stacks)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

from ..paths import data_dir
from .schema import GpuArch, SoftwareStack

ARCH_DIR = "gpu_arch"
STACK_DIR = "stacks"


def _folder(sub: str) -> Path:
    root = data_dir("hardware_profiles")
    if root is None:
        raise FileNotFoundError("no hardware_profiles folder found")
    return root / sub


def _names(sub: str) -> dict[str, Path]:
    d = _folder(sub)
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


@lru_cache(maxsize=64)
def load_arch(name: str) -> GpuArch:
    """The GpuArch of a built-in name (file stem in hardware_profiles/gpu_arch) or a YAML path."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else _names(ARCH_DIR).get(name)
    if path is None:
        raise KeyError(f"no GPU architecture file '{name}'; known: {sorted(_names(ARCH_DIR))}")
    return GpuArch.model_validate(yaml.safe_load(path.read_text()))


@lru_cache(maxsize=64)
def load_stack(name: str) -> SoftwareStack:
    """The SoftwareStack of a built-in name (file stem in hardware_profiles/stacks) or a YAML path."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else _names(STACK_DIR).get(name)
    if path is None:
        raise KeyError(f"no software stack file '{name}'; known: {sorted(_names(STACK_DIR))}")
    return SoftwareStack.model_validate(yaml.safe_load(path.read_text()))


def list_archs() -> list[str]:
    return sorted(_names(ARCH_DIR))


def list_stacks() -> list[str]:
    return sorted(_names(STACK_DIR))


def arch_for_device(device_name: str) -> GpuArch | None:
    """The architecture file that lists `device_name` among its devices, or None."""
    for n in list_archs():
        a = load_arch(n)
        if device_name in a.devices:
            return a
    return None


def as_arch(arch: GpuArch | str) -> GpuArch:
    return arch if isinstance(arch, GpuArch) else load_arch(arch)


def as_stack(stack: SoftwareStack | str) -> SoftwareStack:
    return stack if isinstance(stack, SoftwareStack) else load_stack(stack)
