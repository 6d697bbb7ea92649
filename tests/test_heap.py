"""Heap refaults of a CPU training step (engine.heap, the stack's host_heap): the formula against hand-computed
values, what it charges per layer in a prediction, and its invariants (never negative, never above the excursion,
1 device equals the single-device path)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.engine.heap import heap_refault_bytes, heap_refault_s, layer_heap_arrays, with_heap_refaults
from perfmodel.engine.rates import device_rates
from perfmodel.graph.io import NetworkBuilder
from perfmodel.hardware import load_hardware
from perfmodel.kernels import load_stack
from perfmodel.prediction import predict
from perfmodel.step import step_profile

MiB = 2**20
CALIBRATED = "amd-epyc-2c-kvm"  # a calibrated CPU profile: fresh-buffer cost and the pytorch-cpu stack


def test_hand_values():
    # layer 0 is the input (allocated once), layer 3's 40 MB output is mapped per call (>= 32 MiB): neither counts.
    # Heap: layer 1 keeps [0, 40) MB, layer 2 [40, 60) MB: E = 60 MB; the largest heap output 20 MB gives a trim
    # allowance a = 40 MB, so height h is refaulted with probability min(h, 20 MB) / 60 MB:
    # layer 1: (20^2 / 2 + 20 x 20) / 60 = 10 MB; layer 2: 20 x 20 / 60 = 6.667 MB; total (60^2 - 40^2) / 120
    saved = np.array([0.0, 40e6, 20e6, 50e6])
    output = np.array([10e6, 20e6, 10e6, 40e6])
    is_input = np.array([True, False, False, False])
    got = heap_refault_bytes(saved, output, is_input, 32 * MiB, 131072, 2.0)
    assert got == pytest.approx([0.0, 10e6, 20e6 / 3, 0.0])
    assert got.sum() == pytest.approx((60e6**2 - 40e6**2) / (2 * 60e6))


def test_nothing_below_the_trim_allowance():
    saved, output = np.array([3e6, 3e6]), np.array([4e6, 4e6])
    none = np.zeros(2, dtype=bool)
    assert not heap_refault_bytes(saved, output, none, 32 * MiB, 131072, 2.0).any()  # 6 MB <= 2 x 4 MB
    # tiny tensors: the threshold is the 128 KiB floor, not the 1 KB outputs
    got = heap_refault_bytes(np.full(1000, 1e3), np.full(1000, 1e3), np.zeros(1000, dtype=bool), 32 * MiB,
                             131072, 2.0)
    e, a = 1e6, 2 * 131072
    assert got.sum() == pytest.approx((e * e - a * a) / (2 * e))
    assert np.all(np.diff(got) >= -1e-9)  # higher in the heap: refaulted more often


def test_pytorch_cpu_stack_names_glibc_heap():
    h = load_stack("pytorch-cpu").host_heap
    assert (h.mmap_threshold_min_bytes, h.trim_factor) == (131072, 2.0)
    assert "malloc.c" in h.source


def _cnn(ch: int = 32, hw: int = 64):
    b = NetworkBuilder("heapnet", "test")
    b.input("x", shape=[3, hw, hw])
    b.conv2d("c1", out_channels=ch, kernel=3, padding=1)
    b.batchnorm("bn1")
    b.relu("r1")
    b.conv2d("c2", out_channels=ch, kernel=3, padding=1)
    b.relu("r2")
    b.global_avgpool("gap")
    b.dense("fc", units=10)
    b.softmax_cross_entropy("loss")
    return b.build()


def test_prediction_charges_the_formula_to_forward():
    dev = load_hardware(CALIBRATED)
    no_fresh = dev.model_copy(update={"traits": dev.traits.model_copy(update={"fresh_buffer_s_per_byte": None})})
    g, batch = _cnn(), 16  # 8.4 MB outputs: no buffer reaches 32 MiB, so the fresh-buffer cost is the heap's alone
    a, b = step_profile(g, dev, batch, threads=2), step_profile(g, no_fresh, batch, threads=2)
    refault = heap_refault_bytes(*layer_heap_arrays(g, dev, a.costs), 32 * MiB, 131072, 2.0)
    assert refault.sum() > 0
    r = device_rates(dev, "fp32", 2)
    extra = [x.forward.time_s - y.forward.time_s for x, y in zip(a.times, b.times)]
    assert extra == pytest.approx(list(refault * r.fresh_s_per_byte), rel=1e-9, abs=1e-15)
    assert [x.backward_data.time_s for x in a.times] == [y.backward_data.time_s for y in b.times]
    p = predict(g, dev, batch=batch, threads=2, optimizer="sgd")
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-12)


def test_no_cost_without_the_stack_heap_or_the_device_cost():
    dev = load_hardware("epyc-9654")  # datasheet profile: the pytorch-cpu stack but no fresh-buffer cost
    g = _cnn()
    r = device_rates(dev, "fp32", 2)
    st_ = {"time": np.ones((3, 3)), "roof_memory": np.ones((3, 3))}
    arr = np.array([1e9, 1e9, 1e9])
    assert heap_refault_s(arr, arr / 1e3, np.zeros(3, dtype=bool), r) is None
    assert with_heap_refaults(st_, None) is st_
    assert step_profile(g, dev, 64, threads=2).total_s > 0


def test_one_device_plan_equals_single_device_on_a_calibrated_cpu():
    g = _cnn()
    single = predict(g, CALIBRATED, batch=32, threads=2, layers=False)
    p = predict(g, CALIBRATED, batch=32, threads=2, plan={"dp": 1, "tp": 1, "pp": 1}, layers=False)
    assert p.iteration_time_s == pytest.approx(single.iteration_time_s, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e8), st.floats(1e3, 6e7)), min_size=1, max_size=30),
       st.floats(0.5, 4), st.floats(0.5, 4))
def test_invariants(layers, k1, k2):
    saved = np.array([s for s, _ in layers])
    output = np.array([o for _, o in layers])
    none = np.zeros(len(layers), dtype=bool)
    lo, hi = sorted((k1, k2))
    a = heap_refault_bytes(saved, output, none, 32 * MiB, 131072, lo)
    b = heap_refault_bytes(saved, output, none, 32 * MiB, 131072, hi)
    assert np.isfinite(a).all() and (a >= -1e-9).all()
    assert b.sum() <= a.sum() + 1e-6  # a larger trim allowance never faults more
    assert a.sum() <= saved[output < 32 * MiB].sum() / 2 + 1e-6  # at most half the excursion (uniform pin)
    assert not a[output >= 32 * MiB].any()  # mapped-per-call buffers are priced per kernel, not here


def test_prediction_names_the_refaults():
    from perfmodel.cli.render import prediction_text

    g = _cnn()
    dev = load_hardware(CALIBRATED)
    p = predict(g, dev, batch=16, threads=2, optimizer="sgd")
    prof = step_profile(g, dev, 16, threads=2)
    refault = heap_refault_bytes(*layer_heap_arrays(g, dev, prof.costs), 32 * MiB, 131072, 2.0)
    want = float(refault.sum()) * device_rates(dev, "fp32", 2).fresh_s_per_byte
    assert p.assumptions["heap_refault_s"] == pytest.approx(want, rel=1e-9)
    assert "page faults:" in prediction_text(p)
    gpu = predict(g, "v100-sxm2", batch=16)
    assert "heap_refault_s" not in gpu.assumptions and "page faults:" not in prediction_text(gpu)


def test_html_summary_names_the_refaults():
    from perfmodel.report.html import _summary_table

    p = predict(_cnn(), CALIBRATED, batch=16, threads=2, layers=False)
    assert "page faults" in _summary_table(p)
    assert "page faults" not in _summary_table(predict(_cnn(), "v100-sxm2", batch=16, layers=False))
