"""cluster-emu parameter-server cases: the slow-worker and asynchronous formulas against hand-computed values, the
measured iteration of sync/async records, and the report's staleness and ordering rebuilt from the stored run."""

import json
import statistics
from pathlib import Path

import pytest

from perfmodel import predict
from perfmodel.errors import InputError
from perfmodel.parallel.sync_modes import (async_throughput, closed_network_throughput, ps_push_overlap,
                                           slow_worker_delay)
from perfmodel.validation import cluster_emu as ce
from perfmodel.validation.cluster_emu_ps import PsCase, iteration_samples

STORE = Path(__file__).resolve().parents[1] / "validation" / "measurements" / "cluster-emu.jsonl"


def test_slow_worker_delay_is_the_extra_compute():
    assert slow_worker_delay(0.1, 3.0, 4) == pytest.approx(0.2)  # (3 - 1) x 0.1 s
    assert slow_worker_delay(0.1, 3.0, 1) == 0.0  # nobody to wait for
    with pytest.raises(InputError, match="slow_worker_factor"):
        slow_worker_delay(0.1, 0.5, 2)


def test_closed_network_one_and_two_classes_by_hand():
    # one worker: no queueing, 1 / (Z + 2 D)
    assert closed_network_throughput(1, 0.1, 0.05) == pytest.approx(1 / 0.2)
    # a fast (Z = 0.1) and a slow (Z = 0.2) worker, D = 0.05 per station:
    # alone: X_f = 1/0.2, Q = 0.25; X_s = 1/0.3, Q = 1/6. Together: fast R = 0.05 (1 + 1/6) per station,
    # X_f = 1 / (0.1 + 2 x 0.058333) = 4.61538; slow R = 0.05 x 1.25, X_s = 1 / (0.2 + 0.125) = 3.07692
    assert closed_network_throughput(2, 0.1, 0.05, 0.1) == pytest.approx(1 / (0.1 + 0.1 * 7 / 6) + 1 / 0.325)
    # queueing costs: below the sum of the lone rates, and never above the servers' rate 1 / D
    assert closed_network_throughput(2, 0.1, 0.05, 0.1) < 1 / 0.2 + 1 / 0.3
    assert closed_network_throughput(64, 0.1, 0.05) < 20.0


def test_ps_push_overlap_by_hand():
    # 8 MB gradients, 2 workers, one server, 100 MB/s links: together 2 x 0.08 s, alone 0.08 s -> 0.08 s overlap
    assert ps_push_overlap(8e6, 2, 1, 1e8, 1e8) == pytest.approx(0.08)
    assert ps_push_overlap(8e6, 4, 2, 1e8, 1e8) == pytest.approx(0.16 - 0.08)  # 4 n / (2 B) - n / B
    assert ps_push_overlap(8e6, 1, 1, 1e8, 1e8) == 0.0
    # servers much faster than a worker's link: nothing to overlap
    assert ps_push_overlap(8e6, 2, 1, 1e8, 1e10) == 0.0


def test_async_rates_add_up_with_a_slow_worker_when_servers_are_idle():
    # servers far from busy (D = 1e-6 s): throughput = (N - 1) / step + 1 / (step + extra)
    r = async_throughput(3, 0.2, 1e3, 1e9, slow_extra_s=0.2)
    assert r["updates_per_s"] == pytest.approx(2 / 0.2 + 1 / 0.4, rel=1e-4)
    assert r["worker_bound_updates_per_s"] == pytest.approx(12.5) and r["staleness"] == 2
    with pytest.raises(InputError):
        async_throughput(2, 0.2, 1e3, 1e9, slow_extra_s=-1.0)


def _pred(batch=256, **kw):
    dev = ce.resolve_profile(None, "cpu")
    cl = ce.emu_cluster(dev, ce.Link(name="l", source="t", bandwidth=118e6, latency=3e-4, efficiency=1.0), 2, 1,
                        1.0, 1.0)
    return predict(ce.network_from_dict(ce.EMU_MLP), cl, batch=batch, devices=2, threads=1, optimizer="sgd",
                   layers=False, **kw)


def test_slow_worker_factor_in_predict():
    base, k2, k3 = (_pred(slow_worker_factor=k) for k in (1.0, 2.0, 3.0))
    assert base.breakdown["straggler"] == 0 and k2.breakdown["straggler"] > 0
    # synchronous: (k - 1) x the same work, so linear in k
    assert k3.iteration_time_s - base.iteration_time_s == pytest.approx(2 * (k2.iteration_time_s - base.iteration_time_s))
    a1, a2 = (_pred(sync="async", allreduce="ps", slow_worker_factor=k) for k in (1.0, 2.0))
    assert a1.iteration_time_s < a2.iteration_time_s  # async loses less than sync: the rates add up
    assert a2.iteration_time_s - a1.iteration_time_s < k2.iteration_time_s - base.iteration_time_s
    with pytest.raises(InputError, match="slow_worker_factor"):
        _pred(slow_worker_factor=0.5)
    # synchronous parameter server: the fast worker's push (n / B = 7,892,008 / 118e6 s) runs while the slow one
    # computes, so the wait is (k - 1) x work less that push
    ring_wait = _pred(1024, slow_worker_factor=2.0).breakdown["straggler"]
    ps_wait = _pred(1024, allreduce="ps", overlap=False, slow_worker_factor=2.0).breakdown["straggler"]
    assert ring_wait > 7892008 / 118e6 and ps_wait == pytest.approx(ring_wait - 7892008 / 118e6, rel=1e-9)


def test_iteration_samples_sync_is_the_slowest_async_adds_rates():
    sync = PsCase("s", "sync", "emu-mlp", 8, "emu-1g")
    w = [{"rank": 1, "stamps": [[0, 1], [1, 3]]}, {"rank": 2, "stamps": [[0, 2], [2, 3]]}]
    assert iteration_samples(sync, w) == [2, 2]
    asy = PsCase("a", "async", "emu-mlp", 8, "emu-1g")
    w = [{"rank": 1, "stamps": [[0, 1], [1, 2], [2, 3]]}, {"rank": 2, "stamps": [[0, 2], [2, 4]]}]
    # pushers stop at 3 s (rank 1) -> rank 2's second step is cut; step 0: 2 / (1/1 + 1/2)
    assert iteration_samples(asy, w) == [pytest.approx(2 / 1.5)]
    mixed = PsCase("m", "mixed", "emu-mlp", 8, "emu-1g", ranks_per_node=2)
    assert mixed.placement() == [0, 1, 1, 2, 2] and mixed.pushers == 2 and mixed.spec().nodes == 3


def test_replay_reports_staleness_and_ordering_of_the_stored_run():
    recs = [json.loads(x) for x in STORE.read_text().splitlines() if x.strip()]
    run = max(r["run_id"] for r in recs)
    ps = [r for r in recs if r["run_id"] == run and r["kind"] == "emu_ps_step"]
    if not ps:
        pytest.skip("the latest stored run has no parameter-server case")
    rep = ce.report_from_measurements(STORE)
    by = {c.case: c for c in rep.cases}
    for name in {r["case"] for r in ps}:
        c, spec = by[name], PsCase(**next(r["case_spec"] for r in ps if r["case"] == name))
        st = [s for r in ps if r["case"] == name for s in r["staleness"]]
        if spec.mode == "sync":
            assert c.staleness_measured is None and c.staleness_predicted is None
        else:
            assert c.staleness_measured == pytest.approx(statistics.mean(st))
            assert c.staleness_predicted == spec.pushers - 1
    rows = rep.ordering()
    assert [(a, b) for a, b, *_ in rows] == [(a, b) for a, b, _ in ce.PAIRS if a in by and b in by]
    for a, b, _, m, p, same in rows:
        assert m == pytest.approx(by[a].throughput(True) / by[b].throughput(True))
        assert same == ((m > 1) == (p > 1))
