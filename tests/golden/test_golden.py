"""Golden outputs: predict, plan_search and sweep agree with the frozen files to 1e-9 (relative).

A deliberate change regenerates them with `python3 tests/golden/make_golden.py` and lists each intended
difference in the commit message.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_golden as generate  # noqa: E402

REL = 1e-9
ABS = 1e-15


def _load(name: str) -> dict[str, Any]:
    return json.loads((HERE / name).read_text())


def mismatches(want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Keys of `want` whose value in `got` is missing or differs (numbers: 1e-9 relative)."""
    bad = []
    for k, w in want.items():
        if k not in got:
            bad.append(f"{k}: missing (want {w!r})")
            continue
        g = got[k]
        if isinstance(w, list):
            if not isinstance(g, list) or len(g) != len(w) or any(
                    not math.isclose(a, b, rel_tol=REL, abs_tol=ABS) for a, b in zip(w, g)):
                bad.append(f"{k}: list differs")
        elif isinstance(w, (int, float)) and not isinstance(w, bool) and isinstance(g, (int, float)) \
                and not isinstance(g, bool):
            if not math.isclose(w, g, rel_tol=REL, abs_tol=ABS):
                bad.append(f"{k}: want {w!r}, got {g!r}")
        elif w != g:
            bad.append(f"{k}: want {w!r}, got {g!r}")
    return bad


def test_mismatches_detects_a_change():
    assert mismatches({"a": 1.0, "b": "x", "c": [1.0]}, {"a": 1.0 + 1e-12, "b": "x", "c": [1.0]}) == []
    assert len(mismatches({"a": 1.0, "b": "x", "c": [1.0]}, {"a": 1.001, "b": "y", "c": [2.0]})) == 3
    assert mismatches({"a": 1.0}, {}) == ["a: missing (want 1.0)"]


_PREDICT = _load("predict.json")
_CASES = {cid: (net, hw, kw) for cid, net, hw, kw in generate.predict_cases()}


def test_golden_case_lists_match():
    assert sorted(_PREDICT) == sorted(_CASES)


@pytest.mark.parametrize("cid", sorted(_CASES))
def test_predict_golden(cid):
    from perfmodel import predict

    net, hw, kw = _CASES[cid]
    want = _PREDICT[cid]
    try:
        got = generate.prediction_digest(predict(net, hw, **kw))
    except Exception as e:
        got = {"error": f"{type(e).__name__}: {e}"}
    assert mismatches(want, got) == []


def test_plan_search_golden():
    want = _load("plan_search.json")
    got = generate.run_plan_search()
    assert sorted(want) == sorted(got)
    for cid in want:
        assert mismatches(want[cid], got[cid]) == [], cid


def test_sweep_golden():
    want = _load("sweep.json")
    got = generate.run_sweep()
    assert sorted(want) == sorted(got)
    for i in want:
        assert mismatches(want[i], got[i]) == [], i
