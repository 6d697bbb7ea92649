"""Normalisations' own bandwidth curves (ops.norm.stream_key: batchnorm and layernorm forward / backward): keys,
pricing and calibration samples."""

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
from perfmodel.ops.norm import BATCHNORM_BACKWARD_KEY, BATCHNORM_FORWARD_KEY, stream_key

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


def test_layernorm_forward_and_backward_keys():
    c = cost((12,), "layernorm")
    assert [w.efficiency_key for w in c.forward] == [stream_key("layernorm", False)] == ["norm/layernorm/forward"]
    assert {w.efficiency_key for w in c.backward_data + c.backward_weight} == {"norm/layernorm/backward"}
    assert stream_key("batchnorm", True) == BATCHNORM_BACKWARD_KEY == "norm/batchnorm/backward"


def test_calibration_grid_streams_the_norms_with_their_keys():
    pytest.importorskip("torch")
    from perfmodel.torch.calibrate.benches import NORM_STREAMS, build_benches

    full = [b for b in build_benches("cpu", [1, 2], False, []) if " stream " in b.label and "norm" in b.label]
    assert len(full) == 2 * 2 * sum(len(batches) for _, _, batches in NORM_STREAMS) == 24  # x fwd/bwd x threads
    assert {b.family for b in full} == {"memory"}
    assert {b.ekey for b in full} == {"norm/batchnorm/forward", "norm/batchnorm/backward", "norm/layernorm/forward",
                                      "norm/layernorm/backward"}
    # about 1.5, 6 and 24 MB fp32 tensors: the largest below glibc's 32 MiB mmap threshold
    sizes = {op: [nb * 4 * (shape[0] * shape[1] * (shape[2] if len(shape) > 2 else 1)) for nb in batches]
             for op, shape, batches in NORM_STREAMS}
    assert sizes == {"batchnorm": [1505280, 6021120, 24084480], "layernorm": [1474560, 5898240, 23592960]}
    assert [b.label for b in full if b.threads == 1][:2] == ["batchnorm stream 376320 elements",
                                                              "batchnorm.backward stream 376320 elements"]
    quick = [b for b in build_benches("cpu", [1], True, []) if " stream " in b.label and "norm" in b.label]
    assert len(quick) == 4
    assert not any(b.ekey.startswith("norm/") for b in build_benches("cuda", [1], False, []))
