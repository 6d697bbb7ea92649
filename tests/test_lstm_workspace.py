"""The fused LSTM's buffers on a CPU (the pytorch-cpu stack's cpu_lstm_workspace, engine.heap): mapped workspaces
faulted every step against hand-computed values, heap-sized ones kept as heap memory, the whole workspace in the
memory estimate, and the schema's checks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from perfmodel.engine.heap import heap_saved, layer_heap_arrays, lstm_workspace_s
from perfmodel.engine.rates import device_rates
from perfmodel.graph.io import NetworkBuilder
from perfmodel.hardware import load_hardware
from perfmodel.kernels import load_stack
from perfmodel.kernels.schema import LstmWorkspace
from perfmodel.prediction import predict
from perfmodel.step import graph_costs

MiB = 2**20
CALIBRATED = "amd-epyc-2c-kvm"


def _lstm(steps: int, width: int, hidden: int, layers: int = 1):
    b = NetworkBuilder("l")
    b.input("x", shape=[steps, width])
    b.layer("lstm", "rnn", hidden=hidden, layers=layers, return_sequences=False)
    b.dense("fc", units=10)
    b.softmax_cross_entropy("loss")
    return b.build()


def test_stack_block_is_read_and_checked():
    ws = load_stack("pytorch-cpu").cpu_lstm_workspace
    assert ws is not None and ws.forward_units + ws.backward_units <= ws.units
    with pytest.raises(ValidationError, match="exceed"):
        LstmWorkspace(units=5, forward_units=4, backward_units=2, scratch_units=1, source="x")


def test_mapped_workspace_is_faulted_every_step_by_hand():
    """Batch 256, 96 steps, hidden 120: one unit is 256 x 96 x 120 x 4 = 11.8 MB, the workspace 15.6 units (184 MB,
    mapped), the gates' gradient 4 units (47 MB, mapped): forward 5 units, backward 4.3 + 4 units, at the
    calibrated per-thread fresh cost; and the layer keeps no heap bytes for them (only its input)."""
    dev = load_hardware(CALIBRATED)
    g = _lstm(96, 32, 120)
    costs = graph_costs(g, 256, 4)
    r = device_rates(dev, "fp32", 1)
    unit = 256 * 96 * 120 * 4
    got = lstm_workspace_s(costs, r)
    i = [l.name for l in g.layers].index("rnn")
    assert got[i] == pytest.approx([5.0 * unit * r.fresh_s_per_byte, 0.0, 8.3 * unit * r.fresh_s_per_byte])
    assert not np.delete(got, i, axis=0).any()
    saved, _, _ = layer_heap_arrays(g, dev, costs)  # memory: the input autograd keeps and the whole workspace
    assert saved[i] == pytest.approx(256 * 96 * 32 * 4 + 15.6 * unit)
    assert heap_saved(saved, costs, r)[i] == pytest.approx(256 * 96 * 32 * 4)  # the heap: the workspace is mapped


def test_small_workspace_is_heap_memory_the_layer_keeps():
    """Batch 32, 16 steps, hidden 64, 2 layers: a unit is 131 kB, the workspace 2 MB (heap): nothing mapped, and the
    layer keeps its input plus 2 x (5 + 4.3) units instead of the ops' reserve."""
    dev = load_hardware(CALIBRATED)
    g = _lstm(16, 8, 64, layers=2)
    costs = graph_costs(g, 32, 4)
    r = device_rates(dev, "fp32", 2)
    assert lstm_workspace_s(costs, r) is None
    saved, _, _ = layer_heap_arrays(g, dev, costs)
    i = [l.name for l in g.layers].index("rnn")
    unit = 32 * 16 * 64 * 4
    assert saved[i] == pytest.approx(32 * 16 * 8 * 4 + 2 * 15.6 * unit)  # memory: both whole workspaces
    assert heap_saved(saved, costs, r)[i] == pytest.approx(32 * 16 * 8 * 4 + 2 * 9.3 * unit)  # their written part
    half = heap_saved(saved / 2, costs, r, saved)  # a rank holding half of each layer: half of the heap part
    assert half[i] == pytest.approx((32 * 16 * 8 * 4 + 2 * 9.3 * unit) / 2)


def test_gpu_and_datasheet_devices_have_no_lstm_workspace_cost():
    g = _lstm(96, 32, 120)
    costs = graph_costs(g, 256, 4)
    for name in ("v100-sxm2", "epyc-9654"):
        dev = load_hardware(name)
        assert lstm_workspace_s(costs, device_rates(dev, "fp32", 2 if name == "epyc-9654" else None)) is None


def test_the_faults_are_in_the_prediction_and_the_breakdown_adds_up():
    dev = load_hardware(CALIBRATED)
    no_fresh = dev.model_copy(update={"traits": dev.traits.model_copy(update={"fresh_buffer_s_per_byte": None})})
    g = _lstm(96, 32, 120)
    a = predict(g, dev, batch=256, threads=2, optimizer="sgd")
    b = predict(g, no_fresh, batch=256, threads=2, optimizer="sgd")
    ra, rb = (next(x for x in p.layers if x.name == "rnn") for p in (a, b))
    unit, per = 256 * 96 * 120 * 4, device_rates(dev, "fp32", 2).fresh_s_per_byte
    from perfmodel.engine.heap import heap_refault_s
    costs = graph_costs(g, 256, 4)
    saved, output, is_input = layer_heap_arrays(g, dev, costs)
    r2 = device_rates(dev, "fp32", 2)
    heap = heap_refault_s(heap_saved(saved, costs, r2), output, is_input, r2)
    i = [l.name for l in g.layers].index("rnn")  # its forward: the mapped part plus the heap refaults it keeps
    assert ra.time_s["forward"] - rb.time_s["forward"] == pytest.approx(5.0 * unit * per + heap[i], rel=1e-6)
    assert ra.time_s["backward_weight"] - rb.time_s["backward_weight"] == pytest.approx(8.3 * unit * per, rel=1e-6)
    assert a.assumptions["heap_refault_s"] >= 13.3 * unit * per * (1 - 1e-9)
    assert sum(a.breakdown.values()) == pytest.approx(a.iteration_time_s, rel=1e-12)
    gpu = predict(g, "v100-sxm2", batch=256)  # memory counts oneDNN's whole workspace on the CPU, the ops' reserve on a GPU
    # the ops' reserve: gates (4 units) and h, c (1 each) per step
    assert a.memory.activations_bytes - gpu.memory.activations_bytes == pytest.approx((15.6 - 6) * unit)
