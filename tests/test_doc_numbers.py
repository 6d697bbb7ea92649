"""The numbers quoted in README.md and docs/ equal what the code computes (scripts/doc_numbers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import doc_numbers as N  # noqa: E402


@pytest.fixture(scope="module")
def values():
    return N.compute_values()


def test_every_span_has_a_value(values):
    assert {s.key for s in N.SPANS} <= set(values)


def test_doc_numbers_match_the_code(values):
    problems = N.span_problems(values, write=False)
    assert not problems, "\n".join(problems) + "\nrun: python scripts/doc_numbers.py --write"


def test_doc_sessions_match_the_code():
    problems = N.session_problems(write=False)
    assert not problems, "\n".join(problems) + "\nrun: python scripts/doc_numbers.py --write"


def test_a_changed_number_is_reported(values):
    """The check is not vacuous: a value unlike the doc's is reported, with its file and line."""
    wrong = {**values, "tte": "(1, 2.00, 3.0, 4.0)"}
    problems = N.span_problems(wrong, write=False)
    assert len(problems) == 1 and "[tte]" in problems[0] and "python_api.md:" in problems[0]


def test_number_formats():
    assert [N.sig(x) for x in (1.0, 0.0384, 2.04e13, 0.000751, 3.28e9)] == ["1.0", "0.0384", "2.04e13", "0.000751",
                                                                          "3.28e9"]
    text = N.dict_comment({"a": 1, "b": 0.5, "c": None, "d": "x" * 100}, width=40)
    assert text.startswith("# {'a': 1, 'b': 0.5, 'c': None,\n#  'd': ") and text.endswith("'}\n")
