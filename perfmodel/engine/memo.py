"""Memo tables of the engine: parsed networks and hardware by name, and results keyed on immutable objects.

Networks, hardware profiles, op costs and per-layer arrays are immutable once built, so a repeated
question reuses them. Files are keyed by path and modification time, built-in names by name.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from ..graph.io import load_network
from ..graph.layer_graph import LayerGraph
from ..hardware.loader import load_hardware

MEMO_SIZE = 256  # entries per table (oldest dropped first)
_NETWORKS: dict[tuple, LayerGraph] = {}
_HARDWARE: dict[tuple, Any] = {}
_ON: dict[tuple, tuple[Any, Any]] = {}
_ON_SIZE = [MEMO_SIZE]  # entries of the results table (`on`); raised inside capacity()


def _put(table: dict, key, value, size: int = MEMO_SIZE) -> None:
    while len(table) >= size:
        table.pop(next(iter(table)))
    table[key] = value


@contextmanager
def capacity(entries: int):
    """Inside the block the results table (`on`) keeps up to `entries` entries instead of MEMO_SIZE (a plan
    search's working set: stage cuts reused across candidates); the oldest are dropped on leaving."""
    old = _ON_SIZE[0]
    _ON_SIZE[0] = max(old, entries)
    try:
        yield
    finally:
        _ON_SIZE[0] = old
        while len(_ON) > old:
            _ON.pop(next(iter(_ON)))


def _file_key(x: str | Path) -> tuple:
    s = os.fspath(x)
    try:
        st = os.stat(s)
    except (OSError, ValueError):
        return ("name", s)
    return ("file", os.path.abspath(s), st.st_mtime_ns, st.st_size)


def network(x: str | Path | LayerGraph) -> LayerGraph:
    """load_network, memoised by built-in name or by file (path, modification time, size)."""
    if isinstance(x, LayerGraph):
        return x
    key = _file_key(x)
    hit = _NETWORKS.get(key)
    if hit is None:
        hit = load_network(x)
        _put(_NETWORKS, key, hit)
    return hit


def hardware(x: Any, kind: str | None = None) -> Any:
    """load_hardware, memoised the same way (profile objects are returned as given)."""
    if not isinstance(x, (str, Path)):
        return load_hardware(x, kind)
    key = (_file_key(x), kind)
    hit = _HARDWARE.get(key)
    if hit is None:
        hit = load_hardware(x, kind)
        _put(_HARDWARE, key, hit)
    return hit


def on(obj: Any, key: tuple, build: Callable[[], Any], refs: tuple = ()) -> Any:
    """`build()` memoised on immutable objects (`obj` and `refs`, by identity) and a hashable key.

    The objects are kept alive with the entry, so their ids cannot be reused while it exists.
    """
    k = (id(obj), key, tuple(id(r) for r in refs))
    hit = _ON.get(k)
    if hit is not None and hit[0] is obj and all(a is b for a, b in zip(hit[1], refs)):
        return hit[2]
    value = build()
    _put(_ON, k, (obj, refs, value), _ON_SIZE[0])
    return value
