"""The DLBench 2016 replication: factors and CPU thread scaling fitted on FCN-5 rows only, every row predicted."""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import pytest

from perfmodel.validation import dlbench
from perfmodel.validation.dlbench import (
    DEVICE_CLASSES, FIT_NETWORK, PENALTY_MAX, fit_thread_scaling, load_published, predict_published, run_dlbench,
    thread_scaled,
)
from perfmodel.validation.dlbench.analysis import _fit_values
from perfmodel.validation.dlbench.fit import _Model
from perfmodel.validation.writer import write_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def result():
    return run_dlbench(None)


@pytest.fixture(scope="module")
def published():
    return load_published()


@pytest.fixture(scope="module")
def model():
    return _Model()  # shared prediction cache: the tests refit many perturbed tables


def _factors(rows, model=None):
    """Every fitted value per (framework, device class): factor and thread scaling."""
    _, factors = predict_published(rows, model)
    return {k: (f.factor, f.serial_fraction, f.hyperthread_penalty, f.params) for k, f in factors.items()}


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
            assert f.factor_only == pytest.approx(
                math.exp(sum(math.log(r.published_s / r.model_device_s) for r in mine) / len(mine)))
        else:
            assert f.factor == 1.0 and f.note  # Caffe: no FCN-5 rows
    assert result.factor("Caffe", "desktop_cpu") == 1.0


def test_thread_fit_parameters_follow_the_rows(result):
    """Never more parameters than distinct thread counts; the rule of fit_thread_scaling per group."""
    by = {(f.framework, f.device_class): f for f in result.factors}
    everything = ("factor", "serial_fraction", "hyperthread_penalty")
    for fw in ("CNTK", "TensorFlow", "Torch"):
        assert by[(fw, "server_cpu")].params == everything  # 1, 8, 16, 32 threads on 16 cores
        assert by[(fw, "gpu")].params == ("factor",) and by[(fw, "gpu")].serial_fraction is None
    assert by[("CNTK", "desktop_cpu")].params == everything  # 1, 2, 8 threads on 4 cores
    assert by[("Torch", "desktop_cpu")].params == ("factor", "serial_fraction")  # 1, 2 threads: no row past the cores
    assert by[("Torch", "desktop_cpu")].hyperthread_penalty == by[("Torch", "desktop_cpu")].device_hyperthread_penalty
    caffe = by[("Caffe", "desktop_cpu")]  # no FCN-5 rows: factor 1 and the device profile
    assert caffe.params == () and caffe.serial_fraction == caffe.device_serial_fraction == 0.03
    for f in result.factors:
        if f.fitted and f.threads:
            assert len(f.params) <= len(set(f.threads))
        if f.serial_fraction is not None:
            assert 0.0 <= f.serial_fraction <= 1.0 and 0.0 <= f.hyperthread_penalty <= PENALTY_MAX
    # every CPU row is predicted with its framework's fitted thread scaling (Caffe: the device's)
    for r in result.rows:
        if r.threads is not None:
            f = by[(r.framework, r.device_class)]
            assert (r.serial_fraction, r.hyperthread_penalty) == pytest.approx((f.serial_fraction, f.hyperthread_penalty))


def test_fitted_rows_run_through_predict_with_a_copy_of_the_profile(result):
    from perfmodel.graph.io import load_network
    from perfmodel.hardware.loader import load_hardware
    from perfmodel.prediction import predict

    row = next(r for r in result.rows if r.network == "AlexNet" and r.framework == "Torch" and r.threads == 32)
    f = result.fitted("Torch", "server_cpu")
    dev = load_hardware(row.profile, kind="device")
    copy = thread_scaled(dev, f.serial_fraction, f.hyperthread_penalty)
    assert copy.thread_scaling.serial_fraction == f.serial_fraction and dev.thread_scaling.serial_fraction == 0.05
    p = predict(load_network(row.zoo_network), copy, batch=row.batch, dtype="fp32", threads=32, optimizer="sgd",
                layers=False)
    assert row.model_s == pytest.approx(p.iteration_time_s, rel=1e-12)
    assert row.predicted_s == pytest.approx(p.iteration_time_s * f.factor, rel=1e-12)
    p0 = predict(load_network(row.zoo_network), dev, batch=row.batch, dtype="fp32", threads=32, optimizer="sgd",
                 layers=False)
    assert row.model_device_s == pytest.approx(p0.iteration_time_s, rel=1e-12)
    # up to the physical cores the suite caches one prediction for every penalty: it must equal the full copy's
    for r in (x for x in result.rows if x.framework == "Torch" and x.profile == row.profile and x.threads in (1, 8, 16)
              and x.network in ("AlexNet", "LSTM-32")):
        p = predict(load_network(r.zoo_network), copy, batch=r.batch, dtype="fp32", threads=r.threads,
                    optimizer="sgd", layers=False)
        assert r.model_s == pytest.approx(p.iteration_time_s, rel=1e-12)


def test_changing_non_fcn5_rows_changes_no_fitted_value(published, model):
    base = _factors(published, model)
    assert any(v[1] is not None for v in base.values())  # thread parameters are part of what is compared
    for pick in (lambda r: r.network != FIT_NETWORK,  # every other row at once
                 lambda r: r.network == "AlexNet" and r.framework == "CNTK" and r.hardware == "GTX 980",
                 lambda r: r.network == "FCN-8" and r.hardware == "2x E5-2630 v3",  # same thread counts as the fit
                 lambda r: r.network == "FCN (synthetic)"):  # the desktop FCN table (same network, not fitted)
        for scale in (0.1, 7.0):
            assert _factors(_scaled(published, pick, scale), model) == base


def test_changing_an_fcn5_row_changes_its_group_only(published, model):
    base = _factors(published, model)
    pick = lambda r: r.network == FIT_NETWORK and r.framework == "CNTK" and r.hardware == "GTX 980"  # noqa: E731
    assert sum(pick(r) for r in published) == 1
    moved = _factors(_scaled(published, pick, 2.0), model)
    n = sum(1 for r in published if r.network == FIT_NETWORK and r.framework == "CNTK" and r.num_gpus == 1)
    assert moved[("CNTK", "gpu")][0] == pytest.approx(base[("CNTK", "gpu")][0] * 2.0 ** (1 / n))
    assert {k: v for k, v in moved.items() if k != ("CNTK", "gpu")} == \
        {k: v for k, v in base.items() if k != ("CNTK", "gpu")}
    # a CPU row past the physical cores: its group's penalty (and factor) move, nothing else
    for fw, hw, thr, key in (("Torch", "2x E5-2630 v3", 32, ("Torch", "server_cpu")),
                             ("CNTK", "i7-3820", 1, ("CNTK", "desktop_cpu"))):
        pick = lambda r: (r.network == FIT_NETWORK and r.framework[:2] == fw[:2] and r.hardware == hw  # noqa: E731
                          and r.threads == thr)
        assert sum(pick(r) for r in published) == 1
        moved = _factors(_scaled(published, pick, 1.5), model)
        assert moved[key] != base[key]
        assert {k: v for k, v in moved.items() if k != key} == {k: v for k, v in base.items() if k != key}
    pick = lambda r: r.network == FIT_NETWORK and r.framework == "Torch" and r.hardware == "2x E5-2630 v3" \
        and r.threads == 32  # noqa: E731
    moved = _factors(_scaled(published, pick, 1.5), model)
    assert moved[("Torch", "server_cpu")][2] > base[("Torch", "server_cpu")][2]  # a worse collapse, a larger penalty


def _amdahl(n, s, p, cores=16, base=1.0):
    sp = min(n, cores) / (1 + s * (min(n, cores) - 1))
    extra = max(0, n - cores)
    return base / (sp * (1 - p * extra / cores))


@pytest.mark.parametrize("s_true,p_true", [(0.0, 0.0), (0.3, 0.4), (0.8, 0.05), (1.0, 0.9)])
def test_fit_thread_scaling_recovers_known_parameters(s_true, p_true):
    th = (1, 8, 16, 32)
    pub = tuple(3.0 * _amdahl(n, s_true, p_true) for n in th)
    fit = fit_thread_scaling(th, pub, lambda n, s, p: _amdahl(n, s, p), 16, (0.05, 0.1))
    assert fit.params == ("serial_fraction", "hyperthread_penalty")
    assert fit.serial_fraction == pytest.approx(s_true, abs=1e-3)
    assert fit.hyperthread_penalty == pytest.approx(p_true, abs=1e-3)


def test_fit_thread_scaling_falls_back_and_clamps():
    f = lambda n, s, p: _amdahl(n, s, p, cores=4)  # noqa: E731
    one = fit_thread_scaling((2,), (1.0,), f, 4, (0.03, 0.1))
    assert one.params == () and (one.serial_fraction, one.hyperthread_penalty) == (0.03, 0.1)
    two = fit_thread_scaling((1, 2), (1.0, 0.6), f, 4, (0.03, 0.1))
    assert two.params == ("serial_fraction",) and two.hyperthread_penalty == 0.1
    assert two.serial_fraction == pytest.approx(2 * 0.6 - 1, abs=1e-3)  # speed-up 2 / (1 + s) = 1 / 0.6
    above = fit_thread_scaling((4, 8), (1.0, 2.0), f, 4, (0.03, 0.1))  # one thread count each side: penalty only
    assert above.params == ("hyperthread_penalty",) and above.serial_fraction == 0.03
    assert above.hyperthread_penalty == pytest.approx(0.5, abs=1e-3)
    superlinear = fit_thread_scaling((1, 2, 4), (1.0, 0.4, 0.2), f, 4, (0.03, 0.1))
    assert superlinear.serial_fraction == 0.0 and "serial_fraction=0" in superlinear.at_bound
    faster = fit_thread_scaling((1, 4, 8), (1.0, 0.25, 0.1), f, 4, (0.03, 0.1))  # hyper-threads helped: clamp to flat
    assert faster.hyperthread_penalty == 0.0 and faster.at_bound
    collapse = fit_thread_scaling((1, 4, 8), (1.0, 0.25, 100.0), f, 4, (0.03, 0.1))
    assert collapse.hyperthread_penalty == pytest.approx(PENALTY_MAX)


def test_leave_one_out_and_before_after(result):
    assert result.leave_one_out
    for l in result.leave_one_out:
        group = next(f for f in result.factors if f.framework == l.framework and f.profile == l.profile)
        rest = list(group.threads)
        rest.remove(l.threads)
        assert l.params[0] == "factor" and len(l.params) <= len(set(rest))  # never more parameters than thread counts
        assert l.signed_error_pct == pytest.approx((l.predicted_s - l.published_s) / l.published_s * 100)
    for cls in DEVICE_CLASSES:
        assert result.summary_for(cls, factor_only=True) is not None
    for r in result.rows:
        f = result.fitted(r.framework, r.device_class)
        assert r.predicted_factor_only_s == pytest.approx(r.model_device_s * f.factor_only)
        if r.device_class == "gpu" or r.framework == "Caffe":
            assert r.predicted_s == pytest.approx(r.predicted_factor_only_s)  # the thread fit only touches CPU rows


def test_factor_only_method_is_the_previous_one(published, model):
    rows, factors = predict_published(published, model, thread_fit=False)
    _, fitted = predict_published(published, model)
    for k, f in factors.items():
        assert f.factor == pytest.approx(fitted[k].factor_only)
        assert f.params in ((), ("factor",))
    assert all(r.model_s == r.model_device_s for r in rows)


def test_csv_path_argument_and_perturbed_file(tmp_path, published, result):
    """run_dlbench reads an explicit CSV; a perturbed non-FCN-5 row moves only its own prediction."""
    src = ROOT / "validation" / "published" / "dlbench_2016.csv"
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    target = next(i for i, line in enumerate(lines) if ",LSTM-64,Torch,GTX 1080," in line)
    fields = lines[target].rstrip("\r\n").split(",")
    fields[-2] = str(float(fields[-2]) * 3)
    lines[target] = ",".join(fields) + "\r\n"
    path = tmp_path / "perturbed.csv"
    path.write_text("".join(lines), encoding="utf-8")
    base, res = result, run_dlbench(None, csv_path=path)
    assert [_fit_values(f) for f in res.factors] == [_fit_values(f) for f in base.factors]
    changed = [(a, b) for a, b in zip(base.rows, res.rows) if a.published_s != b.published_s]
    assert len(changed) == 1 and changed[0][0].label == "LSTM-64 / Torch / GTX 1080"
    assert changed[0][1].predicted_s == changed[0][0].predicted_s


@pytest.mark.parametrize("profile", ["i7-3820", "xeon-e5-2630v3-2s"])
def test_predicted_thread_scaling_is_flat_or_worse_past_physical_cores(result, profile):
    """For the device profile and for every framework's fitted copy of it, on every network."""
    curves = [c for c in result.thread_curves if c.profile == profile]
    fitted = {f.framework for f in result.factors if f.profile == profile and set(f.params) - {"factor"}}
    assert fitted and {c.framework for c in curves} == {""} | fitted
    for fw in {""} | fitted:
        assert {c.network for c in curves if c.framework == fw} >= {"fcn5", "fcn8", "alexnet_dlbench", "lstm32", "lstm64"}
    for c in curves:
        cores = c.physical_cores
        assert c.threads[-1] == 2 * cores  # hyper-threading: two hardware threads per core
        at_cores = c.model_s[cores - 1]
        assert all(t <= a * (1 + 1e-12) for a, t in zip(c.model_s[:cores], c.model_s[1:cores])), "speeds up to cores"
        assert all(t >= at_cores * (1 - 1e-12) for t in c.model_s[cores:]), "flat or slower past the cores"
        assert c.past_cores_ratio >= 1 - 1e-12
        if not c.framework:
            assert c.speedup_at_cores > 1.5
    # and the rows themselves: for each fitted (framework, network) series, the predicted time past the cores
    for s in result.published_scaling:
        if s.profile == profile and s.predicted_past_cores_ratio is not None:
            assert s.predicted_past_cores_ratio >= 1 - 1e-12


def test_gpu_much_faster_than_cpu_in_the_model(result):
    ratios = [r.predicted_ratio for r in result.gpu_cpu_ratios if r.cpu_profile == "xeon-e5-2630v3-2s"]
    assert ratios and sorted(ratios)[len(ratios) // 2] > 3


def test_sensitivity_covers_half_and_double_of_every_assumption(result):
    keys = {(a.network, a.device_class) for a in result.batch_assumptions}
    for key in keys:
        scales = sorted(s.scale for s in result.sensitivity if (s.network, s.device_class) == key)
        assert scales == [0.5, 1.0, 2.0]
    fcn = [s for s in result.sensitivity if s.network == FIT_NETWORK and s.scale != 1]
    assert {s.device_class for s in fcn} == set(DEVICE_CLASSES)
    assert all(s.factors_changed for s in fcn)  # the fit moves with the FCN-5 batch assumption
    other = [s for s in result.sensitivity if s.network != FIT_NETWORK]
    assert not any(s.factors_changed for s in other)


def test_report_written_and_plotly_optional(result, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if plotly were not installed
    monkeypatch.setitem(sys.modules, "plotly.io", None)
    out = write_report(result, tmp_path / "noplot")
    assert "html" not in out
    md = (tmp_path / "noplot" / "report.md").read_text(encoding="utf-8")
    assert "Fitted parameters and the rows they came from" in md and "If the batch assumption is wrong" in md
    assert "before -> after" in md and "Overfitting" in md
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


@pytest.mark.parametrize("content", [None, b"\x00\x01binary\xff", b"\xff\xfeh\x00i\x00", b"a,b\n1,2,3\nfoo",
                                     b"", b"source,network,framework,hardware,threads,num_gpus,metric,value,unit\n"
                                          b"x,FCN-5,CNTK,toaster,1,0,time_per_minibatch,0.1,s\n"])
def test_data_file_that_is_not_the_table_is_a_one_line_error(content, tmp_path):
    """`validate --suite dlbench-2016 --data FILE`: missing, binary, UTF-16, garbage, empty or foreign rows."""
    from typer.testing import CliRunner

    from perfmodel.cli import app

    f = tmp_path / "table.csv"
    if content is not None:
        f.write_bytes(content)
    r = CliRunner().invoke(app, ["validate", "--suite", "dlbench-2016", "--data", str(f)])
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "table.csv" in lines[0], r.output
    assert "Traceback" not in r.output
