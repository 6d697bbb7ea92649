"""Loading GPU architecture and software-stack files by name (hardware_profiles/gpu_arch, hardware_profiles/stacks)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ValidationError

from ..datafile import read_data_file
from ..errors import HardwareError, NotFoundError, format_pydantic_error
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


def _load(name: str, sub: str, cls: type[BaseModel], what: str):
    path = Path(name) if name.endswith((".yaml", ".yml", ".json")) else _names(sub).get(name)
    if path is None or not path.is_file():
        raise NotFoundError(f"no {what} file '{name}'; known: {', '.join(sorted(_names(sub)))}")
    data = read_data_file(path, HardwareError)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise HardwareError(format_pydantic_error(e), file=str(path)) from None
    except ValueError as e:  # unit parsing inside validators
        raise HardwareError(str(e), file=str(path)) from None


@lru_cache(maxsize=64)
def load_arch(name: str) -> GpuArch:
    """The GpuArch of a built-in name (file stem in hardware_profiles/gpu_arch) or a YAML path."""
    return _load(name, ARCH_DIR, GpuArch, "GPU architecture")


CHANNELS_LAST = "+channels_last"  # suffix of a stack name: that stack with NHWC activations
MEMORY_FORMATS = ("contiguous", "channels_last")  # TrainingSetup.memory_format: PyTorch's NCHW default, NHWC


@lru_cache(maxsize=64)
def load_stack(name: str) -> SoftwareStack:
    """The SoftwareStack of a built-in name (file stem in hardware_profiles/stacks) or a YAML path; a name ending
    in '+channels_last' is that stack with its activations kept NHWC (PyTorch's channels_last memory format)."""
    if name.endswith(CHANNELS_LAST):
        base = load_stack(name[:-len(CHANNELS_LAST)])
        return base.model_copy(update={"name": base.name + CHANNELS_LAST, "activation_layout": "nhwc"})
    return _load(name, STACK_DIR, SoftwareStack, "software stack")


def stack_with_memory_format(name: str | None, memory_format: str) -> str | None:
    """The stack name a device runs under TrainingSetup.memory_format (contiguous: the stack's own default)."""
    if name is None or memory_format != "channels_last" or name.endswith(CHANNELS_LAST):
        return name
    return name + CHANNELS_LAST


def list_archs() -> list[str]:
    return sorted(_names(ARCH_DIR))


def list_stacks() -> list[str]:
    return sorted(_names(STACK_DIR))


def stack_for_target(target: str) -> str | None:
    """The name of the one stack file whose `target` is `target` ("cpu" or "gpu"); None when none or several do
    (GPU stacks are named per device profile)."""
    names = [n for n in list_stacks() if load_stack(n).target == target]
    return names[0] if len(names) == 1 else None


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
