"""`perfmodel validate --suite cpu-quick` end to end through the CLI: one tiny case, two steps, on CPU.

Predicts with a built-in profile (the calibrated one of the machine running the tests is not
assumed), measures with PyTorch, appends to a temporary JSONL file and writes a report folder.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
from typer.testing import CliRunner  # noqa: E402

from perfmodel.cli import app  # noqa: E402

pytestmark = pytest.mark.torch


def test_cpu_quick_one_case_through_the_cli(tmp_path):
    data = tmp_path / "m.jsonl"
    report = tmp_path / "report"
    r = CliRunner().invoke(app, ["validate", "--suite", "cpu-quick", "--case", "mlp-b32-t1", "--steps", "2",
                                 "--warmup", "1", "--profile", "i7-3820", "--store", str(data), "--report",
                                 str(report), "--no-wait", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["suite"] == "cpu-quick" and out["profile"] == "i7-3820"
    assert len(out["cases"]) == 1
    c = out["cases"][0]
    assert c["case"] == "mlp-b32-t1" and c["threads"] == 1 and c["steps"] == 2
    assert c["predicted_s"] > 0 and c["measured_median_s"] > 0
    assert c["error_pct"] == pytest.approx(100 * (c["predicted_s"] - c["measured_median_s"]) / c["measured_median_s"])
    assert out["summary"]["n"] == 1
    # the measurement was appended, with the case in its notes
    from perfmodel.torch.measure import load_measurements

    ms = load_measurements(data)
    assert len(ms) == 1 and ms[0].steps == 2 and "case=mlp-b32-t1" in ms[0].notes
    assert (report / "report.md").exists() and (report / "results.json").exists()
    assert "median absolute error" in (report / "report.md").read_text()


def test_unknown_suite_and_bad_options_are_clear_errors(tmp_path):
    r = CliRunner().invoke(app, ["validate", "--suite", "nope"])
    assert r.exit_code != 0 and "unknown suite" in r.output
    r = CliRunner().invoke(app, ["validate", "--suite", "cpu-quick", "--device", "tpu"])
    assert r.exit_code != 0 and "--device" in r.output
    r = CliRunner().invoke(app, ["validate", "--suite", "cpu-quick", "--case", "no-such-case", "--profile", "i7-3820",
                                 "--store", str(tmp_path / "x.jsonl"), "--no-wait"])
    assert r.exit_code != 0
    assert "no case" in str(r.exception) or "no case" in r.output


def test_gpu_suite_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = CliRunner().invoke(app, ["validate", "--suite", "gpu", "--profile", "v100-sxm2", "--store",
                                 str(tmp_path / "g.jsonl"), "--no-wait"])
    assert r.exit_code != 0
    assert "CUDA" in (str(r.exception) + r.output)


class _Disturbed:
    """Interference as if other processes kept half a core busy during every measurement."""

    others_cores, available = 0.5, True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _one_case(tmp_path, buf, wait: bool):
    from perfmodel.validation.suites import run_suite

    return run_suite("cpu-quick", profile="i7-3820", cases=["mlp-b32-t1"], steps=1, warmup=0, rounds=1,
                     measurements_path=tmp_path / "m.jsonl", progress=buf, wait_for_idle=wait)


def test_no_wait_says_only_what_happened(tmp_path, monkeypatch):
    """--no-wait measures once: no "measuring again", no "after 3 attempts", no "waited for an idle moment"."""
    import io

    import perfmodel.validation.suites as suites

    monkeypatch.setattr(suites, "Interference", _Disturbed)
    monkeypatch.setattr(suites, "QUIET_LOAD", -1.0)  # as if the machine were loaded: the load note is written
    buf = io.StringIO()
    res = _one_case(tmp_path, buf, wait=False)
    text = buf.getvalue() + "\n".join(res.notes)
    assert res.cases[0].attempts == 1
    assert "measuring again" not in text and "attempts" not in text and "waited for an idle" not in text
    assert "--no-wait" in "\n".join(res.notes)


def test_waiting_measurement_says_what_it_waits_for_and_repeats_disturbed_ones(tmp_path, monkeypatch):
    import io

    import perfmodel.validation.suites as suites

    def fake_wait(min_idle, max_wait_s, interval_s=1.0, sustained=1, on_wait=None):
        on_wait(0.4, 12.0)
        return 0.9, 13.0

    monkeypatch.setattr(suites, "Interference", _Disturbed)
    monkeypatch.setattr(suites, "wait_for_quiet", fake_wait)
    buf = io.StringIO()
    res = _one_case(tmp_path, buf, wait=True)
    out = buf.getvalue()
    assert "waiting for an idle machine: 40% idle, needs 85% (12 s of at most 120 s)" in out
    assert res.cases[0].attempts == suites.MAX_ATTEMPTS
    assert out.count("measuring again") == suites.MAX_ATTEMPTS - 1  # never after the last attempt
    assert any(f"even after up to {suites.MAX_ATTEMPTS} attempts" in n for n in res.notes)


def test_measurements_go_to_the_user_data_folder_by_default(tmp_path, monkeypatch):
    from perfmodel.paths import repo_root
    from perfmodel.validation.storage import measurement_store

    tracked = repo_root() / "validation" / "measurements" / "cpu-quick.jsonl"
    before = tracked.read_bytes() if tracked.exists() else None
    monkeypatch.setenv("PERFMODEL_DATA", str(tmp_path / "data"))
    r = CliRunner().invoke(app, ["validate", "--suite", "cpu-quick", "--case", "mlp-b32-t1", "--steps", "1",
                                 "--warmup", "0", "--rounds", "1", "--profile", "i7-3820", "--no-wait", "--json"])
    assert r.exit_code == 0, r.output
    stored = tmp_path / "data" / "measurements" / "cpu-quick.jsonl"
    assert stored.is_file() and json.loads(r.output[r.output.index("{"):])["measurements_path"] == str(stored)
    assert (tracked.read_bytes() if tracked.exists() else None) == before
    assert measurement_store("cpu-quick", commit=True) == tracked


@pytest.mark.parametrize("suite, known", [("cpu-quick", "mlp-b32-t1"), ("ddp-cpu", "mlp-b64")])
def test_unknown_case_is_an_error_naming_the_known_cases(suite, known, tmp_path):
    r = CliRunner().invoke(app, ["validate", "--suite", suite, "--case", "nocase", "--profile", "i7-3820",
                                 "--store", str(tmp_path / "m.jsonl"), "--no-wait"])
    assert r.exit_code == 2
    assert "nocase" in r.output and "known cases:" in r.output and known in r.output
    assert not (tmp_path / "m.jsonl").exists()  # nothing was measured


def test_list_shows_every_registered_suite():
    from perfmodel.validation.registry import SUITES

    r = CliRunner().invoke(app, ["validate", "--list"])
    assert r.exit_code == 0
    assert all(name in r.output for name in SUITES)
    assert "measured" in r.output and "published" in r.output
