"""Loading hardware profiles (devices, links, storage, nodes, clusters) from data files by name or path."""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import HardwareError, InputError, NotFoundError, PerfModelError, format_pydantic_error
from ..datafile import file_exists, is_data_file, read_data_file
from ..paths import data_dir, resolve_builtin
from .schema import Device, Link, Storage

# kind -> model class; other modules (nodes, clusters) register theirs with `register_kind`
HARDWARE_KINDS: dict[str, type[BaseModel]] = {"device": Device, "link": Link, "storage": Storage}
_SUFFIXES = (".yaml", ".yml", ".json")


def register_kind(kind: str, cls: type[BaseModel]) -> None:
    """Make files with `kind: <kind>` load as `cls`."""
    HARDWARE_KINDS[kind] = cls
    builtin_hardware.cache_clear()


@lru_cache(maxsize=1)
def builtin_hardware() -> dict[str, Path]:
    """Built-in profile names -> files (the name is the file stem; names are unique across kinds)."""
    d = data_dir("hardware_profiles")
    if d is None:
        return {}
    return {p.stem: p for p in sorted(d.rglob("*")) if p.suffix in _SUFFIXES}


def hardware_from_dict(data: Any, *, file: str | None = None, kind: str | None = None) -> BaseModel:
    """Validate a parsed profile into its model (chosen by its `kind` field)."""
    if not isinstance(data, dict):
        raise HardwareError(f"expected a mapping with 'kind' and 'name', got {type(data).__name__}", file=file)
    k = data.get("kind", kind)
    if not isinstance(k, str) or k not in HARDWARE_KINDS:
        raise HardwareError(f"field 'kind': expected one of {sorted(HARDWARE_KINDS)}, got {_short(k)}", file=file)
    try:
        obj = HARDWARE_KINDS[k].model_validate(data)
    except ValidationError as e:
        raise HardwareError(format_pydantic_error(e), file=file) from None
    except (ValueError, OverflowError) as e:  # unit parsing inside validators
        raise HardwareError(str(e), file=file) from None
    _check_host_link(obj, file)
    return obj


def _short(v: Any, n: int = 60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n - 3] + "..."


def _check_host_link(obj: BaseModel, file: str | None) -> None:
    """A device's `host_link` must name a link profile (not a missing name, not a device)."""
    ref = getattr(obj, "host_link", None) if getattr(obj, "kind", None) == "device" else None
    if not ref:
        return
    try:
        load_hardware(ref, kind="link")
    except PerfModelError as e:
        raise HardwareError(f"field 'host_link': expected the name of a link profile (e.g. pcie3-x16), "
                            f"got {ref!r}: {e.detail}", file=file) from None


DEVICE_TYPES = ("cpu", "gpu", "accelerator")


def check_kind(kind: str | None) -> str | None:
    """`kind` if it is a known hardware kind or device type (or None), else an error listing them."""
    known = [*HARDWARE_KINDS, *DEVICE_TYPES]
    if kind is not None and kind not in known:
        close = difflib.get_close_matches(str(kind), known, n=2)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise InputError(f"unknown hardware kind {_short(kind)}{hint}; expected one of {', '.join(known)}")
    return kind


def load_hardware(name_or_path: str | Path | BaseModel, kind: str | None = None) -> Any:
    """Load a profile from a built-in name (e.g. 'v100-sxm2') or a file; `kind` restricts what is accepted."""
    if isinstance(name_or_path, BaseModel):
        obj = name_or_path
    else:
        p = Path(name_or_path)
        if is_data_file(p) or file_exists(p, HardwareError):
            if not file_exists(p, HardwareError):
                raise NotFoundError(f"no such hardware file '{p}'")
            obj = _load_file(p, str(p))
        else:
            path = _resolve(str(name_or_path), kind)
            obj = _load_file(path, str(path))
    if kind is not None and getattr(obj, "kind", None) != kind:
        raise HardwareError(f"'{getattr(obj, 'name', name_or_path)}' is a {getattr(obj, 'kind', '?')} profile, expected a {kind}")
    return obj


def _resolve(name: str, kind: str | None) -> Path:
    """The built-in file of `name`; unknown names get close matches among profiles of `kind`."""
    table = builtin_hardware()
    if kind is None or name in table:
        return resolve_builtin(name, table, "hardware")
    try:
        return resolve_builtin(name, table, "hardware")
    except NotFoundError:
        of_kind = {n: p for n, p in table.items() if _kind_of(p) == kind}
        resolve_builtin(name, of_kind or table, f"{kind} profile", listing=f"perfmodel hardware --kind {kind}")
        raise


def _kind_of(path: Path) -> str | None:
    try:
        return getattr(_load_file(path, str(path)), "kind", None)
    except PerfModelError:
        return None


@lru_cache(maxsize=256)
def _load_cached(path: str, mtime: float) -> BaseModel:
    return hardware_from_dict(read_data_file(Path(path), HardwareError), file=path)


def _load_file(p: Path, label: str) -> BaseModel:
    try:
        return _load_cached(str(p), p.stat().st_mtime)
    except PerfModelError:
        raise


def list_hardware(kind: str | None = None) -> list[BaseModel]:
    """All built-in profiles, optionally of one kind (device, link, ...) or device type (cpu, gpu, accelerator)."""
    check_kind(kind)
    out = []
    for _, p in builtin_hardware().items():
        obj = _load_file(p, str(p))
        if kind is None or getattr(obj, "kind", None) == kind or (
                kind in DEVICE_TYPES and getattr(obj, "kind", None) == "device" and getattr(obj, "type", None) == kind):
            out.append(obj)
    return out
