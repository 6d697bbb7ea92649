"""Checks of command-line arguments, and the one format of user errors (exit code 2).

Two ways to use them:
- explicitly, as typer callbacks: `typer.Option(1, "--devices", callback=checks.positive_int(MAX_DEVICES))`;
- by name: `POLICY` maps an option's parameter name to its check, and `apply_policy` (run by the app's group
  on every command) adds it to options that have no check of their own. Every int option is bounded and
  every float option must be finite even when not named here.

Errors print as one line `error: --devices: ...` on stderr, or with `--json` as a JSON object on stderr.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional

import typer

USER_ERROR = 2
MAX_DEVICES = 10**6
MAX_BATCH = 10**8
MAX_INT = 10**9

Check = Callable[[Any], Any]


def _fail(message: str) -> None:
    raise typer.BadParameter(message)


def _ints(value: Any) -> list:
    return value if isinstance(value, (list, tuple)) else [value]


def int_range(lo: int, hi: int) -> Check:
    """An int (or each of a repeated int option) in [lo, hi]."""
    def check(value: Any) -> Any:
        for v in _ints(value):
            if v is not None and not lo <= v <= hi:
                what = "a positive integer" if lo == 1 else f"an integer >= {lo}"
                shown = v if abs(v) < 10**30 else f"an integer of {len(str(abs(v)))} digits"
                _fail(f"expected {what} up to {hi:,}, got {shown}")
        return value
    return check


def float_range(lo: float = -math.inf, hi: float = math.inf, *, positive: bool = False) -> Check:
    """A finite float in [lo, hi] (> 0 when `positive`)."""
    def check(value: Any) -> Any:
        if value is None:
            return value
        if not math.isfinite(value):
            _fail(f"expected a finite number, got {value}")
        if positive and value <= 0:
            _fail(f"expected a number greater than 0, got {value:g}")
        if not lo <= value <= hi:
            _fail(f"expected a number between {lo:g} and {hi:g}, got {value:g}")
        return value
    return check


def byte_size(value: Optional[str]) -> Optional[str]:
    """A size like '25MiB' or '1.2TB': finite and > 0 (the string is kept; commands parse it)."""
    if value is None:
        return value
    from ..units import parse_quantity

    try:
        b = parse_quantity(value, "bytes", field="size")
    except ValueError as e:
        _fail(str(e).removeprefix("size: "))
    if not b > 0:
        _fail(f"expected a size greater than 0, got {value!r}")
    return value


def _amount(text: str) -> float:
    s = text.strip().replace("$", "").replace(",", "").replace("USD", "").replace("usd", "").strip()
    mult = 1e3 if s[-1:] in ("k", "K") else 1e6 if s[-1:] == "M" else 1.0
    try:
        x = float(s[:-1] if mult != 1.0 else s) * mult
    except ValueError:
        _fail(f"cannot read the amount {text!r}; expected e.g. 1000, $1000, 2.5k")
    if not math.isfinite(x) or x < 0:
        _fail(f"expected a finite amount >= 0, got {text!r}")
    return x


def money(value: Optional[str]) -> Optional[str]:
    """A price or budget: one amount ('2.5', '$1,000', '2.5k') or NAME=AMOUNT pairs; finite and >= 0."""
    if value is None:
        return value
    text = str(value)
    if "=" not in text:
        _amount(text)
        return value
    for part in text.split(","):
        name, _, amount = part.partition("=")
        if not name.strip() or not _:
            _fail(f"expected NAME=AMOUNT pairs like a100=2.5, got {part.strip()!r}")
        _amount(amount)
    return value


def name_list(value: Optional[str]) -> Optional[str]:
    """A comma-separated list without empty names ('a,,b' and 'a,' are refused)."""
    if value is None:
        return value
    parts = str(value).split(",")
    if any(not p.strip() for p in parts):
        _fail(f"empty name in the comma-separated list {value!r}")
    return value


def int_list(lo: int, hi: int, *, ranges: bool = False) -> Check:
    """A comma list of ints in [lo, hi] ('LOW..HIGH' parts too when `ranges`); no empty or unreadable parts."""
    def check(value: Optional[str]) -> Optional[str]:
        if value is None or (ranges and str(value).strip().lower() == "none"):
            return value
        name_list(value)
        for part in str(value).split(","):
            ends = part.split("..", 1) if ranges and ".." in part else [part]
            for e in ends:
                try:
                    v = int(e.strip())
                except ValueError:
                    _fail(f"cannot read {part.strip()!r} as an integer{' or LOW..HIGH' if ranges else ''}")
                if not lo <= v <= hi:
                    shown = v if abs(v) < 10**30 else f"an integer of {len(str(abs(v)))} digits"
                    _fail(f"expected integers from {lo:,} to {hi:,}, got {shown} in {value!r}")
        return value
    return check


def _path_text(value: Any) -> str:
    """The path as text, refused when it holds a NUL character or is longer than the system allows."""
    from ..datafile import MAX_NAME_CHARS, MAX_PATH_CHARS

    s = str(value)
    if "\x00" in s:
        _fail("the path contains a NUL character")
    if len(s) > MAX_PATH_CHARS or any(len(x) > MAX_NAME_CHARS for x in Path(s).parts):
        _fail("path too long")
    return s


def out_file(value: Any) -> Any:
    """A file to write: not a folder, its folder exists and is writable (checked before any work is done)."""
    if value is None or str(value) == "-":
        return value
    s = _path_text(value)
    p = Path(s)
    if p.is_dir():
        _fail(f"'{p}' is a folder; give a file name inside it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        _fail(f"folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        _fail(f"folder '{parent}' is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        _fail(f"'{p}' is not writable")
    return value


def in_file(value: Any) -> Any:
    """A file to read: exists and is a file (its content is checked by the reader)."""
    if value is None:
        return value
    s = _path_text(value)
    if not Path(s).is_file():
        _fail(f"no such file '{s}'" if not Path(s).exists() else f"'{s}' is not a file")
    from ..datafile import read_text
    from ..errors import PerfModelError

    try:
        read_text(s, max_bytes=2**30)  # text files only: binary or non-UTF-8 data is refused here
    except PerfModelError as e:
        _fail(str(e))
    return value


def all_of(*checks: Check) -> Check:
    def check(value: Any) -> Any:
        for c in checks:
            value = c(value)
        return value
    return check


def callback(check: Check) -> Callable:
    """A typer callback running `check` on the option's value."""
    def cb(value: Any) -> Any:
        return check(value)
    return cb


def positive_int(maximum: int = MAX_INT) -> Callable:
    """Typer callback: an int in [1, maximum]."""
    return callback(int_range(1, maximum))


def finite_float(lo: float = -math.inf, hi: float = math.inf, *, positive: bool = False) -> Callable:
    """Typer callback: a finite float in [lo, hi]."""
    return callback(float_range(lo, hi, positive=positive))


# option parameter name -> check, for options that have none of their own
POLICY: dict[str, Check] = {
    "devices": int_range(1, MAX_DEVICES),
    "nodes": int_range(1, MAX_DEVICES),
    "batch": int_range(1, MAX_BATCH),
    "global_batch": int_range(1, MAX_BATCH),
    "threads": int_range(1, 65536),
    "raid0": int_range(1, 10**4),
    "grad_accumulation": int_range(1, 10**6),
    "ps_servers": int_range(1, MAX_DEVICES),
    "top": int_range(1, 10**6),
    "jobs": int_range(1, 4096),
    "steps": int_range(1, 10**6),
    "rounds": int_range(1, 10**4),
    "warmup": int_range(0, 10**6),
    "microbatches": int_range(1, MAX_BATCH),
    "dataset_samples": int_range(1, 10**15),
    "straggler_cv": float_range(0, 10),
    "slow_worker_factor": float_range(1, 1000),
    "epochs": float_range(positive=True, hi=1e9),
    "price": float_range(0, 1e6),
    "dataset_size": byte_size,
    "bucket_size": byte_size,
    "memory_limit": byte_size,
    "sample_size": byte_size,
    "price_per_hour": money,
    "budget": money,
    "csv_out": out_file,
    "plot": out_file,
    "out": out_file,
    "data": in_file,
    "replay": in_file,
    "from_samples": in_file,
}
# comma-list options: no empty names
LISTS = ("hardware", "network", "dtype", "optimizer", "allreduce", "sync", "recompute", "schedule", "sharding",
         "sequence_parallel", "offload_activations", "tp_overlap")


# comma lists of ints (string options): name -> check
INT_LISTS: dict[str, Check] = {
    "devices": int_list(1, MAX_DEVICES, ranges=True),
    "batch": int_list(1, MAX_BATCH, ranges=True),
    "threads": int_list(1, 65536, ranges=True),
    "tp": int_list(1, MAX_DEVICES),
    "pp": int_list(1, MAX_DEVICES),
    "microbatch": int_list(1, MAX_BATCH),
    "zero": int_list(0, 3),
    "context_parallel": int_list(1, MAX_DEVICES),
    "expert_parallel": int_list(1, MAX_DEVICES),
    "virtual_stages": int_list(1, MAX_DEVICES),
}


def _base_type(param: Any) -> Any:
    """The option's Python type (Optional[...] and list[...] unwrapped): int, float, str, Path, bool, ..."""
    t = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    for _ in range(3):
        args = [a for a in getattr(t, "__args__", ()) or () if a is not type(None)]
        if not args:
            break
        t = args[0]
    return t


def _default_check(param: Any) -> Optional[Check]:
    name = param.name or ""
    t = _base_type(param)
    if t is str and name in INT_LISTS:
        return INT_LISTS[name]
    if t is str and name in LISTS:
        return name_list
    if name in POLICY:
        return POLICY[name]
    if t is int:
        return int_range(-MAX_INT, MAX_INT)
    if t is float:
        return float_range()
    return None


def apply_policy(command: Any) -> Any:
    """Add the POLICY check to every parameter of `command` (once), before its own callback."""
    if getattr(command, "_perfmodel_checked", False):
        return command
    for param in getattr(command, "params", ()):
        check = _default_check(param)
        if check is None:
            continue
        original = param.callback

        def chained(ctx, prm, value, _check=check, _orig=original):
            value = _check(value) if value is not None else value
            return _orig(ctx, prm, value) if _orig is not None else value

        param.callback = chained
    command._perfmodel_checked = True
    return command


def error_payload(message: str, exc: BaseException | None = None, option: str | None = None) -> dict:
    """The JSON form of a user error."""
    out: dict[str, Any] = {"error": message, "type": type(exc).__name__ if exc is not None else "UsageError"}
    for key in ("file", "where"):
        v = getattr(exc, key, None)
        if v:
            out[key] = v
    if option:
        out["option"] = option
    return out


def report_error(message: str, *, json_mode: bool, exc: BaseException | None = None,
                 option: str | None = None) -> None:
    """Print a user error in the one format: `error: ...` (or a JSON object) on stderr."""
    if json_mode:
        typer.echo(json.dumps(error_payload(message, exc, option)), err=True)
    else:
        typer.echo(f"error: {message}", err=True)
