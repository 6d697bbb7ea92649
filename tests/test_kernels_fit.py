"""Kernel-model fit mechanics: per-dtype fractions, shared clock factors of a GPU kind, held-out constants."""

from __future__ import annotations

import pytest
import yaml

from perfmodel.kernels import Achievable, GemmTile, GpuArch, SoftwareStack
from perfmodel.kernels.fit import BOOSTING, by_dtype, clock_key, held_out_clock, held_out_memory
from perfmodel.kernels.gemm import gemm_compute_s
from perfmodel.kernels.rnn import step_s
from perfmodel.kernels.writeback import achievable_lines

# Toy GPU: 10 SMs x 128 FLOPs/clock x 1 GHz = 128 GFLOP/s per SM, 100 GB/s
TOY = GpuArch(name="toy", family="test", source="test", sm_count=10, boost_clock="1 GHz",
              flops_per_clock_per_sm={"fp32": 128}, memory_bandwidth="100 GB/s", l2_cache="1 MiB")
T128 = GemmTile(m=128, n=128, threads=256, thread_m=8, thread_n=8, ctas_per_sm=1)
HALF = "fp16_io_fp32_math"
ACH = Achievable(compute={"gemm": 1.0, "rnn": 1.0, "conv_fwd": 1.0}, memory_bandwidth=1.0,
                 kernel_overhead="0 us", rnn_memory_bandwidth=0.5,
                 by_dtype={HALF: {"conv_fwd": 0.25, "rnn_memory_bandwidth": 0.02}})
STACK = SoftwareStack(name="toy", libraries="test", source="test", gemm_tiles=(T128,), split_k=False,
                      achievable=ACH)


def test_dtype_fraction_overrides_only_its_own_class_and_dtype():
    assert ACH.fraction("conv_fwd", HALF) == 0.25
    assert ACH.fraction("conv_fwd", "fp32") == 1.0 and ACH.fraction("conv_fwd") == 1.0
    assert ACH.fraction("rnn", HALF) == 1.0  # not listed for the dtype: the general value
    assert ACH.rnn_bandwidth(HALF) == 0.02 and ACH.rnn_bandwidth("fp32") == 0.5
    with pytest.raises(ValueError, match="by_dtype.fp16: unknown keys"):
        Achievable(by_dtype={"fp16": {"pooling": 0.5}})


def test_dtype_fraction_by_hand_in_gemm_and_rnn_step():
    # one 128x128 tile, K=1000 on one SM: 2*128*128*1000 FLOPs at 128 GFLOP/s x 0.25 (conv_fwd of pseudo-FP16)
    t = gemm_compute_s(128, 128, 1000, HALF, TOY, STACK, cls="conv_fwd")
    assert t == pytest.approx(2 * 128 * 128 * 1000 / (128e9 * 0.25))
    assert gemm_compute_s(128, 128, 1000, "fp32", TOY, STACK, cls="conv_fwd") == pytest.approx(t / 4)
    # recurrent step [1280, 1024] x [1024, 8]: 10 CTAs of 128x128, one per SM: 2*128*128*1024 FLOPs per SM.
    # pseudo-FP16: DRAM bound, 2-byte elements at 2% of 100 GB/s; fp32: 4 bytes at 50% is faster than the math
    mem = 2 * (1280 * 1024 + 1024 * 8 + 1280 * 8) / (100e9 * 0.02)
    assert step_s(1280, 8, 1024, HALF, TOY, STACK) == pytest.approx(mem)
    assert step_s(1280, 8, 1024, "fp32", TOY, STACK) == pytest.approx(2 * 128 * 128 * 1024 / 128e9)


def test_fit_names_per_dtype_parameters_and_writes_them_back():
    p = {"conv_fwd@cuda8-cudnn6/fp16_io_fp32_math": 0.4, "rnn_memory_bandwidth@cuda8-cudnn6/fp16_io_fp32_math": 0.06,
         "conv_fwd@cuda8-cudnn6": 0.9, "conv_fwd@other/fp16_io_fp32_math": 0.7}
    assert by_dtype(p, "cuda8-cudnn6") == {HALF: {"conv_fwd": 0.4, "rnn_memory_bandwidth": 0.06}}
    assert by_dtype(p, "cuda75-cudnn5") == {}
    full = {f"{c}@s": 0.5 for c in ("gemm", "gemm_tn", "conv_fwd", "conv_bwd_data", "conv_bwd_filter", "winograd",
                                    "winograd_bwd_data", "winograd_bwd_filter", "fft", "rnn", "rnn_memory_bandwidth")}
    full.update({"kernel_overhead_s@s": 1e-5, "conv_overhead_s@s": 3e-5, "thin_gemm_bandwidth@s": 0.2,
                 "rnn_step_overhead_s@s": 2e-5, "cta_overhead_k": 32, "mem:a": 0.8, "rnn@s/fp16_io_fp32_math": 0.3})
    block = yaml.safe_load("\n".join(achievable_lines(full, "s", "test")))["achievable"]
    got = Achievable.model_validate(block)
    assert got.fraction("rnn", HALF) == 0.3 and got.fraction("rnn") == 0.5
    assert got.conv_overhead_s == pytest.approx(3e-5) and got.thin_gemm_bandwidth == 0.2
    plain = yaml.safe_load("\n".join(achievable_lines(full, "s", "test", dtypes=False)))["achievable"]
    assert "by_dtype" not in plain


def test_clock_is_shared_by_a_gpu_kind_and_held_out_gpus_take_their_kind():
    BOOSTING.update({"geforce-a": True, "geforce-b": True, "tesla-a": False})
    assert clock_key("geforce-a") == clock_key("geforce-b") == "clock:boost"
    assert clock_key("tesla-a") == "clock:rated"
    assert held_out_clock({"clock:boost": 1.08, "clock:rated": 0.98}, "geforce-b") == 1.08
    assert held_out_clock({"clock:boost": 1.08}, "tesla-a") == 1.08  # no GPU of its kind fitted: the mean


def test_held_out_dram_fraction_comes_from_the_same_family():
    class Ctx:
        archs = {"m1": TOY.model_copy(update={"family": "maxwell"}), "m2": TOY.model_copy(update={"family": "maxwell"}),
                 "p1": TOY.model_copy(update={"family": "pascal"})}

    p = {"mem:m1": 0.6, "mem:p1": 1.0}
    assert held_out_memory(Ctx(), p, "m2") == 0.6
    Ctx.archs["v1"] = TOY.model_copy(update={"family": "volta"})
    assert held_out_memory(Ctx(), p, "v1") == pytest.approx(0.8)  # no Volta fitted: mean of all


def test_cudnn_tile_heuristic_covers_the_filters_whatever_the_waves():
    from perfmodel.kernels.gemm import covering_tile_m

    assert list(covering_tile_m([1, 32, 33, 64, 65, 128, 2048], (128, 64, 32, 1))) == [1, 32, 64, 64, 128, 128, 128]
    t64 = GemmTile(m=64, n=128, threads=128, thread_m=8, thread_n=8, ctas_per_sm=1)
    # 128 filters x 640 pixels, K=1000 on 10 SMs: the 128x128 tile makes 5 CTAs (one round of 2*128*128*1000 FLOPs
    # on 5 SMs); the fastest choice, 64x128, makes 10 CTAs of half the work in one round
    fastest = gemm_compute_s(128, 640, 1000, "fp32", TOY, STACK, tiles=(T128, t64))
    covered = gemm_compute_s(128, 640, 1000, "fp32", TOY, STACK, tiles=(T128, t64), cover_m=True)
    assert fastest == pytest.approx(2 * 64 * 128 * 1000 / 128e9)
    assert covered == pytest.approx(2 * 128 * 128 * 1000 / 128e9)
    assert gemm_compute_s(64, 640, 1000, "fp32", TOY, STACK, tiles=(T128, t64), cover_m=True) == pytest.approx(
        2 * 64 * 128 * 1000 / 128e9)  # 64 filters: the 64-high tile, 5 CTAs in one round


def test_leave_one_gpu_out_reports_each_fit_and_predicts_every_held_out_row():
    from perfmodel.kernels.deepbench import load_rows
    from perfmodel.kernels.fit import Context, leave_one_gpu_out

    rows = [r for r in load_rows() if r.cls == "gemm" and r.shape["M"] == 1760][:24]
    assert len({r.arch for r in rows}) >= 2
    said: list[str] = []
    pred, params = leave_one_gpu_out(Context.of(rows), said.append)
    assert len(said) == len(params) == len({r.arch for r in rows})
    assert all(s.startswith(f"leave-one-GPU-out {i + 1}/{len(said)}") for i, s in enumerate(said))
    assert all(a in s for a, s in zip(sorted(params), said))
    assert (pred > 0).all()
