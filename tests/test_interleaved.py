"""Interleaved 1F1B: bubble (p-1)/(v m), extra p2p, first-stage activations (Narayanan 2021, Korthikanti 2022)."""

import pytest

from perfmodel.errors import InputError
from perfmodel.parallel.interleaved import bubble_fraction, first_stage_inflight, iteration_s, p2p_messages_per_rank
from perfmodel.parallel.pipeline import schedule_time


def test_bubble_fraction():
    assert bubble_fraction(8, 64, 1) == pytest.approx(7 / 64)
    assert bubble_fraction(8, 64, 4) == pytest.approx(7 / 256)
    with pytest.raises(InputError):
        bubble_fraction(8, 12, 2)  # m must be a multiple of p when interleaved


def test_v1_equals_the_1f1b_schedule():
    for x in (0.0, 0.2):
        ref = schedule_time([1.0] * 4, [2.0] * 4, [x] * 3, 8, "1f1b").total_s
        assert iteration_s(3.0, x, 4, 8, 1) == pytest.approx(ref)


def test_interleaved_by_hand():
    # c = 3, x = 0.1, p = 4, m = 8, v = 2: 8*max(3, 0.2) + 3*(1.5 + 0.2) = 24 + 5.1
    assert iteration_s(3.0, 0.1, 4, 8, 2) == pytest.approx(29.1)
    # bubble over ideal work without transfers = (p-1)/(v m)
    assert (iteration_s(3.0, 0.0, 4, 8, 2) - 24) / 24 == pytest.approx(bubble_fraction(4, 8, 2))
    assert iteration_s(3.0, 2.0, 4, 8, 2) == pytest.approx(8 * 4.0 + 3 * (1.5 + 4.0))  # transfer-bound
    assert iteration_s(3.0, 0.5, 1, 8, 1) == 24.0


def test_extra_communication_and_memory():
    assert p2p_messages_per_rank(4, 8, 1) == 16 and p2p_messages_per_rank(4, 8, 3) == 48
    assert p2p_messages_per_rank(1, 8, 1) == 0
    assert first_stage_inflight(4, 8, 1) == 4
    assert first_stage_inflight(4, 8, 2) == pytest.approx(4 * (1 + 3 / 8))
