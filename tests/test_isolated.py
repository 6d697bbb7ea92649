"""perfmodel.torch.isolated: a training step measured in a fresh process (the allocator's state of a new script)."""

import pytest

from perfmodel.errors import InputError
from perfmodel.graph.io import load_network, network_to_dict, save_network
from perfmodel.validation.cpu_random_nets import draw_net


@pytest.mark.parametrize("index,kind", [(0, "cnn"), (1, "transformer"), (2, "rnn"), (3, "mixture")])
def test_the_child_rebuilds_the_same_graph(tmp_path, index, kind):
    """The parent hands the graph over as a flat network file: loading it back gives the same layers."""
    g = draw_net(4242, index, kind).graph
    back = load_network(save_network(g, tmp_path / "n.yaml", flat=True))
    assert network_to_dict(back, flat=True) == network_to_dict(g, flat=True)
    assert [l.name for l in back.layers] == [l.name for l in g.layers]


def test_measures_in_a_fresh_process():
    pytest.importorskip("torch")
    from perfmodel.torch.isolated import PROCESS_NOTE, measure_isolated

    g = draw_net(4242, 1, "mlp").graph
    m = measure_isolated(g, 4, threads=1, warmup=1, steps=2, optimizer="sgd", per_layer=True)
    assert m.network == g.name and m.batch == 4 and m.threads == 1
    assert len(m.step_times_s) == 2 and all(t > 0 for t in m.step_times_s)
    assert PROCESS_NOTE in m.notes
    assert {l.name for l in m.per_layer} <= {l.name for l in g.layers} and m.per_layer


def test_a_failing_child_is_a_clear_error():
    pytest.importorskip("torch")
    from perfmodel.torch.isolated import measure_isolated

    g = draw_net(4242, 1, "mlp").graph
    with pytest.raises(InputError, match="fresh process failed.*optimizer"):
        measure_isolated(g, 4, threads=1, warmup=0, steps=1, optimizer="no-such-optimizer")


def test_measurements_note_the_page_faults_of_their_timed_steps():
    """Every CPU measurement records the minor page faults per timed step (getrusage), the allocator's trims and
    fresh maps that a fresh process pays: a non-negative count in the notes."""
    pytest.importorskip("torch")
    from perfmodel.torch.measure import FAULTS_NOTE, measure_training

    m = measure_training(draw_net(4242, 1, "mlp").graph, 4, threads=1, warmup=1, steps=2)
    got = [n for n in m.notes if n.startswith(FAULTS_NOTE + "=")]
    assert len(got) == 1 and int(got[0].split("=")[1]) >= 0


def test_channels_last_measurement_runs_nhwc_in_the_child():
    """memory_format reaches the child: the module's 4-D weights are NHWC there and the note says so; an unknown
    format is a clear error."""
    pytest.importorskip("torch")
    from perfmodel.torch.isolated import measure_isolated
    from perfmodel.torch.measure import measure_training

    g = draw_net(4242, 0, "cnn").graph
    m = measure_isolated(g, 2, threads=1, warmup=0, steps=1, memory_format="channels_last")
    assert "memory_format=channels_last" in m.notes and len(m.step_times_s) == 1
    assert "memory_format=channels_last" not in measure_isolated(g, 2, threads=1, warmup=0, steps=1).notes
    with pytest.raises(InputError, match="unknown memory format 'nhwc'"):
        measure_training(g, 2, threads=1, warmup=0, steps=1, memory_format="nhwc")


def test_gpu_suite_measures_its_cnns_also_channels_last():
    from perfmodel.validation.suites import GPU

    cl = [c for c in GPU.cases if c.memory_format == "channels_last"]
    assert cl and all(c.kind.startswith("cnn") and c.dtype == "bf16" and c.name.endswith("-cl") for c in cl)
    assert len({c.name for c in GPU.cases}) == len(GPU.cases)
