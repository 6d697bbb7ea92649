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
                                 "--warmup", "1", "--profile", "i7-3820", "--data", str(data), "--report",
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
                                 "--data", str(tmp_path / "x.jsonl"), "--no-wait"])
    assert r.exit_code != 0
    assert "no case" in str(r.exception) or "no case" in r.output


def test_gpu_suite_without_cuda_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = CliRunner().invoke(app, ["validate", "--suite", "gpu", "--profile", "v100-sxm2", "--data",
                                 str(tmp_path / "g.jsonl"), "--no-wait"])
    assert r.exit_code != 0
    assert "CUDA" in (str(r.exception) + r.output)
