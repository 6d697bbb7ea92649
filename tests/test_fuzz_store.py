"""Measurement stores under abuse: concurrent writers lose nothing, kill -9 leaves no temp files, torn lines skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from perfmodel.store import StoreWarning, append_jsonl, atomic_write_text, read_jsonl

WRITER = textwrap.dedent("""
    import sys
    from perfmodel.store import append_jsonl
    path, who, n, pad = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    for i in range(n):
        append_jsonl(path, {"writer": who, "i": i, "pad": "x" * pad})
""")

REWRITER = textwrap.dedent("""
    import sys
    from perfmodel.store import atomic_write_text
    path = sys.argv[1]
    i = 0
    while True:
        atomic_write_text(path, str(i) * 3_000_000)
        i = (i + 1) % 10
""")


def _spawn(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stderr=subprocess.PIPE)


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "m.jsonl"
    procs = [_spawn(WRITER, path, who, 150, 2000) for who in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()
    recs = read_jsonl(path)
    assert len(recs) == 300
    for who in ("a", "b"):
        assert sorted(r["i"] for r in recs if r["writer"] == who) == list(range(150))
    assert sorted(os.listdir(tmp_path)) == ["m.jsonl"]


def test_killed_writer_leaves_no_temp_files_and_a_readable_store(tmp_path):
    path = tmp_path / "m.jsonl"
    p = _spawn(WRITER, path, "k", 100_000, 200_000)
    deadline = time.time() + 30
    while (not path.exists() or path.stat().st_size < 1_000_000) and time.time() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert sorted(os.listdir(tmp_path)) == ["m.jsonl"]
    with open(path, "ab") as fh:  # a tear, as if the kill had landed mid-line
        fh.write(b'{"writer": "k", "i": -1, "pa')
    with pytest.warns(StoreWarning, match="torn last line"):
        before = read_jsonl(path)
    assert before and all(r["writer"] == "k" for r in before)
    append_jsonl(path, {"writer": "after"})
    with pytest.warns(StoreWarning, match="line .* skipped"):
        after = read_jsonl(path)
    assert after[-1] == {"writer": "after"} and len(after) == len(before) + 1


def test_killed_rewriter_temp_files_are_swept(tmp_path):
    path = tmp_path / "profile.yaml"
    p = _spawn(REWRITER, path)
    deadline = time.time() + 30
    while not path.exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    text = path.read_text()
    assert len(text) == 3_000_000 and len(set(text)) == 1  # never a mix of two writes
    atomic_write_text(path, "done\n")
    assert sorted(os.listdir(tmp_path)) == ["profile.yaml"]
    assert path.read_text() == "done\n"


def test_garbage_lines_and_refused_records(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"a": 1}\n\xff\xfe garbage\n[1, 2]\n{"a": 2}\n')
    with pytest.warns(StoreWarning) as rec:
        assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert {str(w.message).split(": ", 1)[1] for w in rec} == {
        "line 2 skipped (not valid JSON)", "line 3 skipped (not a JSON object)"}
    from perfmodel.errors import InputError

    with pytest.raises(InputError, match="non-finite"):
        append_jsonl(path, {"t": float("nan")})
    with pytest.raises(InputError, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")
    append_jsonl(path, [{"b": 1}, {"b": 2}])
    assert [json.loads(x) for x in path.read_bytes().splitlines()[-2:]] == [{"b": 1}, {"b": 2}]


SAMPLES_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from perfmodel.calibration.samples import save_samples
    for i in range(int(sys.argv[3])):
        save_samples([], {"writer": sys.argv[2], "i": i}, Path(sys.argv[1]))
""")


def test_calibration_samples_writer_is_safe_under_concurrency(tmp_path):
    from perfmodel.calibration.samples import _records

    path = tmp_path / "samples.jsonl"
    procs = [_spawn(SAMPLES_WRITER, path, who, 150) for who in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()
    recs = _records(path)
    assert len(recs) == 300
    for who in ("a", "b"):
        assert sorted(r["machine"]["i"] for r in recs if r["machine"]["writer"] == who) == list(range(150))
    assert sorted(os.listdir(tmp_path)) == ["samples.jsonl"]
