"""Calibration fit on synthetic timings: timings generated with compute.py from a known profile are fitted
back, and the fitted profile reproduces the known curves, rates, overhead and thread scaling."""

from __future__ import annotations

import dataclasses
import math

import pytest

from perfmodel.calibration.fit import (
    FitOptions, Sample, bin_curve, fit_profile, fit_thread_scaling, predicted_sample_time, profile_dict, residuals,
)
from perfmodel.compute import device_rates, work_time
from perfmodel.hardware.loader import hardware_from_dict
from perfmodel.hardware.schema import Device, Efficiency, EfficiencyCurve, ThreadScaling
from perfmodel.ops.base import Work

CORES = 2
PEAK = 160e9  # whole device; 80 GFLOP/s per core
BW = 60e9
PER_CORE_BW = 40e9
SERIAL = 0.08
RAW_OVERHEAD = 2e-6  # per call in the benchmarks (no autograd)
TRAIN_OVERHEAD = 5e-6  # per kernel inside a training step

# one point per half-decade bin, at the bin's centre, so the binned fit lands exactly on the curve
MATRIX_PTS = ((10 ** 5.25, 0.10), (10 ** 5.75, 0.22), (10 ** 6.25, 0.45), (10 ** 6.75, 0.66), (10 ** 7.25, 0.8),
              (10 ** 7.75, 0.9), (10 ** 8.25, 0.95), (10 ** 8.75, 1.0))
CONV_PTS = ((10 ** 6.25, 0.2), (10 ** 7.25, 0.5), (10 ** 8.25, 0.75), (10 ** 9.25, 0.8))
MEMORY_PTS = ((10 ** 4.25, 0.2), (10 ** 5.25, 0.7), (10 ** 6.25, 1.0), (10 ** 7.25, 0.6), (10 ** 8.25, 0.45))


def true_device() -> Device:
    return Device(
        name="synthetic", type="cpu", source="test", peak_flops={"fp32": PEAK}, memory_bandwidth=BW, memory=8e9,
        kernel_overhead=RAW_OVERHEAD, cores=CORES,
        efficiency=Efficiency(matrix=EfficiencyCurve(points=MATRIX_PTS), conv=EfficiencyCurve(points=CONV_PTS),
                              memory=EfficiencyCurve(points=MEMORY_PTS)),
        thread_scaling=ThreadScaling(serial_fraction=SERIAL, hyperthread_penalty=0.0, per_core_bandwidth=PER_CORE_BW),
    )


def synthetic_samples(jitter: float = 0.0) -> list[Sample]:
    """Timings as compute.py predicts them for the true device (benchmarks pay RAW_OVERHEAD per call)."""
    dev = true_device()
    out: list[Sample] = []
    for t in (1, 2):
        r = device_rates(dev, "fp32", threads=t)
        for i, (size, _) in enumerate(MATRIX_PTS):
            w = Work("matrix", flops=size, bytes_read=size / 200, bytes_written=0.0, kernels=1)  # compute bound
            f = 1.0 + (jitter if i % 2 else -jitter)
            out.append(Sample("matrix", t, work_time(w, r).time_s * f, w.flops, w.bytes, 1, label=f"gemm{i}"))
        for i, (size, _) in enumerate(CONV_PTS):
            w = Work("conv", flops=size, bytes_read=size / 100, kernels=1)
            out.append(Sample("conv", t, work_time(w, r).time_s, w.flops, w.bytes, 1, label=f"conv{i}"))
        for i, (size, _) in enumerate(MEMORY_PTS):
            w = Work("memory", flops=0.0, bytes_read=size * 2 / 3, bytes_written=size / 3, kernels=1)
            out.append(Sample("memory", t, work_time(w, r).time_s, 0.0, w.bytes, 1, label=f"mem{i}"))
        out.append(Sample("dispatch", t, 130 * TRAIN_OVERHEAD, kernels=130, label="chain"))
        out.append(Sample("dispatch_raw", t, RAW_OVERHEAD, kernels=1, label="tiny"))
    return out


def test_fit_recovers_known_curves_and_rates():
    samples = synthetic_samples()
    fit = fit_profile(samples, FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES}))
    assert fit.peak_flops["fp32"] == pytest.approx(PEAK)
    assert fit.kernel_overhead_s == pytest.approx(TRAIN_OVERHEAD)
    assert fit.bench_overhead_s == pytest.approx(RAW_OVERHEAD)
    assert fit.serial_fraction == pytest.approx(SERIAL, abs=1e-6)
    assert fit.speedups[2] == pytest.approx(2 / (1 + SERIAL))
    # bandwidth: the best single-thread rate is the per-core bandwidth at the curve's best point (1.0)
    assert fit.per_core_bandwidth_Bps == pytest.approx(PER_CORE_BW)
    assert fit.memory_bandwidth_Bps == pytest.approx(BW)
    for fam, pts in (("matrix", MATRIX_PTS), ("conv", CONV_PTS), ("memory", MEMORY_PTS)):
        curve = EfficiencyCurve(points=tuple(fit.curves[fam]))
        true = EfficiencyCurve(points=pts)
        assert len(fit.curves[fam]) == len(pts)
        for size, eff in pts:
            assert curve.at(size) == pytest.approx(eff, rel=2e-3), (fam, size)
            assert curve.at(size * 1.7) == pytest.approx(true.at(size * 1.7), rel=2e-3)


def test_fit_without_nominal_peak_reproduces_the_timings():
    """With the peak taken from the best measured rate, peak x efficiency (what predictions use) is recovered."""
    samples = synthetic_samples()
    fit = fit_profile(samples, FitOptions(cores=CORES))
    assert fit.peak_flops["fp32"] == pytest.approx(PEAK * 1.0)  # the best GEMM point has efficiency 1.0
    for s in samples:
        if s.family in ("matrix", "conv", "memory"):
            assert predicted_sample_time(s, fit) == pytest.approx(s.time_s, rel=3e-3), s.label
    assert max(abs(r["error_pct"]) for r in residuals(samples, fit)) < 0.5


def test_fitted_profile_predicts_training_kernels_with_the_autograd_overhead():
    fit = fit_profile(synthetic_samples(), FitOptions(cores=CORES))
    prof = profile_dict(fit, name="synthetic-fit", source="test", memory_bytes=8e9)
    dev = hardware_from_dict(prof)
    assert isinstance(dev, Device)
    assert dev.kernel_overhead_s == pytest.approx(TRAIN_OVERHEAD)
    size = MATRIX_PTS[5][0]
    w = Work("matrix", flops=size, bytes_read=size / 200, kernels=1)
    got = work_time(w, device_rates(dev, "fp32", threads=2)).time_s
    want = work_time(w, device_rates(true_device(), "fp32", threads=2)).time_s - RAW_OVERHEAD + TRAIN_OVERHEAD
    assert got == pytest.approx(want, rel=5e-3)


def test_profile_written_by_fit_validates_and_round_trips(tmp_path):
    yaml = pytest.importorskip("yaml")
    fit = fit_profile(synthetic_samples(), FitOptions(cores=CORES))
    prof = profile_dict(fit, name="synth", source="calibrated on a test by perfmodel calibrate", memory_bytes=16e9,
                        model="Synthetic CPU", vendor="none", eff_source="synthetic", ts_source="synthetic")
    p = tmp_path / "synth.yaml"
    p.write_text(yaml.safe_dump(prof, sort_keys=False))
    from perfmodel.hardware.loader import load_hardware

    dev = load_hardware(p)
    assert dev.type == "cpu" and dev.cores == CORES
    assert dev.thread_scaling.serial_fraction == pytest.approx(SERIAL, abs=1e-4)
    assert dev.efficiency.matrix.points is not None
    assert dev.peak_flops["fp32"] == pytest.approx(PEAK, rel=1e-3)


def test_binning_takes_median_per_thread_count_then_geometric_mean():
    pairs = [(1e6, 0.4, 1), (1.2e6, 0.5, 1), (1.1e6, 0.6, 1), (1e6, 0.1, 2), (1.5e6, 0.9, 2)]
    pts = bin_curve(pairs, bins_per_decade=2)
    assert len(pts) == 1
    size, eff = pts[0]
    assert eff == pytest.approx(math.sqrt(0.5 * 0.5), rel=1e-3)  # medians 0.5 (t=1) and 0.5 (t=2)
    assert 1e6 < size < 1.5e6


def test_thread_scaling_fit_by_hand():
    # speedup 1.6 on 2 cores: 2 / (1 + s) = 1.6 -> s = 0.25
    s, pen = fit_thread_scaling({2: 1.6}, cores=2)
    assert s == pytest.approx(0.25)
    assert pen is None
    # 4 threads on 2 cores run at 0.9 of the 2-thread speed: penalty = 0.1 * 2 / 2 = 0.1
    s, pen = fit_thread_scaling({2: 1.6, 4: 1.44}, cores=2)
    assert pen == pytest.approx(0.1)


def test_fit_is_robust_to_timing_jitter():
    fit = fit_profile(synthetic_samples(jitter=0.05), FitOptions(cores=CORES))
    for s in synthetic_samples(jitter=0.0):
        if s.family == "matrix":
            assert predicted_sample_time(s, fit) == pytest.approx(s.time_s, rel=0.12)


def test_missing_samples_give_clear_errors():
    with pytest.raises(ValueError, match="fp32"):
        fit_profile([Sample("memory", 1, 1e-3, bytes=1e6)], FitOptions(cores=2))
    with pytest.raises(ValueError, match="memory"):
        fit_profile([Sample("matrix", 1, 1e-3, flops=1e8)], FitOptions(cores=2))


def test_elementwise_rates_recovered_and_used_by_predictions():
    """Per-op elementwise rates: synthetic op timings at 1 and 2 threads give back the per-core rates, and a
    profile carrying them times a memory-family Work of that op at flops / (rate x thread speedup)."""
    rates = {"relu": 5e9, "relu.backward": 2e9, "tanh": 4e8}
    samples = synthetic_samples()
    speed = {1: 1.0, 2: 2 / (1 + SERIAL)}
    for t in (1, 2):
        for key, rate in rates.items():
            for n in (3e5, 1.2e6):
                flops = n * (3 if key == "tanh" else 1)
                time_s = flops / (rate * speed[t]) + TRAIN_OVERHEAD  # one kernel
                samples.append(Sample("elementwise", t, time_s, flops, 8 * n, 1, label=f"{key} {n}", key=key))
    fit = fit_profile(samples, FitOptions(cores=CORES))
    for key, rate in rates.items():
        assert fit.elementwise[key] == pytest.approx(rate, rel=1e-6)
    assert fit.elementwise["default"] == pytest.approx(2e9)  # median of the three
    dev = hardware_from_dict(profile_dict(fit, name="ew", source="test", memory_bytes=8e9))
    assert dev.efficiency.elementwise["tanh"] == pytest.approx(4e8, rel=1e-3)
    r = device_rates(dev, "fp32", threads=2)
    w = Work("memory", flops=3e6, bytes_read=4e6, bytes_written=4e6, kernels=1)
    t = work_time(w, r, "tanh")
    assert t.compute_s == pytest.approx(3e6 / (4e8 * speed[2]), rel=1e-3)
    # an op without its own rate uses "default"; a profile without rates uses the vector peak (as before)
    assert work_time(w, r, "sigmoid").compute_s == pytest.approx(3e6 / (2e9 * speed[2]), rel=1e-3)
    plain = work_time(w, device_rates(true_device(), "fp32", threads=2), "tanh")
    assert plain.compute_s < t.compute_s / 10


def test_gpu_fit_uses_no_thread_scaling_and_overlapped_launches():
    """A GPU fit (no --threads): the peak is the best rate, efficiencies are rate / peak with the whole time
    (launches overlap execution), and the profile is a gpu device without thread scaling."""
    eff = Efficiency(matrix=EfficiencyCurve(points=MATRIX_PTS), conv=EfficiencyCurve(points=CONV_PTS),
                     memory=EfficiencyCurve(points=MEMORY_PTS))
    gpu = Device(name="g", type="gpu", source="t", peak_flops={"fp32": 20e12, "bf16": 100e12},
                 memory_bandwidth=2e12, memory=80e9, kernel_overhead=4e-6, efficiency=eff)
    r32, r16 = device_rates(gpu, "fp32"), device_rates(gpu, "bf16")
    samples = []
    for i, (size, _) in enumerate(MATRIX_PTS):
        for dt, r in (("fp32", r32), ("bf16", r16)):
            w = Work("matrix", flops=size * 1e3, bytes_read=size, kernels=1)
            samples.append(Sample("matrix", 1, work_time(w, r).time_s, w.flops, w.bytes, 1, dt, f"gemm{i}"))
    for i, (size, _) in enumerate(MEMORY_PTS):
        w = Work("memory", bytes_read=size * 100, kernels=1)
        samples.append(Sample("memory", 1, work_time(w, r32).time_s, 0.0, w.bytes, 1, label=f"mem{i}"))
    samples.append(Sample("dispatch", 1, 130 * 6e-6, kernels=130, label="chain"))
    fit = fit_profile(samples, FitOptions(cores=1, is_cpu=False))
    assert fit.serial_fraction is None and fit.per_core_bandwidth_Bps is None
    assert fit.kernel_overhead_s == pytest.approx(6e-6)
    assert "lowp_matrix" in fit.curves and fit.peak_flops["bf16"] > fit.peak_flops["fp32"]
    prof = profile_dict(fit, name="gfit", source="calibrated on g by perfmodel calibrate", memory_bytes=80e9)
    dev = hardware_from_dict(prof)
    assert dev.type == "gpu" and dev.efficiency.elementwise is None
    for s in samples:
        if s.family == "matrix" and s.flops / s.time_s > 0:
            assert predicted_sample_time(s, fit) == pytest.approx(s.time_s, rel=0.05), s.label


def test_stage_factor_of_strided_convolutions_recovered():
    """Strided-conv samples running at half the conv curve's efficiency give a 0.5 stage factor, and a
    profile with it times that stage at half the rate."""
    dev = true_device()
    samples = synthetic_samples()
    for t in (1, 2):
        r = device_rates(dev, "fp32", threads=t)
        for i, (size, _) in enumerate(CONV_PTS):
            w = Work("conv", flops=size, bytes_read=size / 100, kernels=1)
            ideal = work_time(w, r)
            slow = (ideal.time_s - RAW_OVERHEAD) * 2 + RAW_OVERHEAD  # half the efficiency
            samples.append(Sample("conv", t, slow, w.flops, w.bytes, 1, label=f"sconv{i} bwd_data",
                                  key="conv2d.backward_data/strided"))
    fit = fit_profile(samples, FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES}))
    assert fit.stage_factors == {"conv2d.backward_data/strided": pytest.approx(0.5, rel=1e-3)}
    assert len(fit.curves["conv"]) == len(CONV_PTS)  # keyed samples stay out of the curve
    d = hardware_from_dict(profile_dict(fit, name="sf", source="test", memory_bytes=8e9))
    r = device_rates(d, "fp32", threads=1)
    w = Work("conv", flops=CONV_PTS[2][0], kernels=1)
    base = work_time(w, r).compute_s
    assert work_time(w, r, None, "conv2d.backward_data/strided").compute_s == pytest.approx(2 * base, rel=1e-3)
    from perfmodel.graph.io import NetworkBuilder
    from perfmodel.step import stage_factor_key

    b = NetworkBuilder("s")
    b.input("x", shape=[3, 8, 8])
    b.conv2d("c1", out_channels=4, kernel=3, padding=1)
    b.conv2d("c2", out_channels=4, kernel=3, stride=2, padding=1)
    g = b.build()
    assert stage_factor_key(g["c1"], "backward_data") is None
    assert stage_factor_key(g["c2"], "backward_data") == "conv2d.backward_data/strided"


def test_strided_1x1_convolutions_have_their_own_stage_factor_with_fallback():
    """A strided 1x1 conv (projection shortcut) is keyed "/strided-1x1"; a profile without that key uses
    its "/strided" factor, one with it uses its own."""
    from perfmodel.compute import stage_factor
    from perfmodel.graph.io import NetworkBuilder
    from perfmodel.step import stage_factor_key
    from perfmodel.calibration.grid import conv_passes

    b = NetworkBuilder("p")
    b.input("x", shape=[8, 16, 16])
    b.conv2d("proj", out_channels=16, kernel=1, stride=2)
    b.conv2d("c3", out_channels=16, kernel=3, stride=2, padding=1)
    g = b.build()
    assert stage_factor_key(g["proj"], "backward_data") == "conv2d.backward_data/strided-1x1"
    assert stage_factor_key(g["c3"], "backward_data") == "conv2d.backward_data/strided"
    assert stage_factor({"conv2d.backward_data/strided": 0.5}, "conv2d.backward_data/strided-1x1") == 0.5
    assert stage_factor({"conv2d.backward_data/strided": 0.5, "conv2d.backward_data/strided-1x1": 0.2},
                        "conv2d.backward_data/strided-1x1") == 0.2
    assert stage_factor({}, "conv2d.backward_data/strided-1x1") == 1.0
    # the calibration grid keys its samples the same way
    assert conv_passes((8, 16, 16, 16, 1, 2, 0, False))[1] == ("bwd_data", "conv2d.backward_data/strided-1x1")
    assert conv_passes((8, 16, 16, 16, 3, 2, 1, False))[1] == ("bwd_data", "conv2d.backward_data/strided")


def test_sample_time_is_the_median_repeat_and_refit_can_change_the_statistic():
    """time_call returns the median of its repeats; with_statistic re-derives a sample's time from them."""
    import perfmodel.calibration.timing as cal
    from perfmodel.errors import InputError
    from perfmodel.calibration.samples import with_statistic
    from perfmodel.calibration.timing import time_call

    real = cal.time.perf_counter
    # a fake clock: the probe call takes 1 tick (so one call per repeat), then repeats of 3, 1 and 2 ticks
    ticks = iter([0, 1, 10, 13, 20, 21, 30, 32])
    cal.time.perf_counter = lambda: next(ticks)
    try:
        t, times = time_call(lambda: None, lambda: None, min_time=0.5, repeats=3)
    finally:
        cal.time.perf_counter = real
    assert times == (3, 1, 2) and t == 2
    s = Sample("conv", 1, 9.0, 1e9, 0, 1, times_s=(3.0, 1.0, 2.0, 10.0))
    assert with_statistic([s], "median")[0].time_s == 2.5
    assert with_statistic([s], "min")[0].time_s == 1.0
    assert with_statistic([Sample("conv", 1, 9.0)], "median")[0].time_s == 9.0  # no repeats stored: kept
    with pytest.raises(InputError, match="statistic"):
        with_statistic([s], "p99")


def test_pooled_samples_take_the_median_over_runs_of_the_same_grid(tmp_path):
    """pool_samples: per benchmark the median over runs (of each run's median repeat); a run on another
    grid is left out; refit(pool=True) fits from them."""
    from perfmodel.calibration.samples import pool_samples, save_samples

    machine = {"device": "cpu", "cpu": {"model": "X", "cores": CORES}, "torch": "2.13.0", "samples_disturbed": 0,
               "calibration_wall_s": 10.0}
    base = synthetic_samples()
    path = tmp_path / "s.jsonl"
    save_samples([Sample("conv", 1, 1.0, 1e9, label="other grid", times_s=(1.0,))], machine, path)
    for scale in (1.0, 3.0, 2.0):  # three runs of the same grid; repeats (t, 9t, t) -> median t per run
        save_samples([dataclasses.replace(s, time_s=99.0, times_s=(s.time_s * scale, s.time_s * scale * 9,
                                                                     s.time_s * scale)) for s in base], machine, path)
    pooled, m = pool_samples(path)
    assert m["pooled_runs"] == 3 and m["calibration_wall_s"] == 30.0
    assert len(pooled) == len(base)
    for p, s in zip(pooled, base):
        assert p.time_s == pytest.approx(2.0 * s.time_s) and len(p.times_s) == 3


def test_kernel_class_curves_fitted_from_keyed_samples():
    """Depthwise conv samples at 1/20 of the conv curve's efficiency and fresh-allocation streaming samples at
    a third of the memory curve's give their own keyed curves (the family curves and bandwidth unchanged), written
    to the profile's efficiency.curves and found by the key chain (conv/depthwise/strided -> conv/depthwise)."""
    from perfmodel.calibration.kernels import STREAM_ROOTS, conv_ekey, conv_executed, gemm_ekey
    from perfmodel.hardware.traits import efficiency_curve

    dev = true_device()
    samples = synthetic_samples()
    base = fit_profile(samples, FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES}))
    for t in (1, 2):
        r = device_rates(dev, "fp32", threads=t)
        for i, (size, eff) in enumerate(CONV_PTS):
            w = Work("conv", flops=size, bytes_read=size / 100, kernels=1)
            slow = (work_time(w, r).time_s - RAW_OVERHEAD) * 20 + RAW_OVERHEAD
            samples.append(Sample("conv", t, slow, w.flops, w.bytes, 1, label=f"dw{i}", ekey="conv/depthwise"))
        for i, (size, eff) in enumerate(MEMORY_PTS):
            w = Work("memory", bytes_read=size * 2 / 3, bytes_written=size / 3, kernels=1)
            slow = (work_time(w, r).time_s - RAW_OVERHEAD) * 3 + RAW_OVERHEAD
            samples.append(Sample("memory", t, slow, 0.0, w.bytes, 1, label=f"fresh{i}", ekey="elementwise"))
    fit = fit_profile(samples, FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES}))
    assert fit.curves == base.curves and fit.memory_bandwidth_Bps == base.memory_bandwidth_Bps
    dw = EfficiencyCurve(points=tuple(fit.keyed_curves["conv/depthwise"]))
    for size, eff in CONV_PTS:
        assert dw.at(size) == pytest.approx(eff / 20, rel=3e-3)
    for root in STREAM_ROOTS:
        curve = EfficiencyCurve(points=tuple(fit.keyed_curves[root]))
        for size, eff in MEMORY_PTS:
            assert curve.at(size) == pytest.approx(eff / 3, rel=3e-3), root
    d = hardware_from_dict(profile_dict(fit, name="kc", source="test", memory_bytes=8e9))
    assert efficiency_curve(d.efficiency, "conv/depthwise/strided", "conv").at(CONV_PTS[1][0]) == \
        pytest.approx(CONV_PTS[1][1] / 20, rel=3e-3)
    assert efficiency_curve(d.efficiency, "conv/grouped", "conv").at(CONV_PTS[1][0]) == \
        pytest.approx(CONV_PTS[1][1], rel=3e-3)  # no grouped samples: the conv curve
    assert efficiency_curve(d.efficiency, "norm/batchnorm", "memory").at(MEMORY_PTS[4][0]) == \
        pytest.approx(MEMORY_PTS[4][1] / 3, rel=3e-3)
    s = samples[-1]
    assert predicted_sample_time(s, fit) == pytest.approx(s.time_s, rel=3e-3)
    # the calibration grid's keys, by hand
    assert [conv_ekey(32, 32, 3, 1, 32), conv_ekey(64, 64, 3, 1, 4), conv_ekey(48, 64, 1, 1, 1),
            conv_ekey(48, 64, 3, 1, 1), conv_ekey(32, 32, 3, 2, 32), conv_ekey(32, 64, 3, 1, 1),
            conv_ekey(64, 16, 1, 1, 1), conv_ekey(32, 64, 3, 1, 4), conv_ekey(32, 32, 3, 1, 16),
            conv_ekey(64, 64, 3, 1, 16), conv_ekey(64, 64, 3, 1, 16, "backward_weight")] == \
        ["conv/depthwise", "conv/grouped", "conv/1x1", "", "", "conv/narrow", "conv/1x1/narrow", "conv/grouped",
         "conv/grouped/gemm", "conv/grouped", "conv/grouped/gemm"]
    # grouped samples count executed FLOPs: 2 channels per group (GEMM path) 16/2, 8-blocks 16/8
    assert (conv_executed(32, 32, 3, 16, "forward"), conv_executed(32, 64, 3, 4, "backward_weight"),
            conv_executed(32, 32, 3, 32, "forward")) == (8.0, 2.0, 1.0)
    assert (gemm_ekey(16, 4096), gemm_ekey(2048, 10), gemm_ekey(17, 17)) == ("matmul/thin", "matmul/thin", "")


def test_thread_speedup_is_a_time_weighted_median_robust_to_one_disturbed_pair():
    from perfmodel.calibration.fit import measured_speedups, weighted_median

    assert weighted_median([(1.0, 1.0), (2.0, 1.0), (3.0, 5.0)]) == 3.0  # 3.0 carries most of the weight
    assert weighted_median([(1.8, 2.0), (0.5, 1.0), (1.9, 1.0)]) == 1.8  # half of 4 reached at 1.8
    samples = []
    for i, (t1, s2) in enumerate(((0.010, 1.8), (0.012, 1.9), (0.011, 0.5))):  # the last pair was disturbed
        samples += [Sample("matrix", 1, t1, 1e9, label=f"g{i}"), Sample("matrix", 2, t1 / s2, 1e9, label=f"g{i}")]
    assert measured_speedups(samples, 0.0, 1e-3)[2] == pytest.approx(1.8)


def test_fresh_buffer_cost_fitted_and_added_to_large_outputs_only():
    """Streaming samples with outputs of at least 32 MiB that take longer than the curves say give the fresh-buffer
    cost (seconds per output byte x thread speedup); a profile carrying it adds written x cost / speedup to work
    whose output per kernel reaches 32 MiB, and nothing below."""
    from perfmodel.calibration.kernels import FRESH_BYTES, written_bytes

    samples = synthetic_samples()
    base = fit_profile(samples, FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES}))
    per_byte = 4e-10  # 2.5 GB/s of faulting on one thread
    for t in (1, 2):
        n = 2 ** 24  # 64 MiB out
        s0 = Sample("memory", t, 1.0, float(n), 8.0 * n, 1, label=f"fresh relu {n} fp32", ekey="elementwise")
        clean = predicted_sample_time(s0, base)
        samples.append(dataclasses.replace(s0, time_s=clean + 4.0 * n * per_byte / base.speedup(t)))
    assert written_bytes(samples[-1]) == 4.0 * 2 ** 24 and FRESH_BYTES == 32 * 2 ** 20
    fit = fit_profile(samples, FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES}))
    assert fit.fresh_s_per_byte == pytest.approx(per_byte, rel=1e-6)
    dev = hardware_from_dict(profile_dict(fit, name="fresh", source="test", memory_bytes=8e9))
    assert dev.traits.fresh_buffer_s_per_byte == pytest.approx(per_byte, rel=1e-3)
    r = device_rates(dev, "fp32", threads=2)
    big = Work("memory", flops=0.0, bytes_read=64 * 2 ** 20, bytes_written=64 * 2 ** 20, kernels=1)
    small = Work("memory", flops=0.0, bytes_read=16 * 2 ** 20, bytes_written=16 * 2 ** 20, kernels=1)
    from perfmodel.engine.rates import Rates
    import dataclasses as dc

    plain = dc.replace(r, fresh_bytes=None)
    extra = 64 * 2 ** 20 * per_byte / fit.speedup(2)
    assert work_time(big, r).time_s - work_time(big, plain).time_s == pytest.approx(extra, rel=1e-3)
    assert work_time(small, r).time_s == work_time(small, plain).time_s
    assert isinstance(r, Rates)


def test_fresh_bytes_of_a_conv_sample_count_its_blocked_layout_buffers_at_or_above_32_mib():
    """oneDNN's NCHW convolution allocates x-copy, y-blocked and y in forward; dy-copy, dx-blocked, dx (backward
    data) and x-copy, dy-copy, dW (backward weight): each buffer of at least 32 MiB is mapped afresh."""
    from perfmodel.calibration.kernels import written_bytes

    mib32 = 32 * 2 ** 20  # n128 c64 32x32: 4 * 128 * 64 * 1024 bytes = 32 MiB exactly
    fwd = Sample("conv", 1, 1.0, 1.0, label="conv n128 c64 32x32 k64 3x3 fwd")
    bwd = Sample("conv", 1, 1.0, 1.0, label="conv n128 c64 32x32 k64 3x3 g64 bwd")
    down = Sample("conv", 1, 1.0, 1.0, label="conv n128 c64 32x32 k64 3x3/2 fwd")  # y is 8 MiB: only the x-copy
    small = Sample("conv", 1, 1.0, 1.0, label="conv n64 c64 32x32 k64 3x3 fwd")
    assert written_bytes(fwd) == 3 * mib32
    assert written_bytes(bwd) == 5 * mib32  # dW (64 x 1 x 3 x 3 floats) stays small
    assert written_bytes(down) == mib32 and written_bytes(small) == 0.0
    assert written_bytes(Sample("memory", 1, 1.0, 1.0, label="fresh relu 16777216 fp32")) == 2 * mib32


def test_cold_buffer_cost_per_thread_count_from_stream_pairs():
    """cold - warm time of the same stream over its 4n output bytes, per thread count (median over pairs); a
    profile carrying it adds bytes x cost for buffers in [cold_buffer_bytes, fresh_buffer_bytes) only."""
    from perfmodel.calibration.kernels import COLD_BYTES_MIN, fit_cold_cost

    n = 2 ** 20  # 4 MiB of output
    s = [Sample("memory", 1, 1.0e-3, label=f"fresh relu {n} fp32"), Sample("cold", 1, 1.4e-3, label=f"cold relu {n} fp32"),
         Sample("memory", 2, 0.6e-3, label=f"fresh relu {n} fp32"), Sample("cold", 2, 0.8e-3, label=f"cold relu {n} fp32"),
         Sample("cold", 2, 9.0, label="cold add 77 fp32")]  # no warm pair: ignored
    per = fit_cold_cost(s)
    assert per[1] == pytest.approx(0.4e-3 / (4 * n)) and per[2] == pytest.approx(0.2e-3 / (4 * n))
    samples = synthetic_samples()
    fit = fit_profile(samples, FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES}))
    fit.cold_s_per_byte = {1: 1e-11, 2: 6e-12}
    dev = hardware_from_dict(profile_dict(fit, name="cold", source="test", memory_bytes=8e9))
    assert dev.traits.cold_buffer_bytes == COLD_BYTES_MIN and dev.traits.cold_buffer_s_per_byte == {1: 1e-11, 2: 6e-12}
    import dataclasses as dc

    for t, per_byte in ((1, 1e-11), (2, 6e-12), (4, 6e-12)):  # 4 threads: the largest listed count below
        r = device_rates(dev, "fp32", threads=t)
        plain = dc.replace(r, cold_bytes=None)
        conv = Work("conv", flops=1e6, bytes_read=1e6, bytes_written=4e6, allocs=(0.5e6, 4e6, 8e6))
        assert work_time(conv, r).time_s - work_time(conv, plain).time_s == pytest.approx(12e6 * per_byte, rel=1e-6)


def test_curves_fitted_per_thread_count_answer_for_that_thread_count():
    """With 1- and 2-thread samples, each keyed curve and family curve also gets "<key>@t<n>" curves; at n threads
    they replace the pooled curve (hand-set here: at 2 threads the streaming curve halves)."""
    from perfmodel.hardware.traits import efficiency_curve, for_threads

    samples = synthetic_samples()
    fit = fit_profile(samples, FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES}))
    assert {"matrix@t1", "matrix@t2", "conv@t2", "memory@t1"} <= set(fit.keyed_curves)
    eff = Efficiency(curves={"elementwise": EfficiencyCurve(points=((1e3, 0.4), (1e6, 0.4))),
                             "elementwise@t2": EfficiencyCurve(points=((1e3, 0.2), (1e6, 0.2))),
                             "memory@t2": EfficiencyCurve(points=((1e3, 0.3), (1e6, 0.3)))},
                     elementwise={"relu": 10e9, "relu@t1": 12e9, "relu@t2": 8e9})
    one, two, four = for_threads(eff, 1), for_threads(eff, 2), for_threads(eff, 4)
    assert efficiency_curve(one, "elementwise/relu", "memory").at(1e4) == pytest.approx(0.4)
    assert efficiency_curve(two, "elementwise/relu", "memory").at(1e4) == pytest.approx(0.2)
    assert efficiency_curve(four, "elementwise/relu", "memory").at(1e4) == pytest.approx(0.2)
    assert two.memory.at(1e4) == pytest.approx(0.3) and one.memory == eff.memory
    assert (one.elementwise["relu"], two.elementwise["relu"]) == (12e9, 8e9)
    assert not any("@t" in k for k in two.curves) and for_threads(eff, None) is eff


def test_a_calibrated_cpu_profile_names_the_cpu_software_stack(tmp_path):
    """calibrate writes the one stack whose target is cpu (fused attention, RNN steps of the torch CPU build), so a
    fresh calibration keeps what the built-in CPU profiles say about the libraries."""
    from perfmodel.calibration.profile import refit
    from perfmodel.hardware.loader import load_hardware
    from perfmodel.kernels.data import load_stack, stack_for_target
    from perfmodel.paths import repo_root

    assert stack_for_target("gpu") is None  # several GPU stacks: named per device profile
    name = stack_for_target("cpu")
    assert name and load_stack(name).target == "cpu" and load_stack(name).fused_attention
    out = tmp_path / "cal.yaml"
    refit(repo_root() / "validation" / "measurements" / "cpu-calibration.jsonl", out)
    assert load_hardware(out).software_stack == name
