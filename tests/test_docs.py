"""Every example of README.md and docs/*.md runs: fenced bash/text/python/yaml blocks and inline commands.

Blocks are read by scripts/docblocks.py; `<!-- needs: torch -->` before a block skips it without torch,
`<!-- skip: why -->` never runs it. `pip install` is not run (it would change the environment);
`python -m pytest` runs as `--collect-only` (the suite cannot run itself).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import docblocks as D  # noqa: E402

FILES = D.doc_files()
BLOCKS = [b for f in FILES for b in D.blocks(f)]
SHELL = [b for b in BLOCKS if b.lang in ("bash", "text") and D.commands(b)]
PYTHON_FILES = [f for f in FILES if any(b.lang == "python" for b in D.blocks(f))]
YAML = [b for b in BLOCKS if b.lang == "yaml"]
# subcommands another change is adding right now (coord notes); an entry must go once the command exists
PENDING: dict[str, str] = {}


def _skip_reason(block: D.Block) -> str | None:
    if block.skip:
        return f"marked skip: {block.skip}"
    lack = D.missing(block.needs)
    return f"needs {', '.join(lack)}" if lack else None


def _problem_text(cmd: D.Command, bad: list[tuple[str, str | None]]) -> str:
    lines = [f"{cmd.where}: output of `{' '.join(cmd.argv)}` differs from the doc:"]
    for shown, actual in bad:
        lines.append(f"  doc:    {shown}\n  actual: {actual if actual is not None else '(no such line)'}")
    return "\n".join(lines)


def test_docs_have_examples():
    assert len(SHELL) >= 3 and len(PYTHON_FILES) >= 2 and YAML
    assert all(b.skip is None or b.skip.strip() for b in BLOCKS), "a skip annotation needs a reason"


@pytest.mark.parametrize("block", SHELL, ids=lambda b: b.where)
def test_shell_block(block, tmp_path, monkeypatch):
    reason = _skip_reason(block)
    if reason:
        pytest.skip(reason)
    monkeypatch.chdir(tmp_path)
    ran = 0
    for cmd in D.commands(block):
        argv = cmd.argv
        if argv[:2] == ["pip", "install"]:
            continue
        if argv[:3] in (["python", "-m", "pytest"], ["python3", "-m", "pytest"]):
            argv = [*argv, "--collect-only", "-p", "no:cacheprovider"]
        before = {w for w in D.written_paths(argv) if (ROOT / w).exists()}
        code, out = D.run_command(argv, tmp_path)
        assert code == 0, f"{cmd.where}: `{' '.join(cmd.argv)}` exited {code}:\n{out[-3000:]}"
        stray = [w for w in D.written_paths(argv) if (ROOT / w).exists() and w not in before]
        assert not stray, f"{cmd.where}: the command wrote {stray} into the checkout"
        bad = D.compare_output(cmd.shown, out)
        assert not bad, _problem_text(cmd, bad)
        ran += 1
    assert ran


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: p.name)
def test_python_blocks(path, tmp_path):
    """The python blocks of one file run in order in one namespace, in a fresh interpreter."""
    run = [b for b in D.blocks(path) if b.lang == "python" and not _skip_reason(b)]
    if not run:
        pytest.skip("every python block needs what is missing here")
    code, out = D.run_python(run, tmp_path)
    assert code == 0, f"python blocks of {path.name} failed:\n{out[-3000:]}"


@pytest.mark.parametrize("block", YAML, ids=lambda b: b.where)
def test_yaml_network_blocks(block):
    """A YAML block that describes a network loads, and its shapes infer."""
    import yaml

    from perfmodel.graph.io import network_from_dict

    data = yaml.safe_load(block.text)
    if not (isinstance(data, dict) and "layers" in data):
        pytest.skip("not a network file")
    g = network_from_dict(data, file=block.where)
    assert len(g.layers) >= 2


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_inline_commands(path, tmp_path, monkeypatch):
    """Inline `perfmodel ...` commands: quick concrete ones exit 0; the others (patterns, calibrate, validate)
    name real commands and options."""
    monkeypatch.chdir(tmp_path)
    problems = []
    for cmd in D.inline_commands(path):
        if not D.runnable_inline(cmd.argv):
            found = D.cli_option_problems(cmd.argv)
            if cmd.argv[1] in PENDING and found == [f"no command `perfmodel {cmd.argv[1]}`"]:
                continue
            problems += [f"{cmd.where}: {p}" for p in found]
            continue
        code, out = D.run_command(cmd.argv, tmp_path)
        if code != 0:
            problems.append(f"{cmd.where}: `{' '.join(cmd.argv)}` exited {code}: {out[-600:]}")
    assert not problems, "\n".join(problems)


def test_pending_commands_are_still_missing():
    """PENDING only excuses commands that do not exist yet: once one lands, its docs are checked."""
    for name in PENDING:
        assert D.cli_option_problems(["perfmodel", name]) == [f"no command `perfmodel {name}`"], (
            f"`perfmodel {name}` exists now: remove it from PENDING in tests/test_docs.py")


def test_readme_quick_start_is_install_predict_test():
    """The quick start stays three commands: one install, one prediction on built-in profiles, one test run."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = next(b for b in D.blocks(ROOT / "README.md") if b.lang == "bash")
    assert text.index("## Quick start") < text.index("```bash") and first.line > text[:text.index("## Quick start")].count("\n")
    argv = [c.argv for c in D.commands(first)]
    assert len(argv) == 3 and argv[0][:2] == ["pip", "install"] and argv[2][1:3] == ["-m", "pytest"]
    import perfmodel

    pred = argv[1]
    assert pred[:2] == ["perfmodel", "predict"] and pred[2] in perfmodel.builtin_networks()
    assert pred[pred.index("--hardware") + 1] in perfmodel.builtin_hardware()


def test_readme_names_every_validation_suite():
    """The README's `validate --suite a|b|...` pattern lists exactly the registered suites."""
    import re

    from perfmodel.validation.registry import SUITES

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"validate --suite ([a-z0-9-]+(?:\|[a-z0-9-]+)+)", text)
    assert found, "README shows no `validate --suite a|b|...` pattern"
    assert set(found[0].split("|")) == set(SUITES), f"README {found[0]} vs registered {sorted(SUITES)}"


JSON_RUNS = {"predict": ["predict", "resnet50", "--hardware", "v100-sxm2", "--layers", "--json"],
             "show": ["show", "resnet50", "--json"]}


@pytest.mark.parametrize("cmd", sorted(JSON_RUNS))
def test_documented_json_keys_are_the_real_ones(cmd):
    """README 'JSON output': the keys listed for a command (and the sub-keys in parentheses) are exactly
    the keys its --json prints."""
    import json

    docs = D.json_key_docs(ROOT / "README.md")
    assert cmd in docs, f"README documents no `perfmodel {cmd} ... --json` keys"
    top, subs = docs[cmd]
    code, out = D.run_cli(["perfmodel", *JSON_RUNS[cmd]])
    assert code == 0, out
    data = json.loads(out)
    assert top == set(data), f"{cmd}: missing from README {set(data) - top}, not printed {top - set(data)}"
    for key, named in subs.items():
        value = data[key][0] if isinstance(data[key], list) else data[key]
        assert named == set(value), (f"{cmd} `{key}`: missing from README {set(value) - named}, "
                                     f"not printed {named - set(value)}")


LAYOUTS = [b for b in BLOCKS if b.lang == "" and len(D.layout_paths(b)) >= 5]


@pytest.mark.parametrize("block", LAYOUTS, ids=lambda b: b.where)
def test_layout_listing_names_existing_paths(block):
    """A layout listing (README 'Layout') names files and folders that exist."""
    paths = D.layout_paths(block)
    gone = [p for p in paths if not (ROOT / p).exists()]
    assert not gone, f"{block.where}: the listing names paths that do not exist: {gone}"


# commands that print no table: `report` writes an HTML page
NO_TABLE = {"report"}


def test_every_table_command_takes_json():
    """README: 'Every command that prints a table takes `--json`'."""
    import typer.main

    from perfmodel.cli import app

    group = typer.main.get_command(app)
    lacking = [n for n, c in group.commands.items()
               if n not in NO_TABLE and "--json" not in {o for p in c.params for o in p.opts}]
    assert not lacking, f"commands without --json: {lacking}"


def test_doc_number_sessions_write_nothing_into_the_checkout():
    """scripts/doc_numbers.py runs the `$ ` sessions in a temporary folder (their --out files stay out of the repo)."""
    import doc_numbers as N

    outs = {w for b in BLOCKS if b.lang == "text" for c in D.commands(b) for w in D.written_paths(c.argv)}
    before = {w for w in outs if (ROOT / w).exists()}
    N.session_problems(write=False)
    assert {w for w in outs if (ROOT / w).exists()} == before


def test_compare_output_rules():
    """The output comparison: '...' skips lines, a trailing '...' is a prefix, numbers must be equal."""
    actual = "a 1.5 ms\nb 2\nc 3 and more\n"
    assert D.compare_output(["a 1.5 ms", "...", "c 3 ..."], actual) == []
    assert D.compare_output(["a 1.6 ms"], actual) == [("a 1.6 ms", "a 1.5 ms")]
    assert D.compare_output(["b 2", "a 1.5 ms"], actual) == [("a 1.5 ms", None)]
    assert D.has_placeholder(["perfmodel", "predict", "NETWORK"]) and not D.has_placeholder(
        ["perfmodel", "predict", "resnet50", "--hardware", "v100-sxm2"])
