"""The DLBench 2016 replication: factors fitted on FCN-5 rows only, thread scaling, every row predicted."""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pytest

from perfmodel.validation import dlbench
from perfmodel.validation.dlbench import (
    DEVICE_CLASSES, FIT_NETWORK, load_published, predict_published, run_dlbench, write_report,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result():
    return run_dlbench(None)


@pytest.fixture(scope="module")
def published():
    return load_published()


def _factors(rows):
    _, factors = predict_published(rows)
    return {k: f.factor for k, f in factors.items()}


def _scaled(rows, pick, scale):
    return tuple(r.model_copy(update={"value": r.value * scale}) if pick(r) else r for r in rows)


def test_committed_table_is_the_published_one(published):
    path = ROOT / "validation" / "published" / "dlbench_2016.csv"
    assert path.is_file()
    shared = ROOT.parent / "shared" / "published" / "dlbench_2016.csv"
    if shared.is_file():
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(shared.read_bytes()).digest()
    # the unquoted commas of the desktop FCN table's source text are parsed, not lost
    assert len(published) == 179
    assert {r.framework for r in published} == {"CNTK", "TF", "Torch", "Caffe", "Tensorflow"}
    assert all(r.value > 0 for r in published)


def test_every_published_row_gets_a_prediction(result, published):
    assert len(result.rows) == len(published)
    assert sorted(r.index for r in result.rows) == [p.index for p in published]
    for r in result.rows:
        assert math.isfinite(r.predicted_s) and r.predicted_s > 0
        assert r.predicted_s == pytest.approx(r.model_s * r.factor)
        assert r.signed_error_pct == pytest.approx((r.predicted_s - r.published_s) / r.published_s * 100)
    for cls in DEVICE_CLASSES:
        s = result.summary_for(cls)
        assert s is not None and s.n > 0 and s.worst_abs_error_pct >= s.median_abs_error_pct


def test_fit_rows_are_exactly_the_fcn5_rows_of_the_main_table(result):
    fit = [r for r in result.rows if r.fit_row]
    assert fit and all(r.network == FIT_NETWORK and r.table == "main" for r in fit)
    assert not any(r.network == FIT_NETWORK and r.table == "main" and not r.fit_row for r in result.rows)
    for f in result.factors:
        if f.fitted:
            mine = [r for r in fit if r.framework == f.framework and r.device_class == f.device_class]
            assert sorted(f.rows) == sorted(r.label for r in mine)
            assert f.factor == pytest.approx(math.exp(sum(math.log(r.published_s / r.model_s) for r in mine) / len(mine)))
        else:
            assert f.factor == 1.0 and f.note  # Caffe: no FCN-5 rows
    assert result.factor("Caffe", "desktop_cpu") == 1.0


def test_changing_non_fcn5_rows_changes_no_fitted_value(published):
    base = _factors(published)
    for pick in (lambda r: r.network != FIT_NETWORK,  # every other row at once
                 lambda r: r.network == "AlexNet" and r.framework == "CNTK" and r.hardware == "GTX 980",
                 lambda r: r.network == "FCN (synthetic)"):  # the desktop FCN table (same network, not fitted)
        for scale in (0.1, 7.0):
            assert _factors(_scaled(published, pick, scale)) == base


def test_changing_an_fcn5_row_changes_its_factor_only(published):
    base = _factors(published)
    pick = lambda r: r.network == FIT_NETWORK and r.framework == "CNTK" and r.hardware == "GTX 980"  # noqa: E731
    assert sum(pick(r) for r in published) == 1
    moved = _factors(_scaled(published, pick, 2.0))
    n = sum(1 for r in published if r.network == FIT_NETWORK and r.framework == "CNTK" and r.num_gpus == 1)
    assert moved[("CNTK", "gpu")] == pytest.approx(base[("CNTK", "gpu")] * 2.0 ** (1 / n))
    assert {k: v for k, v in moved.items() if k != ("CNTK", "gpu")} == \
        {k: v for k, v in base.items() if k != ("CNTK", "gpu")}


def test_csv_path_argument_and_perturbed_file(tmp_path, published):
    """run_dlbench reads an explicit CSV; a perturbed non-FCN-5 row moves only its own prediction."""
    src = ROOT / "validation" / "published" / "dlbench_2016.csv"
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if ",LSTM-64,Torch,GTX 1080," in line)
    fields = lines[target].rstrip("\r\n").split(",")
    fields[-2] = str(float(fields[-2]) * 3)
    lines[target] = ",".join(fields) + "\r\n"
    path = tmp_path / "perturbed.csv"
    path.write_text("".join(lines), encoding="utf-8")
    base, res = run_dlbench(None), run_dlbench(None, csv_path=path)
    assert [f.factor for f in res.factors] == [f.factor for f in base.factors]
    changed = [(a, b) for a, b in zip(base.rows, res.rows) if a.published_s != b.published_s]
    assert len(changed) == 1 and changed[0][0].label == "LSTM-64 / Torch / GTX 1080"
    assert changed[0][1].predicted_s == changed[0][0].predicted_s


@pytest.mark.parametrize("profile", ["i7-3820", "xeon-e5-2630v3-2s"])
def test_predicted_thread_scaling_is_flat_or_worse_past_physical_cores(result, profile):
    curves = [c for c in result.thread_curves if c.profile == profile]
    assert {c.network for c in curves} >= {"fcn5", "fcn8", "alexnet_dlbench", "lstm32", "lstm64"}
    for c in curves:
        cores = c.physical_cores
        assert c.threads[-1] == 2 * cores  # hyper-threading: two hardware threads per core
        at_cores = c.model_s[cores - 1]
        assert all(t <= a * (1 + 1e-12) for a, t in zip(c.model_s[:cores], c.model_s[1:cores])), "speeds up to cores"
        assert all(t >= at_cores * (1 - 1e-12) for t in c.model_s[cores:]), "flat or slower past the cores"
        assert c.speedup_at_cores > 1.5


def test_gpu_much_faster_than_cpu_in_the_model(result):
    ratios = [r.predicted_ratio for r in result.gpu_cpu_ratios if r.cpu_profile == "xeon-e5-2630v3-2s"]
    assert ratios and sorted(ratios)[len(ratios) // 2] > 3


def test_sensitivity_covers_half_and_double_of_every_assumption(result):
    keys = {(a.network, a.device_class) for a in result.batch_assumptions}
    for key in keys:
        scales = sorted(s.scale for s in result.sensitivity if (s.network, s.device_class) == key)
        assert scales == [0.5, 1.0, 2.0]
    fcn_gpu = [s for s in result.sensitivity if s.network == FIT_NETWORK and s.device_class == "gpu" and s.scale != 1]
    assert all(s.factors_changed for s in fcn_gpu)  # the fit moves with the FCN-5 batch assumption
    other = [s for s in result.sensitivity if s.network != FIT_NETWORK]
    assert not any(s.factors_changed for s in other)


def test_report_written_and_plotly_optional(result, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if plotly were not installed
    monkeypatch.setitem(sys.modules, "plotly.io", None)
    out = write_report(result, tmp_path / "noplot")
    assert "html" not in out
    md = (tmp_path / "noplot" / "report.md").read_text(encoding="utf-8")
    assert "Fitted framework factors" in md and "If the batch assumption is wrong" in md
    assert (tmp_path / "noplot" / "results.json").is_file()
    assert "median abs error" in (tmp_path / "noplot" / "README_SECTION.md").read_text(encoding="utf-8")


def test_report_html_with_plotly(result, tmp_path):
    pytest.importorskip("plotly")
    out = write_report(result, tmp_path)
    html = out["html"].read_text(encoding="utf-8")
    assert "<html" in html and "plotly" in html.lower()


def test_validation_package_imports_nothing_heavy():
    import importlib

    mod = importlib.import_module("perfmodel.validation")
    assert not hasattr(mod, "run_dlbench")
    assert "plotly" not in dlbench.__dict__
