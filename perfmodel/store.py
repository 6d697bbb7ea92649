"""Measurement stores that survive kill -9 and concurrent writers.

- `append_jsonl`: appends whole lines under an exclusive `fcntl.flock` on the file itself, in one `write`,
  then fsyncs. No temp file is ever made, so a killed writer leaves nothing behind; at worst its last line
  is torn, and the next writer starts on a fresh line.
- `read_jsonl`: reads under a shared lock; a torn or garbled line is skipped with a warning naming the file
  and the line.
- `atomic_write_text`: whole-file rewrite through a temp file in the same folder (named with the writer's
  pid), fsync, `os.replace`, under a lock on the folder. Temp files of writers that died are removed by the
  next write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .datafile import check_path
from .errors import InputError, PerfModelError

MAX_STORE_BYTES = 2**30


class StoreWarning(UserWarning):
    """A line of a measurement store was skipped (torn by a killed writer, or not JSON)."""


def _lines(records: Mapping[str, Any] | Iterable[Mapping[str, Any]], path: Path) -> bytes:
    recs = [records] if isinstance(records, Mapping) else list(records)
    out = []
    for r in recs:
        try:
            out.append(json.dumps(r, allow_nan=False, sort_keys=False, default=str))
        except ValueError as e:
            raise InputError(f"cannot store a record with a non-finite number ({e})", file=str(path)) from None
    return "".join(line + "\n" for line in out).encode("utf-8")


def append_jsonl(path: str | Path, records: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Path:
    """Append one record (a mapping) or several as JSON lines; safe under concurrent writers and kill -9."""
    p = check_path(path, InputError)
    payload = _lines(records, p)
    if not payload:
        return p
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload  # a killed writer tore the last line: start on a fresh one
        view = memoryview(payload)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock
    return p


def read_jsonl(path: str | Path, *, error_cls: type[PerfModelError] = InputError) -> list[dict[str, Any]]:
    """Every record of a JSONL store; torn or garbled lines are skipped with a StoreWarning."""
    p = check_path(path, error_cls)
    try:
        with open(p, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            raw = fh.read(MAX_STORE_BYTES + 1)
    except OSError as e:
        raise error_cls(f"cannot read file: {e.strerror or e}", file=str(p)) from None
    if len(raw) > MAX_STORE_BYTES:
        raise error_cls(f"file too large (more than {MAX_STORE_BYTES:,} bytes)", file=str(p))
    out = []
    lines = raw.split(b"\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            torn = i == len(lines)  # no newline after it: a writer was killed mid-line
            warnings.warn(f"{p}: line {i} skipped ({'torn last line' if torn else 'not valid JSON'})",
                          StoreWarning, stacklevel=2)
            continue
        if not isinstance(rec, dict):
            warnings.warn(f"{p}: line {i} skipped (not a JSON object)", StoreWarning, stacklevel=2)
            continue
        out.append(rec)
    return out


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _temp_prefix(p: Path) -> str:
    return f".{p.name}.tmp-"


def _sweep_dead_temps(p: Path) -> None:
    """Remove temp files of `p` left by writers that were killed (their pid is gone)."""
    prefix = _temp_prefix(p)
    for q in p.parent.glob(prefix + "*"):
        pid_text = q.name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                q.unlink()
        except PermissionError:
            pass


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace the file's content at once (readers see the old or the new file, never a mix)."""
    p = check_path(path, InputError)
    p.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(p.parent):
        _sweep_dead_temps(p)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f"{_temp_prefix(p)}{os.getpid()}-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, p)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return p
