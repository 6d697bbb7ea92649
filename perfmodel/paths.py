"""Where the built-in data files (networks, hardware profiles, validation data) live."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path | None:
    """The folder of built-in `kind` files: inside the installed wheel, or the source checkout's root."""
    for cand in (_PKG / "_data" / kind, _PKG.parent / kind):
        if cand.is_dir():
            return cand
    return None


def repo_root() -> Path | None:
    """The source checkout's root when running from one (has pyproject.toml), else None."""
    root = _PKG.parent
    return root if (root / "pyproject.toml").is_file() else None
