"""Per-call costs and the thin-GEMM kernel of the GPU kernel model, by hand on a toy GPU."""

from __future__ import annotations

import pytest

from perfmodel.kernels import Achievable, GemmTile, GpuArch, SoftwareStack, load_arch, load_stack
from perfmodel.kernels.bridge import launch_free
from perfmodel.kernels.conv import conv_time_s
from perfmodel.kernels.gemm import gemm_compute_s, gemm_time_s

# 10 SMs x 128 FLOPs/clock x 1 GHz = 128 GFLOP/s per SM, 100 GB/s
TOY = GpuArch(name="toy", family="test", source="test", sm_count=10, boost_clock="1 GHz",
              flops_per_clock_per_sm={"fp32": 128}, memory_bandwidth="100 GB/s", l2_cache="1 MiB")
T128 = GemmTile(m=128, n=128, threads=256, thread_m=8, thread_n=8, ctas_per_sm=1)
ONE = Achievable(compute={"gemm": 1.0, "gemm_tn": 1.0, "conv_fwd": 1.0, "conv_bwd_data": 1.0,
                          "conv_bwd_filter": 1.0, "winograd": 1.0, "fft": 1.0, "rnn": 1.0},
                 memory_bandwidth=1.0, kernel_overhead="5 us", rnn_step_overhead="0 us", rnn_memory_bandwidth=1.0,
                 thin_gemm_bandwidth=0.25)
STACK = SoftwareStack(name="toy-stack", libraries="test", source="test", gemm_tiles=(T128,), split_k=False,
                      thin_gemm_max_n=16, achievable=ONE)
RATE_SM = 128e9


def test_thin_gemm_streams_at_its_own_fraction_of_dram():
    # M=12800, K=10000: A is 512 MB; N=16 runs the thin kernel: bytes at 25% of 100 GB/s (20.5 ms), beyond its
    # math without tiles (4.1 GFLOP at 10 SMs x 128 GFLOP/s: 3.2 ms)
    for M, N in ((12800, 16), (16, 12800)):  # the narrower side decides, whichever it is
        nbytes = 4 * (M * 10000 + 10000 * N + M * N)
        assert nbytes / 25e9 > 2 * M * N * 10000 / (10 * RATE_SM)
        assert gemm_time_s(M, N, 10000, "fp32", TOY, STACK) == pytest.approx(5e-6 + nbytes / 25e9)
    # with 10 TB/s of DRAM the same GEMM is bound by its math (3.2 ms against 0.2 ms of traffic at 25%)
    fast = TOY.model_copy(update={"memory_bandwidth_Bps": 10e12})
    assert gemm_time_s(12800, 16, 10000, "fp32", fast, STACK) == pytest.approx(
        5e-6 + 2 * 12800 * 16 * 10000 / (10 * RATE_SM))
    # N=17 is past the limit: the regular kernel, DRAM at the full fraction
    nbytes = 4 * (12800 * 10000 + 10000 * 17 + 12800 * 17)
    regular = gemm_time_s(12800, 17, 10000, "fp32", TOY, STACK)
    assert regular == pytest.approx(5e-6 + max(nbytes / 100e9, gemm_compute_s(12800, 17, 10000, "fp32", TOY, STACK)))
    # no thin kernel in a stack that does not name one, and none for convolution classes
    plain = STACK.model_copy(update={"thin_gemm_max_n": 0})
    nbytes = 4 * (12800 * 10000 + 10000 * 16 + 12800 * 16)
    comp = gemm_compute_s(12800, 16, 10000, "fp32", TOY, plain)  # the 128x128 tile, 7/8 of it idle
    assert gemm_time_s(12800, 16, 10000, "fp32", TOY, plain) == pytest.approx(5e-6 + max(nbytes / 100e9, comp))
    assert gemm_time_s(12800, 16, 10000, "fp32", TOY, STACK, cls="conv_fwd") == pytest.approx(
        gemm_time_s(12800, 16, 10000, "fp32", TOY, plain, cls="conv_fwd"))


def test_split_k_pays_a_reduction_kernel():
    split = STACK.model_copy(update={"split_k": True})
    # M=N=128, K=4096: 8 splits of K=512 on 8 SMs + 8 fp32 partial tiles written and read + one more launch
    t8 = 2 * 128 * 128 * 512 / RATE_SM + 2 * 8 * 128 * 128 * 4 / 100e9 + 5e-6
    assert gemm_compute_s(128, 128, 4096, "fp32", TOY, split) == pytest.approx(t8)
    # unsplit (one CTA over all of K) is slower, so the reduction's launch does not change the choice here
    assert gemm_compute_s(128, 128, 4096, "fp32", TOY, STACK) == pytest.approx(2 * 128 * 128 * 4096 / RATE_SM)


def test_a_convolution_call_pays_the_stacks_conv_overhead():
    # a 1x1 convolution: only implicit GEMM applies (one kernel), so the call's fixed cost is added once
    s = dict(N=8, C=64, H=14, W=14, K=64, R=1, S=1, pad_h=0, pad_w=0, stride_h=1, stride_w=1)
    base = conv_time_s(s, "fwd", "fp32", TOY, STACK)[0]
    heavy = STACK.with_achievable(ONE.model_copy(update={"conv_overhead_s": 50e-6}))
    assert conv_time_s(s, "fwd", "fp32", TOY, heavy)[0] == pytest.approx(base + 45e-6)
    # GEMMs keep the per-kernel overhead
    assert gemm_time_s(512, 512, 512, "fp32", TOY, heavy) == pytest.approx(gemm_time_s(512, 512, 512, "fp32", TOY,
                                                                                       STACK))


def test_launch_free_drops_every_per_call_cost():
    heavy = STACK.with_achievable(ONE.model_copy(update={"conv_overhead_s": 50e-6}))
    free = launch_free(heavy).achievable
    assert free.kernel_overhead_s == free.conv_overhead_s == free.rnn_step_overhead_s == 0.0


def test_deepbench_thin_gemm_is_slower_than_the_next_width_as_measured():
    # DeepBench, P100 with cuBLAS 8: 7680x16x2560 0.526 ms, 7680x32x2560 0.187 ms (the thin kernel is slower)
    p100, stack = load_arch("gp100-p100-pcie"), load_stack("cuda8-cudnn6")
    assert stack.thin_gemm_max_n == 16
    thin, wide = (float(gemm_time_s(7680, n, 2560, "fp32", p100, stack)) for n in (16, 32))
    assert thin > 1.5 * wide
    assert thin == pytest.approx(0.526e-3, rel=0.35) and wide == pytest.approx(0.187e-3, rel=0.35)
