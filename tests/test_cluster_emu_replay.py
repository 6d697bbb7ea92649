"""cluster-emu: the report is rebuilt from the stored measurements (no torch, no root), its prediction path
uses the calibrated link as data, and the gradient all-reduce matches the hand-computed ring formula."""

import json
import statistics
from pathlib import Path

import pytest

from perfmodel.hardware.schema import Link
from perfmodel.validation import cluster_emu as ce
from perfmodel.validation.registry import load_suite
from perfmodel.validation.protocol import RunOptions
from perfmodel.validation.writer import write_report

STORE = Path(__file__).resolve().parents[1] / "validation" / "measurements" / "cluster-emu.jsonl"


def _latest_run():
    recs = [json.loads(line) for line in STORE.read_text().splitlines() if line.strip()]
    run = max(r["run_id"] for r in recs)
    return run, [r for r in recs if r["run_id"] == run]


def test_replay_rebuilds_the_report_from_stored_measurements(tmp_path):
    run, recs = _latest_run()
    rep = load_suite("cluster-emu").run(RunOptions(replay=STORE))
    assert rep.run_id == run and rep.suite == "cluster-emu"
    steps = [r for r in recs if r["kind"] in ("emu_ddp_step", "emu_ps_step")]  # (plugins add rows of their own)
    mine = {r["case"] for r in steps}
    assert mine <= {c.case for c in rep.cases}
    for c in (c for c in rep.cases if c.case in mine):
        pooled = [t for r in steps if r["case"] == c.case for t in r["step_times_s"]]
        assert c.measured_s == pytest.approx(statistics.median(pooled))
        server = 1 if c.case.startswith("ps-") else 0  # a parameter server has a node of its own
        assert c.topology["nodes"] == 2 + server and c.topology["links"][0]["rate_bps"] in ce.LINKS.values()
        assert 0.2 <= c.comm_share <= 0.8  # sized so that communication is 20-80% of the step
    rows = rep.comparisons()
    assert [r.case for r in rows] == [c.case for c in rep.cases] and all(r.spread_s for r in rows)
    write_report(rep, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert all(c.case in md for c in rep.cases) and "cannot show" in md
    assert json.loads((tmp_path / "results.json").read_text())["suite"] == "cluster-emu"


def test_gradient_allreduce_is_the_ring_formula_over_the_fitted_link(tmp_path):
    dev = ce.resolve_profile(None, "cpu")
    link = Link(name="emu-test", source="test", bandwidth=100e6, latency=1e-4, efficiency=1.0)
    case = ce.EmuCase("t", "emu-mlp", 64, "emu-2g", bucket_cap_mb=25)
    p = ce.predict_case(case, dev, link, process_speed=1.0, memory_speed=1.0)
    # emu-mlp: 1024*1280+1280 + 1280*512+512 + 512*10+10 = 1,973,002 fp32 parameters = 7,892,008 bytes;
    # ring all-reduce over 2 ranks: n/B + 2 alpha per bucket -> 0.07892008 + buckets * 2e-4
    b = p.parallel["buckets"]
    assert p.parallel["gradient_sync_s"] == pytest.approx(0.07892008 + b * 2e-4, rel=1e-6)
    slower = ce.predict_case(case, dev, link.model_copy(update={"bandwidth_Bps": 50e6}), 1.0, 1.0)
    assert slower.parallel["gradient_sync_s"] > p.parallel["gradient_sync_s"] + 0.07


def test_the_emulated_node_is_one_process_share_of_this_cpu():
    dev = ce.resolve_profile(None, "cpu")
    link = Link(name="l", source="t", bandwidth=1e8, latency=1e-4, efficiency=1.0)
    cl = ce.emu_cluster(dev, link, 2, 1, process_speed=0.5, memory_speed=1.0)
    assert cl.nodes == 2 and cl.network.name == "l"
    assert cl.node.device.peak_flops["fp32"] == pytest.approx(0.5 * dev.peak_flops["fp32"])
    two = ce.emu_cluster(dev, link, 2, 2, fabric=link)  # 2 workers per node: the node is half the machine
    assert two.node.devices == 2 and two.node.device.cores == max(1, (dev.cores or 1) // 2)
    assert two.node.device.peak_flops["fp32"] == pytest.approx(dev.peak_flops["fp32"] / 2)


def test_without_root_the_suite_says_why_in_one_line(monkeypatch):
    monkeypatch.setattr(ce, "unavailable_reason", lambda: "emulated cluster needs root (network namespaces, tc)")
    with pytest.raises(ce.InputError, match="needs root") as e:
        ce.run_suite(RunOptions())
    assert "\n" not in str(e.value)


def test_readme_block_is_the_committed_report_section():
    from perfmodel.validation.cluster_emu_report import README_BEGIN, README_END, splice_readme

    root = STORE.parents[2]
    section = (root / "validation" / "reports" / "cluster-emu" / "README_SECTION.md").read_text()
    readme = (root / "README.md").read_text()
    assert section.startswith(README_BEGIN) and section.rstrip().endswith(README_END)
    assert section.rstrip("\n") in readme  # regenerate: perfmodel validate --suite cluster-emu --commit-measurements
    assert splice_readme("a\n" + README_BEGIN + "\nold\n" + README_END + "\nb", "NEW\n") == "a\nNEW\nb"
    with pytest.raises(ce.InputError, match="no cluster-emu block"):
        splice_readme("no markers", "x")
