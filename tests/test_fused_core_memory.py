"""Which attention layers keep their core (scores, probabilities, mask) in memory: engine.rates.fused_core_saved."""

import pytest

from perfmodel.engine.rates import fused_core_saved
from perfmodel.graph.io import NetworkBuilder
from perfmodel.hardware.loader import load_hardware
from perfmodel.memory import memory_footprint
from perfmodel.ops.base import graph_costs

B, T, D, H = 4, 64, 128, 4


def _graph(dropout: float):
    b = NetworkBuilder("att")
    b.input("x", shape=[T, D])
    b.attention("att", heads=H, dropout=dropout)
    return b.build()


def _core_bytes(dropout: float) -> float:
    """ops.attention: probabilities B*H*T*T fp32, plus the dropout mask (1 byte) and the dropped probabilities."""
    s = B * H * T * T
    return s * 4 + (s * (1 + 4) if dropout > 0 else 0)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_cpu_flash_drops_the_core_only_without_dropout(dropout):
    cpu = load_hardware("epyc-9654")  # pytorch-cpu stack: the flash kernel refuses dropout (math path keeps the core)
    costs = graph_costs(_graph(dropout), B, 4)
    got = fused_core_saved(cpu, costs)
    assert got[1] == (_core_bytes(dropout) if dropout == 0 else 0.0)
    assert got[0] == 0.0


def test_gpu_flash_drops_the_core_with_dropout_too():
    gpu = load_hardware("a100-sxm4-80gb")  # pytorch-cuda12: flash attention with dropout
    costs = graph_costs(_graph(0.1), B, 4)
    assert fused_core_saved(gpu, costs)[1] == _core_bytes(0.1)


def test_memory_of_a_cpu_attention_layer_with_dropout_keeps_its_core():
    cpu = load_hardware("epyc-9654")
    with_drop = memory_footprint(_graph(0.1), cpu, B).activations_bytes
    without = memory_footprint(_graph(0.0), cpu, B).activations_bytes
    # without dropout the flash kernel keeps none of the core; with it the math path keeps probabilities, mask
    # and dropped probabilities: the difference is the whole core of the dropout layer
    assert with_drop - without == pytest.approx(_core_bytes(0.1), rel=1e-9)
