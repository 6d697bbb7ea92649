"""The one registry of validation suites: name -> "module:attribute" of an object that follows
`perfmodel.validation.protocol.Suite`. Modules are imported only when a suite is asked for, so listing
costs nothing and a suite whose module is missing (or needs an absent package) is reported, not fatal.

Register a suite: write its module (see docs/architecture.md) and add one line below.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import InputError

SUITES: dict[str, str] = {
    "cpu-quick": "perfmodel.validation.suites:CPU_QUICK",
    "cpu-full": "perfmodel.validation.suites:CPU_FULL",
    "gpu": "perfmodel.validation.suites:GPU",
    "ddp-cpu": "perfmodel.validation.ddp_cpu:SUITE",
    "fsdp-cpu": "perfmodel.validation.fsdp_cpu:SUITE",
    "dlbench-2016": "perfmodel.validation.dlbench:SUITE",
    "cpu-random": "perfmodel.validation.cpu_random:SUITE",
    "cluster-emu": "perfmodel.validation.cluster_emu:SUITE",
}


def suite_names() -> tuple[str, ...]:
    """Every registered suite name, in registry order."""
    return tuple(SUITES)


def load_suite(name: str) -> Any:
    """The Suite registered as `name`; InputError naming the known suites, or saying why it cannot load."""
    if name not in SUITES:
        raise InputError(f"unknown suite '{name}'; known: {', '.join(SUITES)}")
    module, _, attr = SUITES[name].partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise InputError(f"suite '{name}' is not available in this installation ({module}: {e})") from None


def available() -> dict[str, Any]:
    """name -> Suite, or name -> the error text when its module cannot be imported."""
    out: dict[str, Any] = {}
    for name in SUITES:
        try:
            out[name] = load_suite(name)
        except InputError as e:
            out[name] = str(e)
    return out
