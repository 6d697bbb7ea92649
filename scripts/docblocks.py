"""Extract and run the examples of README.md and docs/*.md (used by tests/test_docs.py and doc_numbers.py).

A fenced block is ```bash, ```python, ```text (a `$ ` session: commands and the output they print) or
```yaml (a network file). An HTML comment on the line before a block annotates it:
`<!-- needs: torch -->` (skipped when torch is not importable; several names comma-separated) or
`<!-- skip: why -->` (never run, with the reason). `perfmodel ...` commands run in-process with typer's
CliRunner; inline `perfmodel ...` commands of the prose run too, or, when they hold placeholders
(NETWORK, [--opt], a|b), have their subcommand and option names checked against the CLI.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\s*$")
ANNOTATION = re.compile(r"^<!--\s*(needs|skip)\s*:\s*(.*?)\s*-->\s*$")
INLINE = re.compile(r"`(perfmodel [^`]+)`")
NUMBER = re.compile(r"[-+]?\$?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?"
                    r"(?: ?(?:ns|us|ms|s|min|h|B|kB|MB|GB|TB|[kMGTP]?FLOP(?:/s)?)\b)?")
PLACEHOLDER = re.compile(r"\[|\||\.\.\.|\b[A-Z][A-Z_:]{2,}\b")


@dataclass(frozen=True)
class Block:
    """One fenced block of a markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    needs: tuple[str, ...] = ()
    skip: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass
class Command:
    """One shell command of a block or of the prose, with the output the doc shows (text sessions)."""

    argv: list[str]
    where: str
    shown: list[str] = field(default_factory=list)


def doc_files() -> list[Path]:
    """README.md and every docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with their annotations."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        needs: tuple[str, ...] = ()
        skip = None
        a = ANNOTATION.match(lines[i - 1]) if i else None
        if a and a.group(1) == "needs":
            needs = tuple(n.strip() for n in a.group(2).split(",") if n.strip())
        elif a:
            skip = a.group(2)
        out.append(Block(path, i + 1, m.group(1), "\n".join(lines[i + 1:j]), needs, skip))
        i = j + 1
    return out


def missing(needs: tuple[str, ...]) -> list[str]:
    """The needed modules (or `root`) this process lacks."""
    import os

    out = [n for n in needs if n != "root" and importlib.util.find_spec(n) is None]
    if "root" in needs and os.geteuid() != 0:
        out.append("root")
    return out


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(offset, line) with backslash continuations joined and comments/blank lines dropped."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for k, raw in enumerate(text.splitlines()):
        if not buf:
            start = k
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        line = (buf + raw).strip()
        buf = ""
        if line and not line.startswith("#"):
            out.append((start, line))
    return out


def commands(block: Block) -> list[Command]:
    """The commands of a bash block, or of a text block's `$ ` session with the output shown after each."""
    if block.lang == "bash":
        return [Command(shlex.split(line, comments=True), f"{block.where}+{k + 1}")
                for k, line in _logical_lines(block.text)]
    if block.lang != "text":
        return []
    out: list[Command] = []
    for k, line in enumerate(block.text.splitlines()):
        if line.startswith("$ "):
            out.append(Command(shlex.split(line[2:], comments=True), f"{block.where}+{k + 1}"))
        elif out:
            out[-1].shown.append(line)
    return out


def inline_commands(path: Path) -> list[Command]:
    """`perfmodel ...` commands quoted inline in the prose (outside fenced blocks)."""
    out: list[Command] = []
    text = path.read_text(encoding="utf-8")
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            for m in INLINE.finditer(line):
                out.append(Command(m.group(1).split(), f"{path.relative_to(ROOT)}:{n}"))
    # commands wrapped over two lines: `perfmodel sweep ... \n --csv x` are joined by the paragraph reader
    out += _wrapped_inline(path, text)
    return out


def _wrapped_inline(path: Path, text: str) -> list[Command]:
    """Inline commands whose backticks span a line break (prose wrapped at a fixed width)."""
    out: list[Command] = []
    lines = text.splitlines()
    fenced = False
    for n, line in enumerate(lines[:-1], 1):
        if line.startswith("```"):
            fenced = not fenced
        if fenced or line.count("`") % 2 == 0:
            continue
        tail = line[line.rindex("`") + 1:]
        if not tail.startswith("perfmodel "):
            continue
        rest = lines[n]
        if "`" in rest:
            out.append(Command((tail + " " + rest[:rest.index("`")]).split(), f"{path.relative_to(ROOT)}:{n}"))
    return out


# inline commands that run in a second or two; others (calibrate, validate, import) are only checked by name
QUICK = {"predict", "show", "networks", "hardware", "sweep", "fit", "compare", "serve", "report", "plan", "--help",
         "--version"}


def runnable_inline(argv: list[str]) -> bool:
    """An inline command that is concrete (no placeholder), quick, and complete (not a bare `perfmodel plan`)."""
    if has_placeholder(argv) or len(argv) < 2 or argv[1] not in QUICK:
        return False
    return len(argv) > 2 or argv[1] in ("networks", "hardware", "--help", "--version")


OUTPUT_OPTIONS = ("--out", "--csv", "--plot", "--report", "--png", "-o")


def written_paths(argv: list[str]) -> list[str]:
    """The files or folders a command is told to write (the values of --out, --csv, --plot, --report, ...)."""
    return [argv[k + 1] for k, a in enumerate(argv[:-1]) if a in OUTPUT_OPTIONS]


def has_placeholder(argv: list[str]) -> bool:
    """True when a command shows a pattern (NETWORK, [--x], a|b, ...) rather than runnable arguments."""
    return any(PLACEHOLDER.search(a) for a in argv[1:])


def cli_option_problems(argv: list[str]) -> list[str]:
    """Subcommand and `--option` names of a `perfmodel` command that the CLI does not have."""
    import typer.main

    from perfmodel.cli import app

    group = typer.main.get_command(app)
    if len(argv) < 2 or PLACEHOLDER.search(argv[1]) or argv[1].startswith("-"):
        return []  # `perfmodel ...`, `perfmodel COMMAND`, `perfmodel --help`: no subcommand named
    sub = group.commands.get(argv[1])  # type: ignore[attr-defined]
    if sub is None:
        return [f"no command `perfmodel {argv[1]}`"]
    known = {o for p in sub.params for o in (*p.opts, *p.secondary_opts)}
    out = []
    for a in argv[2:]:
        for opt in re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", a):
            if opt not in known and opt != "--help":
                out.append(f"`perfmodel {argv[1]}` has no option {opt}")
    return out


def run_cli(argv: list[str]) -> tuple[int, str]:
    """Run `perfmodel ARGS` in-process; (exit code, stdout + stderr)."""
    from typer.testing import CliRunner

    from perfmodel.cli import app

    r = CliRunner().invoke(app, argv[1:], catch_exceptions=True)
    out = r.output
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        import traceback

        out += "".join(traceback.format_exception(r.exception))
        return (r.exit_code or 1), out
    return r.exit_code, out


def run_command(argv: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run one documented command: `perfmodel` in-process, `python ...` as a subprocess from the repo root
    (paths in the docs are relative to it; files written land in `cwd` only for perfmodel commands)."""
    if argv and argv[0] == "perfmodel":
        return run_cli(argv)
    if argv and argv[0] in ("python", "python3"):
        r = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr
    raise ValueError(f"do not know how to run {' '.join(argv)!r}")


_EXEC = """
import json, sys, traceback
blocks = json.load(sys.stdin)
ns = {"__name__": "__doc_example__"}
for where, text in blocks:
    try:
        exec(compile(text, where, "exec"), ns)
    except BaseException:
        print("\\n@@FAILED " + where + "\\n" + traceback.format_exc(limit=-3), file=sys.stderr)
        sys.exit(1)
"""


def run_python(blocks_: list[Block], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """Run python blocks in order in one namespace in a fresh interpreter (as a new notebook would);
    (exit code, stdout + stderr; a failure names its block)."""
    import json

    payload = json.dumps([(b.where, b.text) for b in blocks_])
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", _EXEC], input=payload, cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=env)
    return r.returncode, r.stdout + r.stderr


def layout_paths(block: Block) -> list[str]:
    """Paths named by a layout listing (a plain ``` block whose unindented lines start with `dir/` or
    `dir/file.py`): `a/b.py, c.py, d/   text` names a/b.py, a/c.py and a/d/."""
    out: list[str] = []
    for line in block.text.splitlines():
        if not line or line[0].isspace() or "/" not in line.split()[0]:
            continue
        names: list[str] = []
        for tok in line.split():
            names.append(tok.rstrip(","))
            if not tok.endswith(","):
                break
        first = names[0]
        parent = first.rstrip("/").rsplit("/", 1)[0] + "/" if "/" in first.rstrip("/") else ""
        out += [first] + [parent + n for n in names[1:]]
    return out


_PAREN = re.compile(r"\(([^()]*(?:\([^()]*\)[^()]*)*)\)")
_NAME = re.compile(r"`([a-z_][a-z0-9_]*)`")


def json_key_docs(path: Path) -> dict[str, tuple[set[str], dict[str, set[str]]]]:
    """Paragraphs "`perfmodel CMD ... --json` keys ...": CMD -> (top-level keys named, {key: sub-keys named in
    the parentheses after it})."""
    out: dict[str, tuple[set[str], dict[str, set[str]]]] = {}
    for para in path.read_text(encoding="utf-8").split("\n\n"):
        m = re.match(r"`perfmodel (\w+) [^`]*--json` keys[^:]*:", para)
        if not m:
            continue
        body = " ".join(para[m.end():].split())
        subs: dict[str, set[str]] = {}
        for k in re.finditer(r"`([a-z_]+)` " + _PAREN.pattern, body):
            subs[k.group(1)] = set(_NAME.findall(k.group(2)))
        top = set(_NAME.findall(_PAREN.sub("", body)))
        out[m.group(1)] = (top, {k: v for k, v in subs.items() if v})
    return out


def skeleton(line: str) -> str:
    """A line with every number (and its unit) replaced by '#' and runs of spaces collapsed (its stable shape)."""
    return " ".join(NUMBER.sub("#", line).split())


def compare_output(shown: list[str], actual: str) -> list[tuple[str, str | None]]:
    """(shown line, actual line or None) for each shown line that the actual output does not match, in order.

    A shown line `...` stands for any lines; a line ending in `...` matches an actual line that starts
    with the same text; other lines must equal an actual line (trailing spaces aside).
    """
    act = [a.rstrip() for a in actual.splitlines()]
    bad: list[tuple[str, str | None]] = []
    pos = 0
    for s in (x.rstrip() for x in shown):
        if s == "...":
            continue
        prefix = s[:-3] if s.endswith("...") else None
        hit = next((k for k in range(pos, len(act))
                    if (act[k].startswith(prefix) if prefix is not None else act[k] == s)), None)
        if hit is not None:
            pos = hit + 1
            continue
        shape = skeleton(prefix if prefix is not None else s)
        near = next((act[k] for k in range(pos, len(act))
                     if (skeleton(act[k]).startswith(shape) if prefix is not None else skeleton(act[k]) == shape)), None)
        bad.append((s, near))
    return bad
