"""Batchnorm's own bandwidth curves (ops.norm.BATCHNORM_FORWARD_KEY / BATCHNORM_BACKWARD_KEY): keys, pricing and
calibration samples."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.engine.rates import device_rates
from perfmodel.engine.worktime import row_times, work_table
from perfmodel.hardware import load_hardware
from perfmodel.hardware.schema import Efficiency, EfficiencyCurve
from perfmodel.hardware.traits import efficiency_curve
from perfmodel.ops.norm import BATCHNORM_BACKWARD_KEY, BATCHNORM_FORWARD_KEY

from test_ops_costs import cost

SHAPE = (8, 16, 16)  # C, H, W
BATCH = 32


def _bn():
    return cost(SHAPE, "batchnorm", batch=BATCH)


def test_forward_and_backward_kernels_carry_their_own_keys():
    c = _bn()
    assert {w.efficiency_key for w in c.forward} == {BATCHNORM_FORWARD_KEY}
    back = c.backward_data + c.backward_weight
    assert len(back) == 2 and {w.efficiency_key for w in back} == {BATCHNORM_BACKWARD_KEY}
    plain = Efficiency(memory={"max": 0.5})
    # a profile without the curves: the keys fall back to the memory curve, as "norm/batchnorm" did
    for key in (BATCHNORM_FORWARD_KEY, BATCHNORM_BACKWARD_KEY):
        assert efficiency_curve(plain, key, "memory") == efficiency_curve(plain, "norm/batchnorm", "memory")


def _rates(bn_eff: float, other_eff: float = 0.8, fwd: dict | None = None):
    """Rates of a datasheet CPU at 1 thread with a flat memory curve and a flat batchnorm-backward curve (`fwd`: more
    keyed curves)."""
    r = device_rates(load_hardware("epyc-9654"), "fp32", threads=1)
    curves = {BATCHNORM_BACKWARD_KEY: EfficiencyCurve(max=bn_eff), **(fwd or {})}
    eff = Efficiency(memory={"max": other_eff}, curves=curves)
    return replace(r, memory=EfficiencyCurve(max=other_eff), keyed=eff, elementwise=None, fresh_bytes=None,
                   cold_bytes=None)


def test_backward_memory_time_uses_the_batchnorm_backward_curve():
    c = _bn()
    table = work_table([c])
    r = _rates(0.1)
    mem = row_times(table, r)["memory"]
    n = BATCH * 8 * 16 * 16
    # rows: forward stats, forward apply, backward apply (backward_data), reduce (backward_weight)
    apply_bytes = 2 * n * 4 + n * 4  # reads dy and x, writes dx
    reduce_bytes = 2 * n * 4 + 2 * 8 * 4  # reads dy and x, writes dgamma, dbeta
    assert mem[2] == pytest.approx(apply_bytes / (r.bandwidth_Bps * 0.1))
    assert mem[3] == pytest.approx(reduce_bytes / (r.bandwidth_Bps * 0.1))
    assert mem[1] == pytest.approx((n * 4 + n * 4) / (r.bandwidth_Bps * 0.8))  # no forward curve: the memory curve
    r2 = _rates(0.1, fwd={BATCHNORM_FORWARD_KEY: EfficiencyCurve(max=0.05)})
    mem2 = row_times(table, r2)["memory"]
    assert mem2[0] == pytest.approx((n * 4 + 2 * 8 * 4) / (r.bandwidth_Bps * 0.05))  # stats: reads x, writes mean/var
    assert mem2[1] == pytest.approx(2 * n * 4 / (r.bandwidth_Bps * 0.05))


@settings(max_examples=25, deadline=None)
@given(st.floats(0.05, 1.0), st.floats(1.0, 4.0))
def test_more_bandwidth_never_slower_and_time_finite(eff, more):
    table = work_table([_bn()])
    r = _rates(eff)
    t = row_times(table, r)["time"]
    fast = row_times(table, replace(r, bandwidth_Bps=r.bandwidth_Bps * more))["time"]
    assert (t > 0).all() and (fast <= t * (1 + 1e-12)).all() and all(map(lambda x: x < float("inf"), t))


def test_calibration_grid_streams_batchnorm_backward_with_its_key():
    pytest.importorskip("torch")
    from perfmodel.torch.calibrate.benches import BATCHNORM_BACKWARD_BATCHES, BATCHNORM_SHAPE, build_benches

    full = [b for b in build_benches("cpu", [1, 2], False, []) if b.ekey == BATCHNORM_BACKWARD_KEY]
    assert len(full) == 2 * len(BATCHNORM_BACKWARD_BATCHES) and {b.family for b in full} == {"memory"}
    fwd = [b for b in build_benches("cpu", [1, 2], False, []) if b.ekey == BATCHNORM_FORWARD_KEY]
    assert [b.label for b in fwd[::2]] == [f"batchnorm stream {nb * 40 * 28 * 28} elements"
                                           for nb in BATCHNORM_BACKWARD_BATCHES]
    # 1.5, 6 and 24 MB fp32 tensors: the largest below glibc's 32 MiB mmap threshold
    assert [nb * 40 * 28 * 28 * 4 for nb in BATCHNORM_BACKWARD_BATCHES] == [1505280, 6021120, 24084480]
    assert BATCHNORM_SHAPE == (40, 28, 28)
    quick = [b for b in build_benches("cpu", [1], True, []) if b.ekey == BATCHNORM_BACKWARD_KEY]
    assert len(quick) == 1
    assert not any(b.ekey == BATCHNORM_BACKWARD_KEY for b in build_benches("cuda", [1], False, []))
