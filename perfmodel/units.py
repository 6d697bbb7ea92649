"""Parse human quantities ("900 GB/s", "15.7 TFLOPS", "5 us", "1.2TB") into SI numbers.

Decimal prefixes (k=1e3, M=1e6, G=1e9, T=1e12, P=1e15) unless the unit is binary (KiB, MiB, GiB, TiB).
Bits (Gb/s, Gbit/s) are converted to bytes. A plain number is taken as already in SI units.
"""

from __future__ import annotations

import math
import re

_PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}

# unit family -> accepted suffixes (after the prefix) and their factor to SI
_UNITS: dict[str, dict[str, float]] = {
    "bytes": {"B": 1.0, "byte": 1.0, "bytes": 1.0, "b": 0.125, "bit": 0.125, "bits": 0.125},
    "bandwidth": {"B/s": 1.0, "Bps": 1.0, "b/s": 0.125, "bps": 0.125, "bit/s": 0.125},
    "flops": {"FLOPS": 1.0, "FLOP/s": 1.0, "flops": 1.0, "OPS": 1.0, "OP/s": 1.0, "ops": 1.0},
    "flop": {"FLOP": 1.0, "FLOPs": 1.0, "flop": 1.0},
    "time": {"s": 1.0, "sec": 1.0},
    "frequency": {"Hz": 1.0, "hz": 1.0},
    "count": {"": 1.0},
}
_TIME_PREFIX = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12}
_TIME_WORDS = {"ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "s": 1.0, "min": 60.0, "h": 3600.0, "hour": 3600.0,
               "hours": 3600.0, "day": 86400.0, "days": 86400.0}

_NUM = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def parse_quantity(value: object, family: str, *, field: str = "value") -> float:
    """Return `value` in SI units of `family` (bytes, bandwidth, flops, flop, time, frequency, count).

    Raises ValueError with a message naming the field and the accepted form.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a number or a quantity like {_example(family)}, got {value!r}")
    if isinstance(value, (int, float)):
        return _finite(value, value, field)
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected a number or a quantity like {_example(family)}, got {value!r}")
    m = _NUM.match(value)
    if not m:
        raise ValueError(f"{field}: cannot read {value!r} as a quantity; expected something like {_example(family)}")
    number = float(m.group(1))
    unit = m.group(2)
    factor = _unit_factor(unit, family)
    if factor is None:
        raise ValueError(f"{field}: unknown unit {unit!r} in {value!r}; expected something like {_example(family)}")
    return _finite(number * factor, value, field)


def _finite(x: float, shown: object, field: str) -> float:
    try:
        x = float(x)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        text = repr(shown) if not isinstance(shown, int) else f"an integer of {len(str(abs(shown)))} digits"
        raise ValueError(f"{field}: expected a finite quantity, got {text}")
    return x


def _unit_factor(unit: str, family: str) -> float | None:
    if family == "time":
        if unit in _TIME_WORDS:
            return _TIME_WORDS[unit]
        if unit == "":
            return 1.0
        return None
    suffixes = _UNITS[family]
    if unit in suffixes:
        return suffixes[unit]
    for bp, bf in _BINARY.items():
        if unit.startswith(bp) and unit[len(bp):] in suffixes:
            return bf * suffixes[unit[len(bp):]]
    for p, pf in _PREFIX.items():
        if p and unit.startswith(p) and unit[len(p):] in suffixes:
            return pf * suffixes[unit[len(p):]]
    return None


def _example(family: str) -> str:
    return {
        "bytes": "'16 GB' or '32 GiB'",
        "bandwidth": "'900 GB/s' or '100 Gb/s'",
        "flops": "'15.7 TFLOPS'",
        "flop": "'4.1 GFLOP'",
        "time": "'5 us' or '2 ms'",
        "frequency": "'3.6 GHz'",
        "count": "'1000'",
    }[family]


def fmt_seconds(t: float) -> str:
    """Format a duration for people: ns/us/ms/s."""
    if t == 0:
        return "0"
    a = abs(t)
    if a < 1e-6:
        return f"{t * 1e9:.1f} ns"
    if a < 1e-3:
        return f"{t * 1e6:.1f} us"
    if a < 1:
        return f"{t * 1e3:.2f} ms"
    if a < 600:
        return f"{t:.3f} s"
    if a < 36000:
        return f"{t / 60:.1f} min"
    return f"{t / 3600:.1f} h"


def fmt_bytes(b: float) -> str:
    """Format a byte count with decimal prefixes."""
    for unit, f in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(b) >= f:
            return f"{b / f:.2f} {unit}"
    return f"{b:.0f} B"


def fmt_count(n: float, unit: str = "") -> str:
    """Format a large count with k/M/G/T/P/E prefixes."""
    for p, f in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= f:
            return f"{n / f:.2f} {p}{unit}"
    return f"{n:.0f} {unit}".rstrip()
