"""The profile a measured suite predicts with: the newest one `perfmodel calibrate` wrote for this machine."""

from __future__ import annotations

import re
from typing import Any

from ..errors import NotFoundError
from ..hardware.loader import builtin_hardware, load_hardware
from ..machine import cpu_model_name, cpu_topology


def find_calibrated_profile(device: str = "cpu"):
    """The newest built-in profile written by `perfmodel calibrate` on this machine's CPU (or GPU).

    A profile matches when its source reads "calibrated on <this CPU model name>" (or GPU name) and,
    for a CPU, its core count equals this machine's physical cores.
    """
    if device == "cuda":
        import torch

        what = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        cores = None
    else:

        what, cores = cpu_model_name(), cpu_topology()["cores"]
    found = []
    for _, path in builtin_hardware().items():
        try:
            dev = load_hardware(path)
        except Exception:  # noqa: BLE001 - a broken profile of someone else's is not ours to report here
            continue
        if getattr(dev, "kind", None) != "device" or not what:
            continue
        if not dev.source.startswith(f"calibrated on {what} by perfmodel calibrate"):
            continue
        if cores is not None and dev.cores != cores:
            continue
        found.append((path.stat().st_mtime, dev))
    if not found:
        raise NotFoundError(
            f"no calibrated profile for this machine ({what or device}) among the built-in profiles; run "
            f"`perfmodel calibrate --device {device} --out hardware_profiles/devices/<name>.yaml` first, or pass --profile")
    return max(found, key=lambda x: x[0])[1]


def resolve_profile(profile: Any, device: str = "cpu"):
    """A Device from a name, a path, a Device, or None (this machine's calibrated profile)."""
    if profile is None:
        return find_calibrated_profile(device)
    if hasattr(profile, "peak_flops"):
        return profile
    return load_hardware(profile, kind="device")


def calibration_info(dev) -> dict[str, Any] | None:
    """Samples and wall time of the calibration a profile came from (read from its notes), if it was calibrated."""
    m = re.search(r"Fitted from (\d+) microbenchmark samples at \[([^\]]*)\] threads \((quick|full) grid(?:, (\d+) s)?\)",
                  dev.notes or "")
    if not m:
        return None
    pooled = re.search(r"Pooled over (\d+) calibration runs", dev.notes or "")
    return {"samples": int(m.group(1)), "threads": m.group(2), "grid": m.group(3),
            "wall_s": int(m.group(4)) if m.group(4) else None, "runs": int(pooled.group(1)) if pooled else 1}
