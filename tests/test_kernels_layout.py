"""Tensor-core convolutions and the activation layout: cuDNN's NCHW <-> NHWC conversions, Winograd on the CUDA
cores, and TrainingSetup.memory_format, by hand on a toy GPU and end to end."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel import predict
from perfmodel.errors import NotFoundError
from perfmodel.kernels import Achievable, GemmTile, GpuArch, SoftwareStack, load_stack
from perfmodel.kernels.conv import algorithm_times, conv_time_s, io_bytes, layout_conversion_s
from perfmodel.kernels.gemm import cuda_core_dtype, dtype_parts

# 10 SMs, fp32 128 FLOPs/clock (CUDA cores), fp16 1024 FLOPs/clock (tensor cores), 1 GHz, 100 GB/s
TOY = GpuArch(name="toy-tc", family="test", source="test", sm_count=10, boost_clock="1 GHz",
              flops_per_clock_per_sm={"fp32": 128, "fp16": 1024}, tensor_core_dtypes=("fp16",),
              memory_bandwidth="100 GB/s", l2_cache="1 MiB")
T128 = GemmTile(m=128, n=128, threads=256, thread_m=8, thread_n=8, ctas_per_sm=1)
TC = GemmTile(m=128, n=128, threads=256, ctas_per_sm=1, efficiency=1.0)
ONE = Achievable(compute={"gemm": 1.0}, memory_bandwidth=1.0, kernel_overhead="5 us", rnn_step_overhead="0 us",
                 rnn_memory_bandwidth=1.0)
NCHW = SoftwareStack(name="toy-tc-stack", libraries="test", source="test", gemm_tiles=(T128,),
                     tensor_core_tiles=(TC,), tensor_core_conv_layout="nhwc", achievable=ONE)
NHWC = NCHW.model_copy(update={"activation_layout": "nhwc"})
CONV = dict(N=32, C=64, H=28, W=28, K=128, R=3, S=3, pad_h=1, pad_w=1, stride_h=1, stride_w=1)


def _arr(s):
    return {k: np.array([float(v)]) for k, v in s.items()}


def test_conversion_reads_and_writes_inputs_filter_and_output_once():
    # x 32*64*28*28, w 128*64*9, y 32*128*28*28 fp16 elements, each read and written: 2 x 2 bytes, three kernels
    nbytes = 2 * 2 * (32 * 64 * 28 * 28 + 128 * 64 * 9 + 32 * 128 * 28 * 28)
    assert float(io_bytes(_arr(CONV), "fp16")[0]) * 2 == nbytes
    assert float(layout_conversion_s(_arr(CONV), "fp16", TOY, NCHW)[0]) == pytest.approx(nbytes / 100e9 + 3 * 5e-6)
    assert np.all(layout_conversion_s(_arr(CONV), "fp16", TOY, NHWC) == 0.0)  # channels_last: nothing to convert
    assert layout_conversion_s(_arr(CONV), "fp32", TOY, NCHW) == 0.0  # CUDA-core kernels read NCHW as it is
    old = NCHW.model_copy(update={"tensor_core_conv_layout": None})  # a stack that names no kernel layout
    assert layout_conversion_s(_arr(CONV), "fp16", TOY, old) == 0.0


@pytest.mark.parametrize("phase", ["fwd", "bwd_data", "bwd_filter"])
def test_implicit_gemm_on_nchw_pays_the_conversion_in_every_pass(phase):
    a, b = (algorithm_times(_arr(CONV), phase, "fp16", TOY, s) for s in (NCHW, NHWC))
    algo = "implicit_gemm" if phase == "bwd_filter" else "implicit_precomp_gemm"
    extra = float(layout_conversion_s(_arr(CONV), "fp16", TOY, NCHW)[0])
    assert float(a[algo][0][0]) == pytest.approx(float(b[algo][0][0]) + extra)


def test_winograd_runs_on_the_cuda_cores_in_fp32_math():
    assert cuda_core_dtype("fp16") == "fp16_io_fp32_math" and dtype_parts("fp16_io_fp32_math") == ("fp32", 2)
    assert cuda_core_dtype("tf32") == "fp32" and cuda_core_dtype("fp32") == "fp32"
    assert dtype_parts("bf16_io_fp32_math") == ("fp32", 2) and dtype_parts("fp8_io_fp32_math") == ("fp32", 1)
    tc = algorithm_times(_arr(CONV), "fwd", "fp16", TOY, NCHW)
    simt = algorithm_times(_arr(CONV), "fwd", "fp16_io_fp32_math", TOY, NCHW)
    for algo in ("winograd", "winograd_nonfused", "fft"):
        assert float(tc[algo][0][0]) == pytest.approx(float(simt[algo][0][0]))
    # the stack can list Winograd among its tensor-core algorithms: then it runs at the tensor-core rate
    fast = NCHW.model_copy(update={"tensor_core_conv_algorithms": ("implicit_gemm", "implicit_precomp_gemm",
                                                                   "winograd")})
    assert float(algorithm_times(_arr(CONV), "fwd", "fp16", TOY, fast)["winograd"][0][0]) < float(
        tc["winograd"][0][0])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 64), c=st.integers(1, 512), k=st.integers(1, 512), hw=st.integers(1, 64),
       r=st.sampled_from([1, 3, 5, 7]), stride=st.sampled_from([1, 2]),
       phase=st.sampled_from(["fwd", "bwd_data", "bwd_filter"]))
def test_channels_last_is_never_slower(n, c, k, hw, r, stride, phase):
    s = _arr(dict(N=n, C=c, H=hw, W=hw, K=k, R=r, S=r, pad_h=r // 2, pad_w=r // 2, stride_h=stride,
                  stride_w=stride))
    t_nchw = float(conv_time_s(s, phase, "fp16", TOY, NCHW)[0][0])
    t_nhwc = float(conv_time_s(s, phase, "fp16", TOY, NHWC)[0][0])
    assert 0 < t_nhwc <= t_nchw * (1 + 1e-12) and np.isfinite(t_nchw)


def test_channels_last_stack_variant():
    base, cl = load_stack("pytorch-cuda12"), load_stack("pytorch-cuda12+channels_last")
    assert (base.activation_layout, cl.activation_layout) == ("nchw", "nhwc")
    assert cl.name == "pytorch-cuda12+channels_last" and cl.achievable == base.achievable
    with pytest.raises(NotFoundError, match="no software stack file 'no-such-stack'"):
        load_stack("no-such-stack+channels_last")


def test_memory_format_in_predict():
    kw = dict(batch=64, dtype="bf16")
    nchw = predict("resnet50", "a100-sxm4-80gb", **kw)
    nhwc = predict("resnet50", "a100-sxm4-80gb", memory_format="channels_last", **kw)
    assert nhwc.iteration_time_s < nchw.iteration_time_s  # the conversions are gone
    assert nhwc.parallel is None and nhwc.assumptions["activation_layout"] == "nhwc"
    assert nchw.assumptions["software_stack"] == "pytorch-cuda12"
    # CUDA-core work reads NCHW as it is: fp32 on a V100 and a network without convolutions do not move
    for net, hw, dt in (("resnet50", "v100-sxm2", "fp32"), ("bert_base", "a100-sxm4-80gb", "bf16")):
        a = predict(net, hw, batch=8, dtype=dt).iteration_time_s
        assert predict(net, hw, batch=8, dtype=dt, memory_format="channels_last").iteration_time_s == a
    # data parallel: the single-device baseline runs the same layout as the replicas
    dp = predict("resnet50", "dgx-a100", devices=8, memory_format="channels_last", **kw)
    one = predict("resnet50", "dgx-a100", devices=1, memory_format="channels_last", **kw)
    assert dp.parallel["single_device_time_s"] == pytest.approx(one.iteration_time_s)


def test_channels_last_where_it_changes_nothing_says_so():
    for hw, dt in (("amd-epyc-2c-kvm", "fp32"), ("v100-sxm2", "fp32")):
        p = predict("alexnet", hw, batch=8, dtype=dt, memory_format="channels_last")
        assert any("changes nothing here" in w and hw in w for w in p.warnings)
        assert p.iteration_time_s == predict("alexnet", hw, batch=8, dtype=dt).iteration_time_s
    assert not any("memory_format" in w for w in predict("alexnet", "v100-sxm2", batch=8, dtype="fp16",
                                                          memory_format="channels_last").warnings)


def test_serve_takes_the_memory_format():
    from perfmodel.serving import serve

    a = serve("resnet50", "a100-sxm4-80gb", [32], dtype="bf16")
    b = serve("resnet50", "a100-sxm4-80gb", [32], dtype="bf16", memory_format="channels_last")
    assert b.points[0].latency_s < a.points[0].latency_s and b.to_dict()["memory_format"] == "channels_last"
    with pytest.raises(Exception, match="memory_format must be one of contiguous, channels_last"):
        serve("resnet50", "a100-sxm4-80gb", [32], memory_format="nhwc")


def test_a_1d_convolution_converts_even_channels_last():
    """channels_last reorders 4-D tensors only: a Conv1d (H = R = 1 here) still pays cuDNN's conversions."""
    c1 = _arr(dict(N=32, C=64, H=1, W=512, K=128, R=1, S=5, pad_h=0, pad_w=2, stride_h=1, stride_w=1))
    want = 2 * 2 * (32 * 64 * 512 + 128 * 64 * 5 + 32 * 128 * 512) / 100e9 + 3 * 5e-6
    for stack in (NCHW, NHWC):
        assert float(layout_conversion_s(c1, "fp16", TOY, stack)[0]) == pytest.approx(want)
    assert float(layout_conversion_s(_arr(CONV), "fp16", TOY, NHWC)[0]) == 0.0
