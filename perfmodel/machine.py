"""Facts about the machine this runs on (no torch): the CPU model name and its topology."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any


def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo, else what the platform module reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _lscpu() -> dict[str, str]:
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    d = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            d[k.strip()] = v.strip()
    return d


def cpu_topology() -> dict[str, Any]:
    """Physical cores, threads per core, sockets, family/model, SIMD flags, memory (Linux; best effort)."""
    ls = _lscpu()
    logical = os.cpu_count() or 1
    tpc = int(ls.get("Thread(s) per core", "1") or 1)
    sockets = int(ls.get("Socket(s)", "1") or 1)
    cps = ls.get("Core(s) per socket")
    cores = int(cps) * sockets if cps and cps.isdigit() else max(1, logical // tpc)
    flags = ls.get("Flags", "")
    simd = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "avx2", "fma", "avx") if f in flags.split()]
    mem = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = float(line.split()[1]) * 1024
    except OSError:
        pass
    if not mem:
        try:
            mem = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            mem = 8e9
    mhz = None
    try:
        m = re.search(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
        mhz = float(m.group(1)) if m else None
    except OSError:
        pass
    return {
        "model": cpu_model_name(), "vendor": ls.get("Vendor ID", ""), "logical_cpus": logical, "cores": cores,
        "threads_per_core": tpc, "sockets": sockets, "family": ls.get("CPU family", ""), "cpu_model": ls.get("Model", ""),
        "hypervisor": ls.get("Hypervisor vendor", ""), "simd": simd, "memory_bytes": mem,
        "clock_hz": mhz * 1e6 if mhz else None,
    }
