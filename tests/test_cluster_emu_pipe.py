"""cluster-emu pipeline and input-pipeline cases: the 1F1B round-trip bound, the stage cut the workers run, the
schedules' op order, step times from rank end times, the network-path CPU, the emulated source as storage, the
never-cached network storage, the replay of stored rows, and the file server leaving nothing behind."""

import json
import os
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest

from perfmodel.dataflow import IO_QUEUE_DEPTH, data_flow
from perfmodel.hardware.schema import Link, Storage
from perfmodel.parallel.interleaved import interleaved_timing
from perfmodel.parallel.pipeline import round_trip_cycle, schedule_time
from perfmodel.validation import cluster_emu_input as ci
from perfmodel.validation import cluster_emu_net as netemu
from perfmodel.validation import cluster_emu_pipe as cp

STORE = Path(__file__).resolve().parents[1] / "validation" / "measurements" / "cluster-emu.jsonl"


def test_round_trip_bound_of_1f1b_by_hand():
    assert round_trip_cycle([3.0, 4.0], [1.0], 2) == pytest.approx(4.5)  # (3 + 4 + 2 x 1) / 2
    # c = (3, 4), x = 1, m = 4: max(c, x) = 4 < (7 + 2) / 2 = 4.5 -> 3 x 4.5 + 7 + 2
    t = schedule_time([1.0, 2.0], [2.0, 2.0], [1.0], 4, "1f1b")
    assert t.total_s == pytest.approx(22.5)
    assert t.exposed_transfer_s == pytest.approx(2.0 + 3 * 0.5)
    # without transfers the bound is sum c / pp <= max c: the old formula, 3 x 4 + 7
    assert schedule_time([1.0, 2.0], [2.0, 2.0], [0.0], 4, "1f1b").total_s == pytest.approx(19.0)
    # GPipe keeps every micro-batch in flight: unchanged, 3 x (max(1, 2, 1) + max(2, 2, 1)) + 7 + 2
    assert schedule_time([1.0, 2.0], [2.0, 2.0], [1.0], 4, "gpipe").total_s == pytest.approx(21.0)
    # one micro-batch: no steady state
    assert schedule_time([1.0, 2.0], [2.0, 2.0], [1.0], 1, "1f1b").total_s == pytest.approx(9.0)
    # interleaved with v = 1 is the same schedule
    b = interleaved_timing([1.0, 2.0], [2.0, 2.0], [1.0], 4, 1)
    assert b.total_s == pytest.approx(22.5)


def test_stage_graphs_cut_the_chain_after_the_models_first_stage():
    s0, s1, shape = cp.stage_graphs(cp.EMU_PIPE, 5)  # x fc1 relu1 fc2 relu2 | fc3 ...
    assert [l["name"] for l in s0["layers"]] == ["x", "fc1", "relu1", "fc2", "relu2"]
    assert s1["layers"][0] == {"op": "input", "name": "boundary", "shape": [512]} and shape == [512]
    assert [l["name"] for l in s1["layers"][1:]] == [l["name"] for l in cp.EMU_PIPE["layers"][5:]]
    for bad in (1, len(cp.EMU_PIPE["layers"])):
        with pytest.raises(ValueError):
            cp.stage_graphs(cp.EMU_PIPE, bad)


def test_schedule_orders():
    pytest.importorskip("torch")
    from perfmodel.torch.pipe_workers import schedule_order  # the worker module imports torch

    assert schedule_order("gpipe", 0, 2, 3) == [("F", 0), ("F", 1), ("F", 2), ("B", 0), ("B", 1), ("B", 2)]
    assert schedule_order("1f1b", 0, 2, 3) == [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)]
    assert schedule_order("1f1b", 1, 2, 3) == [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)]


def test_step_times_are_the_slowest_ranks_intervals():
    assert cp.step_times([[1.0, 2.5, 3.0], [1.2, 2.0, 3.5]]) == pytest.approx([1.2, 1.5, 1.5])


def test_network_cpu_by_hand():
    case = cp.PipeCase("t", "emu-pipe", 1024, 8, "1f1b", "emu-1g")
    pred = SimpleNamespace(parallel={"stages": [{"layers": ["x", "relu2"]}]}, iteration_time_s=0.1)
    link = Link(name="l", source="t", bandwidth=1e8, latency=0.0, efficiency=1.0)
    # micro-batch 128 x 512 fp32 = 262,144 B per transfer, 2.62144 ms at 100 MB/s; 8 per direction = 20.97152 ms
    assert cp.transfer_share(pred, case, link) == pytest.approx(0.2097152)
    assert cp.network_cpu_s(case, pred, link, (1.0, 1.5)) == pytest.approx(1.5 * 0.02097152)
    gpipe = cp.PipeCase("t", "emu-pipe", 1024, 8, "gpipe", "emu-1g")  # one direction after the other
    assert cp.network_cpu_s(gpipe, pred, link, (1.0, 1.5)) == pytest.approx(2 * 0.02097152)


def test_emulated_source_as_storage_by_hand():
    rec = {"link": "emu-500m", "small_s": [0.001, 0.003, 0.001], "sample_s": [0.011, 0.012, 0.010],
           "sample_bytes": 1048576, "created_utc": "t"}
    st = ci.source_storage(rec)
    assert st.type == "network" and st.latency_s == pytest.approx(0.001)
    assert st.read_bandwidth_Bps == pytest.approx(1048576 / 0.010)


def test_network_storage_is_never_page_cached():
    net = Storage(name="n", type="network", read_bandwidth=1e8, latency=1e-3, source="t")
    kw = dict(compute_s=0.0, node_samples=4, group_bytes=0, group_link_Bps=1, bytes_per_sample=1e6, storage=net,
              dataset_bytes=1e6 * 48, host_memory_bytes=8e9, prefetch=False)
    df = data_flow(**kw)  # 48 MB fit in 8 GB of RAM, but a remote source is read every epoch
    assert df.ram_hit_fraction == 0.0
    assert df.io_s == pytest.approx(4 * 1e6 / 1e8 + 4 * 1e-3)  # 0.044 s: no prefetch, one read at a time
    pf = data_flow(**{**kw, "prefetch": True})  # loader workers: IO_QUEUE_DEPTH reads in flight
    assert pf.io_s == pytest.approx(4 * 1e6 / 1e8 + 4 * 1e-3 / IO_QUEUE_DEPTH)  # 0.041 s
    local = data_flow(**{**kw, "storage": net.model_copy(update={"type": "nvme"})})
    assert local.ram_hit_fraction == 1.0 and local.io_s == 0.0


def _latest_run_rows():
    recs = [json.loads(line) for line in STORE.read_text().splitlines() if line.strip()]
    mine = [r for r in recs if r.get("kind") in (cp.KIND, ci.KIND)]
    if not mine:
        pytest.skip("no stored pipeline/input measurements yet")
    run = max(r["run_id"] for r in mine)
    return run, [r for r in recs if r["run_id"] == run]


def test_replay_rebuilds_pipeline_and_input_rows_from_stored_measurements():
    run, recs = _latest_run_rows()
    dev, fits, ps, ms, _ = cp.run_context(STORE, run)
    rows = cp.report_rows(recs, dev, fits, ps, ms) + ci.report_rows(recs, dev)
    kinds = {r["case"]: r for r in recs if r.get("kind") in (cp.KIND, ci.KIND)}
    assert {row.case for row in rows} == set(kinds)
    for row in rows:
        pooled = [t for r in recs if r.get("case") == row.case and r.get("kind") in (cp.KIND, ci.KIND)
                  for t in r["step_times_s"]]
        assert row.measured_s == pytest.approx(statistics.median(pooled))
        assert len(row.round_medians_s) == 2 and row.topology["nodes"] == 2
        assert row.predicted_s > 0 and row.spread_s[0] <= row.measured_s <= row.spread_s[1]
    for row in rows:
        if row.case in cp.CASE_NAMES:  # sized so that the link carries activations 20-80% of the step
            assert 0.2 <= row.comm_share <= 0.8, row.case
            # the workers ran the cut the model predicts
            assert row.communication["stage0_layers_predicted"] == kinds[row.case]["stage_layers"][0], row.case

REASON = netemu.unavailable_reason()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_file_server_and_namespaces_leave_nothing_behind():
    before = ({n for n in netemu.list_netns() if not n.startswith(netemu.PREFIX)}, netemu.list_links())
    assert ci._with_server("emu-2g", []) == []
    after = ({n for n in netemu.list_netns() if not n.startswith(netemu.PREFIX)}, netemu.list_links())
    assert after == before
    assert not [n for n in netemu.list_netns() if n.startswith(f"{netemu.PREFIX}{os.getpid()}")]
