"""cpu-random suite: the generator is deterministic per seed, its networks are valid and sized into range,
the per-op-family table and summary are computed as by hand, and a report replays from stored measurements."""

from __future__ import annotations

import pytest

from perfmodel.hardware.loader import load_hardware
from perfmodel.validation.cpu_random import family_rows, layer_family
from perfmodel.validation.cpu_random_nets import (
    KINDS, STEP_RANGE_S, draw_cases, draw_net, kinds_for,
)

PROFILE = "hardware_profiles/devices/calibrated/amd-epyc-2c-kvm.yaml"


def _sig(g):
    return [(l.name, l.op, tuple(l.output_shape)) for l in g.layers]


def test_generator_is_deterministic_per_seed_and_differs_between_seeds():
    a = [draw_net(7, i, k) for i, k in enumerate(kinds_for(7, 12))]
    b = [draw_net(7, i, k) for i, k in enumerate(kinds_for(7, 12))]
    c = [draw_net(8, i, k) for i, k in enumerate(kinds_for(8, 12))]
    assert [_sig(x.graph) for x in a] == [_sig(x.graph) for x in b]
    assert [(x.optimizer, x.target_s) for x in a] == [(x.optimizer, x.target_s) for x in b]
    assert [_sig(x.graph) for x in a] != [_sig(x.graph) for x in c]
    # a case is rebuilt alone from (seed, index, kind, draw), as replay does
    assert _sig(draw_net(7, 3, a[3].kind).graph) == _sig(a[3].graph)


def test_kinds_are_balanced():
    ks = kinds_for(11, 24)
    assert sorted(set(ks)) == sorted(KINDS)
    assert all(ks.count(k) == 4 for k in KINDS)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_networks_are_valid_and_cover_the_kernel_classes(seed):
    fams: set[str] = set()
    for i, k in enumerate(kinds_for(seed, 24)):
        g = draw_net(seed, i, k).graph
        assert g.layers[0].op == "input" and g.layers[-1].op in ("softmax_cross_entropy", "mse")
        fams |= {layer_family(l) for l in g.layers}
    assert {"dense", "activation"} <= fams
    assert any(f.startswith("rnn/") for f in fams) and "attention" in fams
    assert "conv/depthwise" in fams and "conv/1x1" in fams


def test_sizes_in_range_predicted():
    dev = load_hardware(PROFILE)
    cases = draw_cases(21, dev)
    assert len(cases) == 24
    for c in cases:
        assert all(STEP_RANGE_S[0] <= t <= STEP_RANGE_S[1] for t in c.predicted_s), c.net.name
        assert c.predicted_s[1] < c.predicted_s[0]  # two threads are faster than one
    again = draw_cases(21, dev)
    assert [(c.net.name, c.batch) for c in again] == [(c.net.name, c.batch) for c in cases]


def test_layer_family_of_convolutions():
    from perfmodel.graph.io import NetworkBuilder

    b = NetworkBuilder("f")
    b.input("x", shape=[16, 8, 8])
    b.conv2d("dw", out_channels=16, kernel=3, padding=1, groups=16)
    b.conv2d("gr", out_channels=16, kernel=3, padding=1, groups=4)
    b.conv2d("pw", out_channels=32, kernel=1)
    b.conv2d("s2", out_channels=32, kernel=3, stride=2, padding=1)
    b.conv2d("c3", out_channels=32, kernel=3, padding=1)
    g = b.build()
    assert [layer_family(g[n]) for n in ("dw", "gr", "pw", "s2", "c3")] == \
        ["conv/depthwise", "conv/grouped", "conv/1x1", "conv/strided", "conv/dense"]


def test_family_rows_by_hand():
    rows = family_rows([("a", 2.0, 1.0), ("a", 1.0, 1.0), ("b", 0.5, 1.0), ("b", 1.0, 0.0)])
    assert [r.family for r in rows] == ["a", "b"]  # largest measured time first
    a, b = rows
    assert (a.layers, a.measured_s, a.predicted_s) == (2, 2.0, 3.0)
    assert a.error_pct == pytest.approx(50.0)
    assert a.median_layer_error_pct == pytest.approx(50.0)  # median of +100% and 0%
    assert (b.layers, b.error_pct) == (1, pytest.approx(-50.0))  # a zero-time layer is left out


def test_report_replays_from_stored_measurements(tmp_path):
    pytest.importorskip("torch")
    from perfmodel.torch.measure import Measurement, append_jsonl, machine_info, summarize_times
    from perfmodel.validation.cpu_random import build_report
    from perfmodel.validation.cpu_random_measure import CaseKey

    dev = load_hardware(PROFILE)
    net = draw_net(3, 0, "mlp")
    store = tmp_path / "cpu-random.jsonl"
    for rnd, times in ((1, (0.10, 0.12, 0.11)), (2, (0.20, 0.21, 0.22)), (3, (0.13, 0.50, 0.51))):
        key = CaseKey(0, 0, "mlp", 64, 1, net.optimizer)
        st = summarize_times(times)
        fields = dict(network=net.name, batch=64, device="cpu", dtype="fp32", optimizer=net.optimizer, threads=1,
                      warmup=1, steps=3, params=1, step_times_s=times, **st, samples_per_s=64 / st["median_s"],
                      created_utc="2026-01-01T00:00:00+00:00", perfmodel_version="0", machine=machine_info(1),
                      notes=("suite=cpu-random", "seed=3", f"case={key.name}", "index=0", "draw=0", "kind=mlp",
                             f"round={rnd}", "attempt=1", "other_processes_cores=0.0", "profile=x"))
        append_jsonl(store, Measurement.model_validate(fields))
    rep = build_report(3, dev, store, replayed=True)
    (c,) = rep.cases
    assert c.measured_s == pytest.approx(0.21)  # median of the round medians (the 9 pooled steps': 0.20)
    assert c.round_medians_s == (0.11, 0.21, 0.50)
    assert c.rounds_spread_pct == pytest.approx(100 * (0.50 / 0.11 - 1))
    from perfmodel.prediction import predict

    p = predict(net.graph, dev, batch=64, threads=1, optimizer=net.optimizer, layers=False)
    assert c.predicted_s == pytest.approx(p.iteration_time_s)
    assert "seed 3, 1 cases, 3 rounds each" in rep.markdown() and rep.comparisons()[0].case == c.name
