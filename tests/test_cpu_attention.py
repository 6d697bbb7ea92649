"""CPU fused attention (PyTorch's cpu_flash_attention) as the CPU software stack names it: block counts, FLOPs and
bytes against hand-computed values, the fused/unfused switch from stack data, monotonicity in the device's rates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.engine.cpu_attention import chain_dims
from perfmodel.engine.rates import cpu_fused_attention, fused_attention
from perfmodel.graph.io import NetworkBuilder
from perfmodel.hardware import load_hardware
from perfmodel.kernels import load_stack
from perfmodel.kernels.schema import CpuAttention, SoftwareStack
from perfmodel.ops.attention import FLASH_SCORE_FLOPS, blocks, cpu_flash, mha_layout_cpu
from perfmodel.prediction import predict

CPU = "epyc-9654"  # a CPU profile that names the pytorch-cpu stack


def _net(t: int = 48, d: int = 64, heads: int = 2, dropout: float = 0.0):
    b = NetworkBuilder("att", "test")
    b.input("x", shape=[t, d])
    b.layer("attention", "attn", heads=heads, dropout=dropout)
    b.select("first", axis=0, index=0)
    b.dense("head", units=4)
    b.softmax_cross_entropy("loss")
    return b.build()


def _attn(dev, graph, batch=64, threads=1):
    p = predict(graph, dev, batch=batch, threads=threads, optimizer="sgd")
    return next(r for r in p.layers if r.op == "attention"), p


def test_blocks_and_query_block_rule():
    assert blocks(200, 64) == {64: 3, 8: 1}
    assert blocks(32, 512) == {32: 1}
    assert blocks(64, 32) == {32: 2}
    ca = load_stack("pytorch-cpu").cpu_attention
    # FlashAttentionKernel.cpp: 256-row query blocks from length 768, 64 from 192, else 32 (never above T)
    assert [ca.q_block(t) for t in (20, 32, 191, 192, 767, 768, 4096)] == [20, 32, 32, 64, 64, 256, 256]
    assert ca.kv_split == 512 and ca.dropout is False


def test_cpu_flash_hand_values():
    # bh = 2 heads of T = 48, dh = 16; query blocks 32 + 16, one key block of 48
    f = cpu_flash(2, 48, 16, 32, 512, 4)
    shapes = sorted((w.shape.m, w.shape.n, w.shape.k, w.shape.batch) for w in f.fwd_gemm)
    assert shapes == [(16, 16, 48, 2), (16, 48, 16, 2), (32, 16, 48, 2), (32, 48, 16, 2)]
    assert sum(w.flops for w in f.fwd_gemm) == 4 * 2 * 48 * 48 * 16  # Q K^T and P V: 294,912
    assert sum(w.flops for w in f.bwd_gemm) == 10 * 2 * 48 * 48 * 16  # recomputed Q K^T and 4 gradient GEMMs
    assert sum(w.kernels for w in f.fwd_gemm) == 2 * 2 * 2 and sum(w.kernels for w in f.bwd_gemm) == 5 * 2 * 2
    assert all(w.bytes == 0 for w in f.fwd_gemm + f.bwd_gemm)  # blocks stay in cache: no score matrix
    assert f.fwd_scores.flops == FLASH_SCORE_FLOPS * 2 * 48 * 48 == 27648  # one key block: no rescale
    x = 2 * 48 * 16  # elements of Q (= K = V = O)
    assert f.fwd_scores.bytes_read == (1 + 2 * 2) * x * 4  # Q once, K and V once per query block
    assert f.fwd_scores.bytes_written == x * 4 + 2 * 48 * 4  # O and the row log-sum-exp
    assert f.bwd_ds.flops == 2 * 2 * 48 * 48
    # two key blocks (T = 600, kv 512): the output is rescaled once per query row after the first block
    g = cpu_flash(1, 600, 8, 64, 512, 4)
    assert g.fwd_scores.flops == FLASH_SCORE_FLOPS * 600 * 600 + 600 * 8 * 1


def test_mha_layout_hand_values():
    fwd, bwd = mha_layout_cpu(100, 4)
    assert [(w.bytes_read, w.bytes_written, w.kernels) for w in fwd] == [(1200, 1200, 1), (400, 400, 1)]
    assert sum(w.kernels for w in bwd) == 3 + 6 + 3 + 2 + 1
    fills = [w for w in bwd if w.efficiency_key == "layout/fill"]
    assert [(w.bytes_written, w.allocs) for w in fills] == [(1200, (400,)), (3600, (1200,))]


def test_chain_dims_inverts_the_chain_flops():
    batch, t, d, heads = 2, 8, 16, 2
    btd = batch * t * d
    chain = 2 * btd * d + 8 * btd * t  # dCtx GEMM + the four bmm of the unfused chain (ops.attention)
    assert chain_dims(chain, t, d // heads, batch * heads) == (batch * t, d)


def test_stack_switch_is_data(tmp_path):
    dev = load_hardware(CPU)
    assert dev.software_stack == "pytorch-cpu" and fused_attention(dev) and cpu_fused_attention(dev) is not None
    bare = dev.model_copy(update={"software_stack": None})
    assert not fused_attention(bare) and cpu_fused_attention(bare) is None
    off = tmp_path / "off.yaml"
    off.write_text(load_stack("pytorch-cpu").model_copy(update={"fused_attention": False}).model_dump_json())
    unfused = dev.model_copy(update={"software_stack": str(off)})
    assert not fused_attention(unfused)
    g = _net()
    a_fused, p_fused = _attn(dev, g)
    a_bare, p_bare = _attn(bare, g)
    a_off, _ = _attn(unfused, g)
    assert a_off.time_s == a_bare.time_s  # the same stack with fused_attention false: the unfused path
    assert a_fused.time_s["forward"] != a_bare.time_s["forward"]
    # fused: no score / probability matrix saved (64 x 2 heads x 48 x 48 fp32 = 1.18 MB less)
    assert p_bare.memory.activations_bytes - p_fused.memory.activations_bytes == pytest.approx(64 * 2 * 48 * 48 * 4)


def test_dropout_runs_the_math_path():
    """The CPU flash kernel refuses dropout: the unfused rows stay (softmax and dropout not absorbed), the scores row
    also dispatches the layout copies (2) and the Q, K scaling (2): 1 + 4 kernels, each with its own dispatch."""
    from perfmodel.engine.rates import device_rates
    from perfmodel.engine.worktime import row_times, work_table
    from perfmodel.ops.base import op_cost

    dev = load_hardware(CPU)
    c = op_cost(_net(dropout=0.1)["attn"], 8, 4)
    t = work_table([c], [["attention", "attention.backward", "attention.backward"]], [[None] * 3])
    r = device_rates(dev, "fp32", 1)
    w = row_times(t, r)
    idx = {(k, int(s)): i for i, (k, s) in enumerate(zip(t.keys, t.stage))}
    assert w["overhead"][idx[("attention/scores", 0)]] == pytest.approx(5 * r.overhead_s)
    assert w["time"][idx[("elementwise/dropout", 0)]] > 0 and w["time"][idx[("elementwise/softmax/attention", 0)]] > 0
    fused = row_times(work_table([op_cost(_net()["attn"], 8, 4)], [["attention"] * 3], [[None] * 3]), r)
    assert fused["time"][2] == 0.0  # without dropout the softmax row is absorbed into the flash kernel


def test_gpu_stacks_unchanged_and_cpu_stack_validated():
    assert fused_attention(load_hardware("a100-sxm4-80gb"))
    assert cpu_fused_attention(load_hardware("a100-sxm4-80gb")) is None
    with pytest.raises(ValueError, match="gemm_tiles"):
        SoftwareStack(name="x", libraries="x", source="x")  # a GPU stack still needs tiles
    with pytest.raises(ValueError):
        CpuAttention(q_split=(), kv_split=512, source="x")


@settings(max_examples=12, deadline=None)
@given(t=st.sampled_from([16, 48, 200]), batch=st.sampled_from([1, 8, 64]), threads=st.sampled_from([1, 2]),
       k=st.floats(1.0, 8.0))
def test_more_flops_and_bandwidth_never_slower(t, batch, threads, k):
    dev = load_hardware(CPU)
    fast = dev.model_copy(update={"peak_flops": {n: v * k for n, v in dev.peak_flops.items()},
                                  "memory_bandwidth_Bps": dev.memory_bandwidth_Bps * k})
    g = _net(t=t)
    base, _ = _attn(dev, g, batch, threads)
    more, _ = _attn(fast, g, batch, threads)
    for stage in ("forward", "backward_data", "backward_weight"):
        assert math.isfinite(base.time_s[stage]) and base.time_s[stage] >= 0
        assert more.time_s[stage] <= base.time_s[stage] * (1 + 1e-9)
    assert base.time_s["total"] > 0
