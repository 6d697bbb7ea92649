"""Accuracy metrics of the validation suites, checked against hand-computed values."""

from __future__ import annotations

import pytest

from perfmodel.validation.metrics import (
    abs_error_pct, meets_target, percentile, signed_error_pct, summarize,
)


def test_signed_and_absolute_error():
    assert signed_error_pct(110.0, 100.0) == pytest.approx(10.0)
    assert signed_error_pct(0.08, 0.1) == pytest.approx(-20.0)
    assert abs_error_pct(0.08, 0.1) == pytest.approx(20.0)
    assert signed_error_pct(1.0, 1.0) == 0.0
    with pytest.raises(ValueError):
        signed_error_pct(1.0, 0.0)


def test_percentile_interpolates_like_numpy():
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(xs, 50) == 3.0
    assert percentile(xs, 90) == pytest.approx(4.6)  # position 0.9 * 4 = 3.6 -> 4 + 0.6 * (5 - 4)
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 5.0
    assert percentile([7.0], 90) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_by_hand():
    errors = {"a": 5.0, "b": -12.0, "c": 30.0, "d": -2.0, "e": 8.0}
    s = summarize(errors, worst_n=2)
    # |errors| sorted: 2, 5, 8, 12, 30
    assert s.n == 5
    assert s.median_abs_pct == 8.0
    assert s.mean_abs_pct == pytest.approx((2 + 5 + 8 + 12 + 30) / 5)
    assert s.p90_abs_pct == pytest.approx(12 + 0.6 * (30 - 12))  # position 3.6
    assert s.max_abs_pct == 30.0
    assert s.mean_signed_pct == pytest.approx((5 - 12 + 30 - 2 + 8) / 5)
    assert s.worst == (("c", 30.0), ("b", -12.0))
    assert s.within_10pct == 3 and s.within_25pct == 4
    assert not meets_target(s)  # c is worse than 25%
    d = s.to_dict()
    assert d["worst"][0] == {"case": "c", "error_pct": 30.0}


def test_target_rule():
    ok = summarize([("x", 9.0), ("y", -10.0), ("z", 24.9)])
    assert ok.median_abs_pct == 10.0 and meets_target(ok)
    bad_median = summarize([("x", 11.0), ("y", -12.0), ("z", 1.0)])
    assert not meets_target(bad_median)
    with pytest.raises(ValueError):
        summarize({})


def test_case_summary_by_hand():
    from perfmodel.validation.metrics import case_summary

    s = case_summary([("a", -5.0), ("b", 20.0), ("c", 10.0)], 15.0)
    assert s == {"cases": 3, "median_abs_error_pct": 10.0, "mean_abs_error_pct": 35.0 / 3,
                 "p90_abs_error_pct": 20.0, "worst_case": "b", "worst_abs_error_pct": 20.0,
                 "within_target": 2, "target_pct": 15.0}
    assert case_summary([], 15.0) == {"cases": 0}
