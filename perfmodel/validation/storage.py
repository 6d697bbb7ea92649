"""Where measured suites keep their measurements (append-only JSONL).

By default in the user's data folder ($PERFMODEL_DATA, else $XDG_DATA_HOME/perfmodel, else
~/.local/share/perfmodel), under measurements/<suite>.jsonl, so that running a suite never dirties a source
checkout. The tracked validation/measurements/<suite>.jsonl is written only when asked
(`perfmodel validate --commit-measurements`, or `--store PATH`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..paths import repo_root

DATA_ENV = "PERFMODEL_DATA"


def user_data_dir() -> Path:
    """$PERFMODEL_DATA, else $XDG_DATA_HOME/perfmodel, else ~/.local/share/perfmodel."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "perfmodel"


def tracked_measurements_dir() -> Path:
    """validation/measurements/ of the source checkout (or of the current folder when installed)."""
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "validation" / "measurements"


def measurement_store(suite: str, store: str | Path | None = None, commit: bool = False) -> Path:
    """The JSONL file a run of `suite` appends to: `store` when given, the tracked file when `commit`,
    else the user's data folder."""
    if store is not None:
        return Path(store)
    if commit:
        return tracked_measurements_dir() / f"{suite}.jsonl"
    return user_data_dir() / "measurements" / f"{suite}.jsonl"


def calibration_samples_path(device: str = "cpu") -> Path:
    """Where `perfmodel calibrate` appends its raw timings when --samples is not given (so a run refused as busy
    can be refitted with `calibrate --from-samples PATH --allow-busy` without measuring again)."""
    return user_data_dir() / "calibration" / f"{device}-samples.jsonl"
