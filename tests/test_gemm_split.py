"""CPU GEMM thread split (hardware.traits.gemm_split_speedup, engine.worktime.split_factors, calibration.threads):
hand-computed values."""

from __future__ import annotations

import pytest

from perfmodel.calibration.fit import FitResult, Sample, profile_dict
from perfmodel.calibration.threads import fit_gemm_split, gemm_label, gemm_rows, split_estimates, split_factor
from perfmodel.engine.rates import device_rates
from perfmodel.engine.worktime import work_times
from perfmodel.errors import HardwareError
from perfmodel.hardware.loader import hardware_from_dict, load_hardware
from perfmodel.hardware.traits import gemm_split, gemm_split_speedup
from perfmodel.ops.base import ConvShape, GemmShape, Work

PROFILE = "hardware_profiles/devices/calibrated/amd-epyc-2c-kvm.yaml"
AMDAHL_2 = 2 / (1 + 0.025)  # thread_speedup at 2 threads with serial fraction 0.025


def _device(split_rows):
    d = load_hardware(PROFILE)
    tr = d.traits.model_copy(update={"gemm_split_rows": split_rows})
    ts = d.thread_scaling.model_copy(update={"serial_fraction": 0.025})
    return d.model_copy(update={"traits": tr, "thread_scaling": ts})


def test_speedup_hand_values():
    # (rows + r0) / (rows / n + r0): 32 rows, r0 16, 2 threads: 48 / 32; 600 rows: 616 / 316
    assert gemm_split_speedup(32, 2, 16.0) == pytest.approx(1.5)
    assert gemm_split_speedup(600, 2, 16.0) == pytest.approx(616 / 316)
    assert gemm_split_speedup(500, 1, 16.0) == pytest.approx(1.0)
    assert gemm_split_speedup(10**9, 4, 16.0) == pytest.approx(4.0, rel=1e-6)


def test_gemm_split_of_device():
    dev = _device(16.0)
    assert gemm_split(dev, 2) == (2, 16.0, pytest.approx(AMDAHL_2))
    assert gemm_split(dev, 4)[0] == 2  # capped at the physical cores
    assert gemm_split(dev, 1) is None and gemm_split(dev, None) is None
    assert gemm_split(_device(None), 2) is None
    assert gemm_split(load_hardware("a100-sxm4-40gb"), 2) is None


def _gemm(m, n, k, key="matmul"):
    return Work("matrix", flops=2.0 * m * n * k, bytes_read=4.0 * (m * k + k * n), bytes_written=4.0 * m * n,
                efficiency_key=key, shape=GemmShape(m, n, k))


def test_row_times_gemm_split():
    split, plain = device_rates(_device(16.0), "fp32", 2), device_rates(_device(None), "fp32", 2)
    works = (_gemm(32, 1024, 1024), _gemm(600, 1024, 1024), _gemm(32, 1024, 1024, "rnn/gemm/lstm"),
             Work("conv", flops=1e9, bytes_read=1e6, bytes_written=1e6,
                  shape=ConvShape(32, 64, 64, (16, 16), (16, 16), (3, 3), (1, 1))))
    a, b = work_times(works, split)["compute"], work_times(works, plain)["compute"]
    # compute time scales by Amdahl's speedup over the split's: 1.9512 / 1.5 at 32 rows, 1.9512 / (616/316) at 600
    assert a[0] / b[0] == pytest.approx(AMDAHL_2 / 1.5)
    assert a[1] / b[1] == pytest.approx(AMDAHL_2 / (616 / 316))
    assert a[2] == pytest.approx(b[2]) and a[3] == pytest.approx(b[3])  # fused LSTM and conv rows: no split
    one_s, one_p = device_rates(_device(16.0), "fp32", 1), device_rates(_device(None), "fp32", 1)
    assert work_times(works, one_s)["compute"] == pytest.approx(work_times(works, one_p)["compute"])


def test_rows_and_labels():
    assert gemm_label(32, 100, 200, "nt") == "gemm 32x100x200 nt"
    assert gemm_rows(gemm_label(32, 100, 200, "tn")) == 32
    assert gemm_rows("lstm n32 t48 f64 h128") == 0


def _pair(m, t1, t2, oh=1e-6):
    lab = gemm_label(m, 256, 256, "nn")
    return [Sample("matrix", 1, t1 + oh, flops=1.0, label=lab), Sample("matrix", 2, t2 + oh, flops=1.0, label=lab)]


def test_split_estimates_hand_values():
    # speedup 1.5 at 32 rows: r0 = 32 (1 - 0.75) / 0.5 = 16; speedup 1.6 at 64 rows: 64 * 0.2 / 0.6 = 21.33;
    # speedup 2.0 at 600 rows: 0; 1 row (vector-matrix) and sub-50-us pairs are not used; speedup <= 1: no estimate
    s = (_pair(32, 1.5e-3, 1e-3) + _pair(64, 1.6e-3, 1e-3) + _pair(600, 2e-3, 1e-3) + _pair(1, 1e-3, 1e-3)
         + _pair(48, 20e-6, 10e-6) + _pair(40, 1e-3, 1.1e-3))
    est = split_estimates(s, 1e-6, 50e-6)
    assert est == pytest.approx([16.0, 64 * 0.2 / 0.6, 0.0])
    assert fit_gemm_split(s, 1e-6, 50e-6) == pytest.approx(16.0)
    assert fit_gemm_split(_pair(1, 1e-3, 1e-3), 1e-6, 50e-6) is None


def test_split_factor_and_profile_trait():
    res = FitResult(peak_flops={"fp32": 1e11}, memory_bandwidth_Bps=1e10, bench_overhead_s=0.0,
                    per_core_bandwidth_Bps=None, kernel_overhead_s=1e-6, serial_fraction=0.025,
                    hyperthread_penalty=0.1, curves={"matrix": [(1e6, 0.5)]}, cores=2, is_cpu=True,
                    gemm_split_rows=16.0)
    s2 = _pair(32, 1e-3, 1e-3)[1]
    assert split_factor(s2, res) == pytest.approx(1.5 / AMDAHL_2)
    assert split_factor(_pair(32, 1e-3, 1e-3)[0], res) == 1.0
    dev = hardware_from_dict(profile_dict(res, name="split", source="test", memory_bytes=8e9))
    assert dev.traits.gemm_split_rows == 16.0


def test_negative_split_rows_is_refused():
    d = profile_dict(FitResult(peak_flops={"fp32": 1e11}, memory_bandwidth_Bps=1e10, bench_overhead_s=0.0,
                               per_core_bandwidth_Bps=None, kernel_overhead_s=1e-6, serial_fraction=0.025,
                               hyperthread_penalty=0.1, curves={"matrix": [(1e6, 0.5)]}, cores=2, is_cpu=True,
                               gemm_split_rows=16.0), name="bad", source="test", memory_bytes=8e9)
    d["traits"]["gemm_split_rows"] = -1
    with pytest.raises(HardwareError, match="gemm_split_rows"):
        hardware_from_dict(d)


def test_optimizer_check_prices_as_a_training_step():
    """calibration's optimizer-step check uses the engine's price of the step (optimizers.check_step_time), the
    same number a prediction's optimizer stage gives for the same parameter tensors."""
    import perfmodel
    from perfmodel.optimizers import check_step_time
    from conftest import small_mlp

    dev = load_hardware(PROFILE)
    g = small_mlp()  # dense 256->512, 512->10 with biases: tensors of 131072, 512, 5120, 10 parameters
    p = perfmodel.predict(g, dev, batch=32, threads=2, optimizer="adam")
    assert check_step_time("adam", (256 * 512, 512, 512 * 10, 10), dev, 2) == pytest.approx(p.stages["optimizer"])


def test_optimizer_checks_call_the_given_price():
    from perfmodel.calibration.grid import optimizer_label
    from perfmodel.calibration.profile import optimizer_checks

    res = FitResult(peak_flops={"fp32": 1e11}, memory_bandwidth_Bps=1e10, bench_overhead_s=0.0,
                    per_core_bandwidth_Bps=None, kernel_overhead_s=1e-6, serial_fraction=0.025,
                    hyperthread_penalty=0.1, curves={"matrix": [(1e6, 0.5)], "memory": [(1e6, 0.5)]}, cores=2,
                    is_cpu=True)
    s = [Sample("check", 2, 4e-3, label=optimizer_label("adam"))]
    seen = []
    checks = optimizer_checks(s, res, lambda name, t, prof: seen.append((name, t, prof["cores"])) or 3e-3)
    assert seen == [("adam", 2, 2)]
    assert checks[0]["error_pct"] == pytest.approx(-25.0)  # (3 - 4) / 4
