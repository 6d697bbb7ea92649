"""PyTorch's CPU RNN/GRU as the CPU software stack lists their per-step kernels (engine.cpu_stack): element counts,
FLOPs and bytes against hand-computed values, the switch from stack data, the LSTM untouched, monotonicity."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.engine.cpu_stack import GRAIN_SIZE, check_steps, one_core
from perfmodel.engine.rates import device_rates
from perfmodel.errors import InputError
from perfmodel.graph.io import NetworkBuilder
from perfmodel.hardware import load_hardware
from perfmodel.kernels import load_stack
from perfmodel.ops.base import op_cost
from perfmodel.ops.recurrent import CellShape, step_elements, step_works
from perfmodel.prediction import predict

CPU = "epyc-9654"


def _net(cell: str, t: int = 16, f: int = 32, hidden: int = 48, layers: int = 1):
    b = NetworkBuilder("r", "test")
    b.input("x", shape=[t, f])
    b.layer(cell, "rnn", hidden=hidden, layers=layers)
    b.dense("head", units=4)
    b.softmax_cross_entropy("loss")
    return b.build()


def _layer(dev, g, batch=64, threads=1):
    rows = predict(g, dev, batch=batch, threads=threads, optimizer="sgd").layers
    return next(r for r in rows if r.op in ("rnn", "gru", "lstm"))


def test_step_elements_and_works_hand_values():
    sh = CellShape(batch=64, hidden=48, gates=3, cell="gru")
    assert [step_elements(sh, w) for w in ("h", "g", "w", "b")] == [3072, 9216, 144 * 48, 144]
    works = step_works(sh, {"add@h": 5, "sigmoid.backward@h": 2, "copy@g": 1, "add@w": 1}, steps=16, b=4)
    by = {op + str(n): w for op, n, w in works}
    add = by["add3072"]  # 5 adds per step over [64, 48], 16 steps: 80 dispatches, 1 FLOP, 2 reads, 1 write
    assert (add.kernels, add.flops, add.bytes_read, add.bytes_written) == (80, 80 * 3072, 80 * 3072 * 8, 80 * 3072 * 4)
    sb = by["sigmoid.backward3072"]  # dy * y * (1 - y): 3 FLOPs, reads dy and y
    assert (sb.kernels, sb.flops, sb.bytes_read) == (32, 32 * 3072 * 3, 32 * 3072 * 8)
    assert by["copy9216"].flops == 0 and by["copy9216"].bytes_written == 16 * 9216 * 4
    assert by["add6912"].kernels == 16  # dW_hh accumulated every step


def test_stack_lists_and_validation():
    s = load_stack("pytorch-cpu").cpu_rnn_steps
    assert set(s) == {"gru", "rnn_tanh", "rnn_relu"}  # the LSTM is oneDNN's fused primitive: not listed
    assert s["gru"]["forward"]["sigmoid@h"] == 2 and s["gru"]["forward"]["tanh@h"] == 1  # GRUCell, RNN.cpp
    check_steps(s)
    with pytest.raises(InputError, match="cpu_rnn_steps.gru"):
        check_steps({"gru": {"forward": {"exp@h": 1}}})
    with pytest.raises(InputError, match="widths"):
        check_steps({"gru": {"forward": {"add@z": 1}}})


def test_cell_shape_is_carried_and_gpu_ignores_it():
    c = op_cost(_net("gru")["rnn"], 64, 4)
    cells = [w for w in c.forward + c.backward_weight if w.efficiency_key == "elementwise/rnn-cell"]
    assert {w.shape for w in cells} == {CellShape(64, 48, 3, "gru")}
    assert op_cost(_net("rnn")["rnn"], 8, 4).forward[2].shape.cell == "rnn_tanh"
    gpu = load_hardware("v100-sxm2")  # GPU stacks have no cpu_rnn_steps: rows as before
    assert device_rates(gpu, "fp32").cpu_stack is None


def test_switch_is_data_and_lstm_untouched():
    dev = load_hardware(CPU)
    bare = dev.model_copy(update={"software_stack": None})
    for cell in ("gru", "rnn"):
        g = _net(cell)
        assert _layer(dev, g).time_s != _layer(bare, g).time_s
        # per-step kernels each pay a dispatch: more launches than one fused gate kernel per step
        assert _layer(dev, g).time_s["forward"] > _layer(bare, g).time_s["forward"]
    g = _net("lstm")
    assert _layer(dev, g).time_s == _layer(bare, g).time_s


def test_small_kernels_run_on_one_core():
    r = device_rates(load_hardware(CPU), "fp32", 2)
    one = one_core(r)
    assert r.thread_factor > 1 and one.vector_flops == pytest.approx(r.vector_flops / r.thread_factor)
    assert one.bandwidth_Bps == r.bandwidth_Bps  # the per-thread-count bandwidth curve holds small kernels already
    assert GRAIN_SIZE == 32768 and one_core(device_rates(load_hardware(CPU), "fp32", 1)).vector_flops == \
        pytest.approx(device_rates(load_hardware(CPU), "fp32", 1).vector_flops)


@settings(max_examples=12, deadline=None)
@given(cell=st.sampled_from(["gru", "rnn"]), batch=st.sampled_from([1, 16, 256]), threads=st.sampled_from([1, 2]),
       k=st.floats(1.0, 8.0))
def test_more_flops_and_bandwidth_never_slower(cell, batch, threads, k):
    dev = load_hardware(CPU)
    fast = dev.model_copy(update={"peak_flops": {n: v * k for n, v in dev.peak_flops.items()},
                                  "memory_bandwidth_Bps": dev.memory_bandwidth_Bps * k})
    g = _net(cell, layers=2)
    base, more = _layer(dev, g, batch, threads), _layer(fast, g, batch, threads)
    for stage in ("forward", "backward_data", "backward_weight"):
        assert math.isfinite(base.time_s[stage]) and base.time_s[stage] >= 0
        assert more.time_s[stage] <= base.time_s[stage] * (1 + 1e-9)
    assert base.time_s["total"] > 0


def test_recurrent_weight_gradient_runs_per_step():
    """dW_ih stays one GEMM per layer-direction, dW_hh is one GEMM per step (K = batch): 1 + 16 dispatches for a
    one-layer GRU over 16 steps, with the same FLOPs as the ops' row."""
    from perfmodel.engine.worktime import row_times, work_table

    dev = load_hardware(CPU)
    c = op_cost(_net("gru")["rnn"], 64, 4)
    t = work_table([c], [["gru", "gru.backward", "gru.backward"]], [[None] * 3])
    j = next(i for i, (k, s) in enumerate(zip(t.keys, t.stage)) if k == "rnn/gemm" and s == 2 and t.shapes[i].m == 144)
    assert t.flops[j] == 2 * 64 * 16 * 144 * (32 + 48)  # dW_ih + dW_hh of the ops' row
    r = device_rates(dev, "fp32", 1)
    w = row_times(t, r)
    assert w["overhead"][j] == pytest.approx((1 + 16) * r.overhead_s)
    bare = row_times(t, device_rates(dev.model_copy(update={"software_stack": None}), "fp32", 1))
    assert bare["overhead"][j] == pytest.approx(2 * r.overhead_s)
