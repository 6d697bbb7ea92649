"""Where the built-in data files (networks, hardware profiles, validation data) live."""

from __future__ import annotations

import difflib
from pathlib import Path

from .errors import NotFoundError

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


def _norm(s: str) -> str:
    return s.lower().replace("-", "").replace("_", "")


def resolve_builtin(name: str, table: dict[str, Path], what: str, *, listing: str | None = None) -> Path:
    """Find a built-in file by name (case, '-' and '_' ignored), or raise with close matches.

    `listing` is the command that lists the built-in ones (default: `perfmodel <what>`)."""
    if name in table:
        return table[name]
    by_norm = {_norm(k): v for k, v in table.items()}
    if _norm(name) in by_norm:
        return by_norm[_norm(name)]
    # names containing the typed text first (a100 -> a100-sxm4-40gb, dgx-a100), then difflib's close matches
    close = sorted((k for k in table if _norm(name) and _norm(name) in _norm(k)),
                   key=lambda k: (not _norm(k).startswith(_norm(name)), len(k), k))[:6]
    close += [k for k in difflib.get_close_matches(name, table.keys(), n=4, cutoff=0.5) if k not in close][:6 - len(close)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    shown = name if len(name) <= 80 else name[:77] + "..."
    raise NotFoundError(
        f"unknown {what} '{shown}': not a built-in name and no such file.{hint} "
        f"List the built-in ones with `{listing or 'perfmodel ' + (what if what != 'network' else 'networks')}`."
    )
