"""Device traits (defaults by type, overrides as data), peak rates under them, efficiency lookup by key."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from perfmodel.hardware import load_hardware
from perfmodel.hardware.schema import Device, Efficiency, EfficiencyCurve
from perfmodel.hardware.topology import node_from_device
from perfmodel.hardware.traits import (
    curve_table, device_peaks, device_traits, efficiency_at, efficiency_curve, efficiency_lookup, elementwise_rate, key_chain,
    rate_keys, stage_factor, stage_factor_keys, vector_factor,
)

TPU = Path(__file__).parent / "data" / "tpu-like.yaml"
CALIBRATED = "amd-epyc-2c-kvm"


def test_defaults_by_type_keep_todays_behaviour():
    cpu, gpu = device_traits(load_hardware("epyc-9654")), device_traits(load_hardware("v100-sxm2"))
    assert (cpu.launch_overlaps, cpu.optimizer_kernels, cpu.thread_model, cpu.bandwidth_model) == \
        (False, "per-tensor", "cores", "per-core")
    assert cpu.lowp_vector_factor == 1.0 and cpu.host_memory_is_device_memory and cpu.uses_threads
    assert (gpu.launch_overlaps, gpu.optimizer_kernels, gpu.thread_model, gpu.bandwidth_model) == \
        (True, "foreach", "none", "device")
    assert gpu.lowp_vector_factor == 2.0 and not gpu.host_memory_is_device_memory and not gpu.uses_threads
    assert device_traits(load_hardware("k80")).lowp_vector_factor == 1.0  # no fp16 rate in its profile


def test_a_profile_overrides_single_traits():
    data = load_hardware("v100-sxm2").model_dump(by_alias=True)
    d = Device.model_validate({**data, "traits": {"optimizer_kernels": "fused"}})
    t = device_traits(d)
    assert t.optimizer_kernels == "fused" and t.launch_overlaps is True  # the rest stays the GPU default


def test_peaks_cpu_thread_model_hand_computed():
    d = load_hardware("epyc-9654")  # 96 cores, fp32 7372.8 GFLOPS, serial 0.01, 25 GB/s per core
    p = device_peaks(d, "fp32", threads=4)
    speed = 4 / (1 + 0.01 * 3)
    assert p.matrix_flops == pytest.approx(7372.8e9 / 96 * speed, rel=1e-12)
    assert p.vector_flops == pytest.approx(7372.8e9 / 96 * speed, rel=1e-12)
    assert p.bandwidth_Bps == pytest.approx(100e9, rel=1e-12) and p.threads == 4 and not p.overhead_overlaps
    hyper = device_peaks(d, "fp32", threads=100)  # 4 threads beyond 96 cores: x (1 - 0.05 * 4/96)
    assert hyper.thread_factor == pytest.approx(96 / (1 + 0.01 * 95) * (1 - 0.05 * 4 / 96), rel=1e-12)


def test_peaks_gpu_and_lowp_vector_factor():
    d = load_hardware("v100-sxm2")
    p = device_peaks(d, "fp16", threads=8)  # threads ignored
    assert p.matrix_flops == 125e12 and p.vector_flops == 2 * 15.7e12 and p.bandwidth_Bps == 900e9
    assert p.threads is None and p.thread_factor == 1.0 and p.overhead_overlaps
    assert vector_factor(d, "fp32") == 1.0 and vector_factor(d, "bf16") == 2.0


def test_key_chain():
    assert key_chain("conv/depthwise/strided", "conv") == ("conv/depthwise/strided", "conv/depthwise", "conv",
                                                           "default")
    assert key_chain("matmul/thin", "matrix") == ("matmul/thin", "matmul", "matrix", "default")


def _eff(**kw) -> Efficiency:
    return Efficiency.model_validate(kw)


def test_efficiency_curve_fallback_chain():
    dw, thin, dflt = EfficiencyCurve(max=0.1), EfficiencyCurve(max=0.2), EfficiencyCurve(max=0.3)
    eff = _eff(curves={"conv/depthwise": dw, "matmul/thin": thin, "default": dflt}, conv={"max": 0.6})
    assert efficiency_curve(eff, "conv/depthwise/strided", "conv") is dw
    assert efficiency_curve(eff, "conv/grouped", "conv").max == 0.6  # the profile's conv curve
    assert efficiency_curve(eff, "matmul/thin", "matrix") is thin
    assert efficiency_curve(eff, "attention/scores", "matrix") is dflt  # matrix not set in the profile
    plain = Efficiency()
    assert efficiency_curve(plain, "attention/scores", "matrix") == plain.matrix  # built-in family curve
    assert efficiency_curve(plain, "norm/batchnorm", "memory") == plain.memory


def test_efficiency_curve_low_precision():
    low, low_mm = EfficiencyCurve(max=0.4), EfficiencyCurve(max=0.5)
    eff = _eff(matrix={"max": 0.7}, lowp_matrix=low.model_dump(), lowp_curves={"matmul/thin": low_mm})
    assert efficiency_curve(eff, "matmul", "matrix", "bf16").max == 0.4
    assert efficiency_curve(eff, "matmul", "matrix", "fp32").max == 0.7
    assert efficiency_curve(eff, "matmul/thin", "matrix", "fp16").max == 0.5
    assert efficiency_curve(eff, "matmul/thin", "matrix", "fp32").max == 0.7
    # low-precision data beats fp32 keyed data; without any, fp32 keyed data applies
    dw = EfficiencyCurve(max=0.1)
    both = _eff(conv={"max": 0.6}, lowp_conv={"max": 0.3}, curves={"conv/depthwise": dw, "elementwise": dw})
    assert efficiency_curve(both, "conv/depthwise", "conv", "bf16").max == 0.3
    assert efficiency_curve(both, "conv/depthwise", "conv", "fp32") is dw
    assert efficiency_curve(both, "elementwise/relu", "memory", "bf16") is dw  # no lowp memory curve
    # a profile without curves answers exactly as Efficiency.curve(family, dtype) did
    v100 = load_hardware("v100-sxm2").efficiency
    for fam in ("matrix", "conv"):
        for dt in ("fp32", "fp16", "tf32"):
            assert efficiency_curve(v100, "x/y", fam, dt) == v100.curve(fam, dt)


def test_efficiency_at_is_curve_at_vectorised():
    sat = EfficiencyCurve(max=0.8, half=2e8)
    pts = EfficiencyCurve(points=[[1e3, 0.2], [1e6, 0.5], [1e9, 0.9]])
    sizes = np.array([0.0, 10.0, 1e3, 3.3e4, 1e6, 2e7, 1e9, 5e12])
    for c in (sat, pts):
        assert np.allclose(efficiency_at(c, sizes), [c.at(s) for s in sizes], rtol=1e-12, atol=0)
    assert efficiency_at(pts, [math.sqrt(1e3 * 1e6)])[0] == pytest.approx(0.35)  # halfway in log size
    eff = _eff(curves={"conv/depthwise": {"max": 0.1, "half": 0}}, conv={"max": 0.6, "half": 0})
    got = efficiency_lookup(eff, ["conv", "conv/depthwise", "conv/1x1"], ["conv"] * 3, [1e6, 1e6, 1e6])
    assert list(got) == [0.6, 0.1, 0.6]
    curves, index = curve_table(eff, ["conv", "conv/depthwise", "conv/1x1"], ["conv"] * 3)
    assert len(curves) == 2 and list(index) == [0, 1, 0]  # conv and conv/1x1 share the profile's conv curve


def test_calibrated_rates_keep_the_op_key_first():
    eff = load_hardware(CALIBRATED).efficiency
    assert elementwise_rate(eff, "elementwise/relu", "relu", "forward") == eff.elementwise["relu"]
    assert elementwise_rate(eff, "elementwise/relu", "relu", "backward_data") == eff.elementwise["relu.backward"]
    # attention's softmax is not the softmax op: it keeps the "default" rate, as before keys
    assert elementwise_rate(eff, "elementwise/softmax/attention", "attention", "forward") == eff.elementwise["default"]
    assert rate_keys("norm/batchnorm", "batchnorm", "backward_weight") == (
        "batchnorm.backward", "norm/batchnorm.backward", "norm.backward", "default")
    new = _eff(elementwise={"elementwise/relu": 5e9, "default": 1e9})
    assert elementwise_rate(new, "elementwise/relu", "relu", "forward") == 5e9
    assert elementwise_rate(Efficiency(), "elementwise/relu", "relu", "forward") is None


def test_stage_factors_by_legacy_key_then_by_efficiency_key():
    eff = load_hardware(CALIBRATED).efficiency
    sf = eff.stage_factors
    assert stage_factor(eff, "conv/strided/1x1", "conv2d", "backward_data") == sf["conv2d.backward_data/strided-1x1"]
    assert stage_factor(eff, "conv/depthwise/strided", "conv2d", "forward") == sf["conv2d.forward/strided"]
    assert stage_factor(eff, "conv/transposed/strided/1x1", "conv_transpose2d", "forward") == \
        sf["conv_transpose2d.forward/strided"]  # no -1x1 entry: falls back to /strided
    assert stage_factor(eff, "conv/1x1", "conv2d", "forward") == 1.0
    assert stage_factor_keys("conv/depthwise", None, "forward") == ("conv/depthwise@forward", "conv@forward")
    new = _eff(stage_factors={"conv/depthwise@backward_data": 0.5})
    assert stage_factor(new, "conv/depthwise/strided", "conv2d", "backward_data") == 0.5


def test_tpu_like_accelerator_is_data_and_predicts():
    from perfmodel.prediction import predict

    d = load_hardware(TPU)
    t = device_traits(d)
    assert (t.optimizer_kernels, t.lowp_vector_factor, t.thread_model) == ("fused", 1.0, "none")
    p = device_peaks(d, "bf16")
    assert p.matrix_flops == 275e12 and p.vector_flops == 68e12 and p.bandwidth_Bps == 1200e9
    assert efficiency_curve(d.efficiency, "conv/depthwise", "conv", "bf16").max == 0.05
    assert efficiency_curve(d.efficiency, "matmul", "matrix", "bf16").max == 0.80
    assert node_from_device(d, 4).fabric_type == "pcie-p2p"
    pr = predict("resnet50", d, batch=32, dtype="bf16")
    assert math.isfinite(pr.iteration_time_s) and pr.iteration_time_s > 0


def test_every_builtin_device_resolves_its_traits():
    from perfmodel.hardware import list_hardware

    devices = list_hardware("device")
    assert len(devices) >= 19
    for d in devices:
        t = device_traits(d)
        assert t.uses_threads == (d.type == "cpu") and t.launch_overlaps == (d.type != "cpu")


@pytest.mark.parametrize("old, new, field", [
    ("optimizer_kernels: fused", "optimizer_kernels: fastest", "optimizer_kernels"),
    ("lowp_vector_factor: 1.0", "lowp_vector_factor: -2", "lowp_vector_factor"),
    ("launch_overlaps: true", "warp_speed: true", "warp_speed"),
])
def test_bad_traits_are_refused_naming_the_field(tmp_path, old, new, field):
    from perfmodel.errors import HardwareError

    text = TPU.read_text().replace(f"  {old}\n", f"  {new}\n")
    assert text != TPU.read_text()
    p = tmp_path / "tpu.yaml"
    p.write_text(text)
    with pytest.raises(HardwareError, match=field):
        load_hardware(p)


def test_traits_reach_the_prediction():
    from perfmodel.prediction import predict

    base = load_hardware(TPU)
    data = base.model_dump(by_alias=True)

    def with_traits(**kw):
        return Device.model_validate({**data, "name": "tpu-variant", "traits": {**data["traits"], **kw}})

    t0 = predict("mobilenet_v2", base, batch=8, dtype="bf16").iteration_time_s
    serial = predict("mobilenet_v2", with_traits(launch_overlaps=False), batch=8, dtype="bf16").iteration_time_s
    packed = predict("mobilenet_v2", with_traits(lowp_vector_factor=2.0), batch=8, dtype="bf16").iteration_time_s
    assert serial > t0 >= packed  # dispatch adds to compute; packed bf16 math never slows elementwise work
    assert device_peaks(with_traits(lowp_vector_factor=2.0), "bf16").vector_flops == 2 * 68e12
    curves = {**data["efficiency"]["curves"], "conv/depthwise": {"max": 0.5, "half": 1e8}}  # 10x the test profile's
    fast_dw = Device.model_validate({**data, "name": "tpu-fast-dw", "efficiency": {**data["efficiency"], "curves": curves}})
    assert predict("mobilenet_v2", fast_dw, batch=8, dtype="bf16").iteration_time_s < t0  # the depthwise curve is data


def test_rates_and_stage_factors_keyed_by_efficiency_key_reach_the_prediction():
    from perfmodel.prediction import predict

    data = load_hardware(TPU).model_dump(by_alias=True)

    def variant(name, **eff):
        return Device.model_validate({**data, "name": name, "efficiency": {**data["efficiency"], **eff}})

    def t(d):
        return predict("mobilenet_v2", d, batch=8, dtype="bf16").iteration_time_s

    fast = t(variant("rates", elementwise={"default": 1e15}))
    assert t(variant("slow-relu", elementwise={"default": 1e15, "elementwise/relu.backward": 1e9})) > fast
    base = t(variant("plain"))
    assert t(variant("slow-dw-bwd", stage_factors={"conv/depthwise@backward_data": 0.1})) > base
    assert t(variant("other-stage", stage_factors={"conv/grouped@backward_data": 0.1})) == base  # no grouped conv


def test_a_new_conv_kernel_class_is_a_key_in_the_cost_rule_plus_profile_data(monkeypatch):
    """Winograd-able convolutions (3x3, stride 1, ungrouped) as their own class: one line in ops/conv.py's
    conv_key (done here by monkeypatch) and one curve in the profile."""
    import perfmodel.ops.conv as conv
    from perfmodel.prediction import predict

    plain_key = conv.conv_key

    def with_winograd(s):
        k = plain_key(s)
        return "conv/winograd" if k == "conv" and s.kernel == (3, 3) else k

    monkeypatch.setattr(conv, "conv_key", with_winograd)
    data = load_hardware(TPU).model_dump(by_alias=True)
    curves = {**data["efficiency"]["curves"], "conv/winograd": {"max": 1.0, "half": 1e6}}
    fast = Device.model_validate({**data, "name": "tpu-winograd", "efficiency": {**data["efficiency"], "curves": curves}})
    plain = Device.model_validate({**data, "name": "tpu-plain"})
    assert predict("vgg16", fast, batch=7, dtype="bf16").iteration_time_s < \
        predict("vgg16", plain, batch=7, dtype="bf16").iteration_time_s
