"""Replayed validation reports keep their figures: cpu-full, cpu-quick, ddp-cpu and dlbench-2016 re-reported
from the committed measurements (and the published table) must give the recorded predicted and measured times.

Replays need no torch (the records are torch-free). The recorded figures are in validation_replay_golden.json (case -> [predicted_s, measured_s]). A deliberate
model change regenerates them (run this file's `_replay` for each suite) and says so in its commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

GOLDEN = json.loads((Path(__file__).with_name("validation_replay_golden.json")).read_text())
# the calibrated profile the committed reports were made with, frozen (the live one is recalibrated)
PROFILE = str(Path(__file__).resolve().parent / "golden" / "frozen-amd-epyc-2c-kvm.yaml")
REL = 1e-9


def _replay(suite: str) -> dict[str, list[float]]:
    if suite == "dlbench-2016":
        from perfmodel.validation.dlbench import run_dlbench

        return {r.label: [r.predicted_s, r.published_s] for r in run_dlbench(None).rows}
    if suite == "ddp-cpu":
        from perfmodel.validation.ddp_cpu import report_from_measurements

        r = report_from_measurements("validation/measurements/ddp-cpu.jsonl", profile=PROFILE, write=False)
        return {c.case.name: [c.predicted_s, c.measured.median_s] for c in r.cases}
    from perfmodel.validation.suites import run_suite

    r = run_suite(suite, profile=PROFILE, replay=f"validation/measurements/{suite}.jsonl", progress=None)
    return {c.case.name: [c.predicted_s, c.measured_s] for c in r.cases}


@pytest.mark.parametrize("suite", sorted(GOLDEN))
def test_replayed_suite_keeps_its_figures(suite, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    got = _replay(suite)
    want = GOLDEN[suite]
    assert sorted(got) == sorted(want)
    for case, (pred, meas) in want.items():
        assert got[case][1] == pytest.approx(meas, rel=REL), f"{suite} {case}: measured"
        assert got[case][0] == pytest.approx(pred, rel=REL), f"{suite} {case}: predicted"


def test_replay_needs_no_torch():
    """The measured suites re-report from their stored records with torch unimportable."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from perfmodel.validation.suites import run_suite\n"
            "from perfmodel.validation.ddp_cpu import report_from_measurements\n"
            f"r = run_suite('cpu-quick', profile={PROFILE!r}, replay='validation/measurements/cpu-quick.jsonl', "
            "progress=None)\n"
            f"d = report_from_measurements('validation/measurements/ddp-cpu.jsonl', profile={PROFILE!r})\n"
            "print(len(r.cases), len(d.cases), r.machine['cpu_model'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:2] == [str(len(GOLDEN["cpu-quick"])), str(len(GOLDEN["ddp-cpu"]))]


def test_every_registered_suite_follows_the_protocol():
    from perfmodel.validation.protocol import Suite
    from perfmodel.validation.registry import SUITES, available

    suites = available()
    assert set(suites) == set(SUITES)
    for name, suite in suites.items():
        assert not isinstance(suite, str), suite  # every registered module imports without torch
        assert isinstance(suite, Suite) and suite.name == name and suite.help


@pytest.mark.parametrize("suite", ["cpu-quick", "ddp-cpu"])
def test_replayed_report_goes_through_the_one_writer(suite, tmp_path, monkeypatch):
    """A replayed measured suite is a SuiteReport; the shared writer writes its four files from it."""
    from perfmodel.validation.protocol import RunOptions, SuiteReport
    from perfmodel.validation.runner import run_suite_by_name

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    rep = run_suite_by_name(suite, RunOptions(replay=Path(f"validation/measurements/{suite}.jsonl"), profile=PROFILE,
                                              report_dir=tmp_path))
    assert isinstance(rep, SuiteReport)
    rows = rep.comparisons()
    assert sorted(r.case for r in rows) == sorted(GOLDEN[suite])
    assert json.loads((tmp_path / "results.json").read_text())["suite"] == suite
    assert (tmp_path / "report.md").read_text().startswith("# ") and (tmp_path / "README_SECTION.md").is_file()
