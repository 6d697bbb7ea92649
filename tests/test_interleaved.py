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
    for x in (0.0, 0.2, 5.0):
        ref = schedule_time([1.0] * 4, [2.0] * 4, [x] * 3, 8, "1f1b").total_s
        assert iteration_s(3.0, x, 4, 8, 1) == pytest.approx(ref)


def test_interleaved_by_hand():
    # c = 3, x = 0.1, p = 4, m = 8, v = 2: 7*max(3, 0.2) + 3 + 3*(1.5 + 0.2) = 24 + 5.1
    assert iteration_s(3.0, 0.1, 4, 8, 2) == pytest.approx(29.1)
    # bubble over ideal work without transfers = (p-1)/(v m)
    assert (iteration_s(3.0, 0.0, 4, 8, 2) - 24) / 24 == pytest.approx(bubble_fraction(4, 8, 2))
    # transfer-bound: the round trip (4 * 3 + 2 * 2 * 3 * 2.0) over 4 * (1 + 3/8) = 5.5 in-flight micro-batches
    assert iteration_s(3.0, 2.0, 4, 8, 2) == pytest.approx(7 * 36 / 5.5 + 3 + 3 * (1.5 + 4.0))
    assert iteration_s(3.0, 0.5, 4, 8, 2) == pytest.approx(7 * 18 / 5.5 + 3 + 3 * (1.5 + 1.0))  # (12 + 6) / 5.5
    assert iteration_s(3.0, 0.5, 1, 8, 1) == 24.0


def test_extra_communication_and_memory():
    assert p2p_messages_per_rank(4, 8, 1) == 16 and p2p_messages_per_rank(4, 8, 3) == 48
    assert p2p_messages_per_rank(1, 8, 1) == 0
    assert first_stage_inflight(4, 8, 1) == 4
    assert first_stage_inflight(4, 8, 2) == pytest.approx(4 * (1 + 3 / 8))


def test_interleaved_timing_by_hand():
    from perfmodel.parallel.interleaved import interleaved_timing

    for x in (0.0, 0.2, 5.0):  # v = 1 is the 1F1B schedule, field by field
        a = schedule_time([1.0, 2.0, 1.0], [2.0, 3.0, 2.0], [x, x], 6, "1f1b")
        b = interleaved_timing([1.0, 2.0, 1.0], [2.0, 3.0, 2.0], [x, x], 6, 1)
        assert (b.total_s, b.bubble_s, b.exposed_transfer_s, b.critical_stage) == pytest.approx(
            (a.total_s, a.bubble_s, a.exposed_transfer_s, a.critical_stage))
        assert b.last_backward_end_s == pytest.approx(a.last_backward_end_s)
    # p = 4 balanced c = 3 (f 1, b 2), x = 0.1, m = 8, v = 2: total 29.1 (iteration_s), exposed 2*3*0.1 = 0.6,
    # bubble = 29.1 - 24 - 0.6 = 4.5 = (p-1) c / v
    t = interleaved_timing([1.0] * 4, [2.0] * 4, [0.1] * 3, 8, 2)
    assert (t.total_s, t.exposed_transfer_s, t.bubble_s) == pytest.approx((29.1, 0.6, 4.5))
    assert t.last_backward_end_s == pytest.approx((29.1, 29.1 - 1.1, 29.1 - 2.2, 29.1 - 3.3))


def test_predict_virtual_stages_gpt2_small_pp4():
    import perfmodel
    from perfmodel.parallel.interleaved import interleaved_timing
    from perfmodel.parallel.overlap import overlap_facts, p2p_slowdown
    from perfmodel.parallel.pipeline import schedule_time
    from perfmodel.parallel.predict import evaluate
    from perfmodel.prediction import make_setup

    kw = dict(batch=8, devices=4, plan={"dp": 1, "tp": 1, "pp": 4, "microbatches": 8}, dtype="bf16", optimizer="adam")
    g, hw = perfmodel.load_network("gpt2_small"), perfmodel.load_hardware("dgx-a100")
    a, b = evaluate(g, hw, make_setup(**kw)), evaluate(g, hw, make_setup(virtual_stages=2, **kw))
    s = overlap_facts(a.ranks.device).compute_slowdown  # steady-state sends slow each stage's compute (overlap.py)

    def slowed(v):
        return [bb + x for bb, x in zip(a.staged.B, p2p_slowdown(a.staged.F, a.staged.B, a.synced.xfer, 8, s, v))]
    want = interleaved_timing(a.staged.F, slowed(2), a.synced.xfer, 8, 2)
    assert b.it.timing.total_s == pytest.approx(want.total_s)
    assert a.it.timing.total_s == pytest.approx(schedule_time(a.staged.F, slowed(1), a.synced.xfer, 8).total_s)
    # without the slowdown the fill/drain shrinks by (sum c - max c) / 2: the bubble roughly halves
    c = [f + bb for f, bb in zip(a.staged.F, a.staged.B)]
    plain = schedule_time(a.staged.F, a.staged.B, a.synced.xfer, 8).total_s
    assert plain - interleaved_timing(a.staged.F, a.staged.B, a.synced.xfer, 8, 2).total_s == pytest.approx(
        (sum(c) - max(c)) / 2)
    assert b.it.total_s < a.it.total_s
    assert b.memory.activations_bytes == pytest.approx(a.memory.activations_bytes * (1 + 3 / 8))
    with pytest.raises(perfmodel.InputError, match="multiple"):
        perfmodel.predict("gpt2_small", "dgx-a100", virtual_stages=2, **{**kw, "plan": {**kw["plan"], "microbatches": 2},
                                                                         "batch": 2})
    with pytest.raises(perfmodel.InputError, match="pp > 1"):
        perfmodel.predict("gpt2_small", "dgx-a100", virtual_stages=2, batch=8)
