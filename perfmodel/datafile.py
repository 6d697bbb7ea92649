"""Reading data files (YAML or JSON) safely: the one door every network, profile and table comes in through.

Refused with an error naming the file: paths too long, files over `MAX_FILE_BYTES`, binary files, text that
is not UTF-8 (UTF-16/32 included), syntax errors (with line and column), YAML tags that would build Python
objects (safe loader only), nesting deeper than `MAX_DEPTH`, more than `MAX_ALIASES` YAML aliases and
documents that expand (aliases followed) to more than `MAX_NODES` values (alias bombs).
"""

from __future__ import annotations

import codecs
import json
import math
import os
from pathlib import Path
from typing import Any

from .errors import PerfModelError

MAX_FILE_BYTES = 32 * 2**20
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 500_000
MAX_PATH_CHARS = 4096
MAX_NAME_CHARS = 255
_SUFFIXES = (".yaml", ".yml", ".json")
_WIDE_BOMS = {
    codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",
    codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16",
}


def check_path(path: str | Path, error_cls: type[PerfModelError] = PerfModelError) -> Path:
    """Refuse a path too long for the file system (instead of an OSError later); return it as a Path."""
    s = str(path)
    if "\x00" in s:
        raise error_cls("the path contains a NUL character", file=repr(s[:80]))
    if len(s) > MAX_PATH_CHARS or any(len(part) > MAX_NAME_CHARS for part in Path(s).parts):
        raise error_cls(f"path too long ({len(s)} characters; a name may have at most {MAX_NAME_CHARS})",
                        file=s[:60] + "...")
    return Path(s)


def file_exists(path: str | Path, error_cls: type[PerfModelError] = PerfModelError) -> bool:
    """Whether `path` is an existing file or folder; a path the OS cannot even look up is an error."""
    p = check_path(path, error_cls)
    try:
        return p.exists()
    except OSError as e:
        raise error_cls(f"cannot look up the path: {e.strerror}", file=str(p)) from None


def read_text(path: str | Path, error_cls: type[PerfModelError] = PerfModelError,
              max_bytes: int = MAX_FILE_BYTES) -> str:
    """The file's text, checked: exists, a regular file, not too large, not binary, valid UTF-8."""
    p = check_path(path, error_cls)
    label = str(p)
    try:
        if p.is_dir():
            raise error_cls("is a folder, expected a file", file=label)
        size = p.stat().st_size
        if size > max_bytes:
            raise error_cls(f"file too large ({size:,} bytes; the limit is {max_bytes:,})", file=label)
        with open(p, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as e:
        raise error_cls(f"cannot read file: {e.strerror or e}", file=label) from None
    if len(raw) > max_bytes:
        raise error_cls(f"file too large (more than {max_bytes:,} bytes)", file=label)
    return decode_text(raw, label, error_cls)


def decode_text(raw: bytes, label: str, error_cls: type[PerfModelError] = PerfModelError) -> str:
    """Decode UTF-8 (a BOM is dropped); UTF-16/32 and binary data are refused naming `label`."""
    for bom, name in _WIDE_BOMS.items():
        if raw.startswith(bom):
            raise error_cls(f"the file is {name} encoded; save it as UTF-8", file=label)
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if b"\x00" in raw:
        raise error_cls("is a binary file (it contains NUL bytes), expected UTF-8 text (YAML, JSON or CSV)",
                        file=label)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise error_cls(f"not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line}, column {col} cannot be "
                        f"decoded; save the file as UTF-8", file=label) from None


def read_data_file(path: str | Path, error_cls: type[PerfModelError] = PerfModelError) -> Any:
    """Parse a YAML or JSON file safely (by suffix; anything but .json is read as YAML)."""
    p = Path(path)
    return parse_data(read_text(p, error_cls), str(p), json_syntax=p.suffix == ".json", error_cls=error_cls)


def parse_data(text: str, label: str, *, json_syntax: bool = False,
               error_cls: type[PerfModelError] = PerfModelError) -> Any:
    """Parse YAML (or JSON) text; every limit of this module applies; errors name `label`."""
    data = _parse_json(text, label, error_cls) if json_syntax else _parse_yaml(text, label, error_cls)
    check_tree(data, label, error_cls)
    return data


def _parse_json(text: str, label: str, error_cls: type[PerfModelError]) -> Any:
    def no_constant(name: str):
        raise error_cls(f"JSON: {name} is not a number this tool accepts (write a finite number)", file=label)

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise error_cls(f"JSON syntax error at line {e.lineno}, column {e.colno}: {e.msg}", file=label) from None
    except RecursionError:
        raise error_cls(f"nested more than {MAX_DEPTH} levels deep", file=label) from None
    except ValueError as e:  # e.g. an integer literal with too many digits
        raise error_cls(f"JSON: {e}", file=label) from None


def _parse_yaml(text: str, label: str, error_cls: type[PerfModelError]) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _check_events(yaml.parse(text, Loader=loader), label, error_cls)
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "nesting depth" in problem:  # PyYAML >= 6.0.4 refuses deep nesting in its own parser
            raise error_cls(f"{at.strip()}: nested more than the YAML parser allows" if at else
                            "nested more than the YAML parser allows", file=label) from None
        raise error_cls(f"YAML syntax error{at}: {problem}", file=label) from None
    except RecursionError:
        raise error_cls(f"nested more than {MAX_DEPTH} levels deep", file=label) from None
    except ValueError as e:  # e.g. an integer with more digits than Python converts
        raise error_cls(f"YAML: {e}", file=label) from None


def _check_events(events, label: str, error_cls: type[PerfModelError]) -> None:
    """Refuse deep nesting and many aliases from the parser's event stream, before building anything."""
    import yaml

    depth = aliases = 0
    for ev in events:
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise error_cls(f"{_at(ev)}nested more than {MAX_DEPTH} levels deep", file=label)
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise error_cls(f"{_at(ev)}more than {MAX_ALIASES} YAML aliases (*name); refused as a "
                                "possible alias bomb", file=label)


def _at(ev) -> str:
    m = getattr(ev, "start_mark", None)
    return f"line {m.line + 1}: " if m is not None else ""


def check_tree(data: Any, label: str, error_cls: type[PerfModelError] = PerfModelError) -> None:
    """Refuse a parsed document that is too deep, expands to too many values, or holds inf/nan/huge numbers."""
    stack: list[tuple[Any, int, Any]] = [(data, 0, None)]  # value, depth, (parent link, key)
    seen = 0
    while stack:
        v, depth, link = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise error_cls(f"expands to more than {MAX_NODES:,} values (YAML aliases repeating data?); "
                            "refused as a possible alias bomb", file=label)
        if depth > MAX_DEPTH:
            raise error_cls(f"nested more than {MAX_DEPTH} levels deep", file=label)
        if isinstance(v, dict):
            stack.extend((x, depth + 1, (link, k)) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, depth + 1, (link, i)) for i, x in enumerate(v))
        elif isinstance(v, float) and not math.isfinite(v):
            raise error_cls(f"field '{_path(link)}': expected a finite number, got {v}", file=label)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > 1e300:
            raise error_cls(f"field '{_path(link)}': integer too large (about 10^{int(v.bit_length() * 0.30103)})", file=label)


def _path(link) -> str:
    keys = []
    while link is not None:
        link, k = link
        keys.append(f"[{k}]" if isinstance(k, int) else f".{k}")
    return "".join(reversed(keys)).lstrip(".") or "(top level)"


def is_data_file(path: str | Path) -> bool:
    """Whether `path` looks like a data file by its suffix (.yaml, .yml, .json)."""
    return os.path.splitext(str(path))[1] in _SUFFIXES
