"""Roofline, efficiency, overhead and thread-scaling formulas against hand-computed values."""

from __future__ import annotations

import math

import pytest

from perfmodel.compute import cpu_bandwidth, device_rates, thread_speedup, work_time
from perfmodel.errors import InputError
from perfmodel.hardware.schema import Device, Efficiency, EfficiencyCurve, ThreadScaling
from perfmodel.ops.base import Work


def flat_gpu(**kw):
    """A GPU with constant efficiencies, so times can be computed by hand."""
    eff = Efficiency(matrix=EfficiencyCurve(max=0.5, half=0), conv=EfficiencyCurve(max=0.4, half=0),
                     memory=EfficiencyCurve(max=0.8, half=0))
    base = dict(name="g", type="gpu", source="test", peak_flops={"fp32": 10e12, "fp16": 100e12},
                memory_bandwidth=1e12, memory=16e9, kernel_overhead=5e-6, efficiency=eff)
    base.update(kw)
    return Device(**base)


def test_compute_bound_gemm_time():
    d = flat_gpu()
    r = device_rates(d, "fp32")
    w = Work("matrix", flops=1e12, bytes_read=1e6, bytes_written=1e6, kernels=1)
    t = work_time(w, r)
    # 1e12 / (10e12 * 0.5) = 0.2 s; overhead hidden behind a long kernel on a GPU
    assert t.time_s == pytest.approx(0.2)
    assert t.bound == "compute"
    assert t.overhead_s == 0


def test_memory_bound_time_and_lowp_peak():
    d = flat_gpu()
    w = Work("memory", flops=1e6, bytes_read=4e9, bytes_written=4e9, kernels=2)
    t = work_time(w, device_rates(d, "fp32"))
    assert t.time_s == pytest.approx(8e9 / (1e12 * 0.8))
    assert t.bound == "memory"
    # fp16 matrix work uses the fp16 peak
    t16 = work_time(Work("matrix", flops=1e12, kernels=1), device_rates(d, "fp16"))
    assert t16.time_s == pytest.approx(1e12 / (100e12 * 0.5))


def test_tiny_kernels_are_overhead_bound_on_gpu_and_additive_on_cpu():
    d = flat_gpu()
    w = Work("memory", flops=10, bytes_read=100, bytes_written=100, kernels=10)
    t = work_time(w, device_rates(d, "fp32"))
    assert t.time_s == pytest.approx(10 * 5e-6)  # launches dominate: max(roofline, launches)
    assert t.bound == "overhead"
    c = Device(name="c", type="cpu", source="t", peak_flops={"fp32": 100e9}, memory_bandwidth=20e9, memory=8e9,
               kernel_overhead=10e-6, cores=4, efficiency=d.efficiency,
               thread_scaling=ThreadScaling(serial_fraction=0.0, hyperthread_penalty=0.0, per_core_bandwidth=20e9))
    tc = work_time(w, device_rates(c, "fp32", threads=4))
    roof = 200 / (20e9 * 0.8)
    assert tc.time_s == pytest.approx(roof + 10 * 10e-6)


def test_efficiency_curve_saturating_and_points():
    c = EfficiencyCurve(max=0.8, half=1e9)
    assert c.at(1e9) == pytest.approx(0.4)
    assert c.at(1e15) == pytest.approx(0.8, rel=1e-5)
    p = EfficiencyCurve(points=[[1e6, 0.1], [1e8, 0.5]])
    assert p.at(1e7) == pytest.approx(0.3)  # halfway in log size
    assert p.at(1e3) == 0.1 and p.at(1e12) == 0.5


def cpu4(serial=0.1, ht=0.2):
    return Device(name="c", type="cpu", source="t", peak_flops={"fp32": 400e9}, memory_bandwidth=40e9, memory=8e9,
                  cores=4, threads_per_core=2,
                  thread_scaling=ThreadScaling(serial_fraction=serial, hyperthread_penalty=ht, per_core_bandwidth=15e9))


def test_thread_speedup_amdahl_and_hyperthread_penalty():
    d = cpu4()
    assert thread_speedup(d, 1) == pytest.approx(1.0)
    assert thread_speedup(d, 4) == pytest.approx(4 / (1 + 0.1 * 3))
    # 8 threads on 4 cores: 4 extra threads, each costs 0.2/4
    assert thread_speedup(d, 8) == pytest.approx(4 / 1.3 * (1 - 0.2 * 4 / 4))
    assert thread_speedup(d, 8) < thread_speedup(d, 4)
    # bandwidth: one core 15 GB/s, three cores capped at 40 GB/s
    assert cpu_bandwidth(d, 1) == pytest.approx(15e9)
    assert cpu_bandwidth(d, 3) == pytest.approx(40e9)


def test_cpu_rates_scale_per_core_peak():
    d = cpu4(serial=0.0)
    r1 = device_rates(d, "fp32", threads=1)
    r4 = device_rates(d, "fp32", threads=4)
    assert r1.matrix_flops == pytest.approx(100e9)
    assert r4.matrix_flops == pytest.approx(400e9)


def test_unsupported_dtype_is_a_clear_error():
    with pytest.raises(InputError, match="no bf16 rate"):
        device_rates(flat_gpu(), "bf16")
    with pytest.raises(InputError, match="threads"):
        device_rates(cpu4(), "fp32", threads=0)


def test_layer_costs_call_each_distinct_layer_once_and_equal_op_cost():
    from perfmodel.engine.costs import cost_groups, layer_costs
    from perfmodel.graph.io import load_network
    from perfmodel.ops.base import op_cost

    g = load_network("gpt3_175b")
    group, first = cost_groups(g)
    assert len(group) == 774 and len(first) == 12  # the 96 identical decoder layers share their costs
    costs = layer_costs(g, 2, 2)
    assert costs == tuple(op_cost(l, 2, 2) for l in g.layers)
    assert costs[10] is costs[10 + 8]  # one object per distinct (layer, shape)


def test_optimizer_kernel_styles_hand_computed():
    from perfmodel.optimizers import optimizer_work

    # Adam on 1,000 parameters in 220 tensors: 7 passes reading 11 and writing 7 fp32 values per parameter
    loop = optimizer_work("adam", 1000, 220, style="per-tensor")
    assert (loop.bytes_read, loop.bytes_written, loop.kernels) == (11 * 4000, 7 * 4000, 7 * 220)
    foreach = optimizer_work("adam", 1000, 220, style="foreach")
    assert foreach.kernels == 7 * 2 and foreach.bytes_read == loop.bytes_read  # 220 tensors = 2 chunks of 110
    fused = optimizer_work("adam", 1000, 220, style="fused")  # p, g, m, v read once; p, m, v written once
    assert (fused.bytes_read, fused.bytes_written, fused.kernels) == (4 * 4000, 3 * 4000, 2)
    assert optimizer_work("adam", 1000, 220, gpu=True) == foreach
    assert optimizer_work("adam", 1000, 220, gpu=False) == loop
