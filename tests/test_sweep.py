"""perfmodel.sweep: rows equal single predict() calls, impossible scenarios become error rows, output formats."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from perfmodel.errors import InputError, NotFoundError
from perfmodel.prediction import predict
from perfmodel.result import BREAKDOWN_PARTS
from perfmodel.sweeps import RESULT_COLUMNS, SCENARIO_COLUMNS, ProgressBar, parse_list, prediction_row, sweep

from conftest import small_cnn, small_mlp


def _parallel_available() -> bool:
    try:
        import perfmodel.parallel.predict  # noqa: F401
    except ImportError:
        return False
    return True


def test_rows_equal_single_predictions():
    g = small_cnn()
    res = sweep(g, hardware=["v100-sxm2", "a100-sxm4-40gb", "i7-3820"], batch=[1, 16, 64], dtype=["fp32", "fp16"],
                optimizer=["sgd", "adam"])
    assert len(res) == 3 * 3 * 2 * 2
    for r in res.rows:
        try:
            p = predict(g, r["hardware"], batch=r["batch"], dtype=r["dtype"], optimizer=r["optimizer"], layers=False)
        except InputError as e:
            assert r["error"] == str(e)
            assert r["iteration_time_s"] is None
            continue
        exp = prediction_row(p)
        for k, v in exp.items():
            assert r[k] == v, (k, r)
        assert r["iteration_time_s"] == p.iteration_time_s
        assert r["throughput"] == p.throughput_samples_per_s
        assert r["global_batch"] == p.batch
        assert r["scaling_efficiency"] == 1.0
        assert sum(r[f"{k}_s"] for k in BREAKDOWN_PARTS) == pytest.approx(r["iteration_time_s"], rel=1e-9)


def test_builtin_network_rows_match_predict():
    res = sweep("resnet50", hardware="v100-sxm2", batch=[8, 32])
    for r in res.rows:
        p = predict("resnet50", "v100-sxm2", batch=r["batch"], layers=False)
        assert r["iteration_time_s"] == p.iteration_time_s
        assert r["memory_total_bytes"] == p.memory.total_bytes
        assert r["network"] == "resnet50" and r["hardware"] == "v100-sxm2"


def test_rows_in_grid_order_and_same_keys():
    res = sweep(small_mlp(), hardware=["v100-sxm2", "t4"], batch=[4, 8], dtype=["fp32", "fp16"])
    order = [(r["hardware"], r["batch"], r["dtype"]) for r in res.rows]
    assert order == [(h, b, d) for h in ("v100-sxm2", "t4") for b in (4, 8) for d in ("fp32", "fp16")]
    for r in res.rows:
        assert tuple(r) == res.columns
    assert set(SCENARIO_COLUMNS) <= set(res.columns) and set(RESULT_COLUMNS) <= set(res.columns)


def test_impossible_scenarios_are_error_rows():
    # k80 has no fp16; a huge batch does not fit; neither aborts the sweep
    res = sweep(small_cnn(), hardware=["k80", "v100-sxm2"], batch=[8, 2_000_000], dtype=["fp32", "fp16"])
    by = {(r["hardware"], r["batch"], r["dtype"]): r for r in res.rows}
    assert "fp16" in by[("k80", 8, "fp16")]["error"]
    assert by[("k80", 8, "fp16")]["throughput"] is None
    big = by[("v100-sxm2", 2_000_000, "fp32")]
    assert big["fits"] is False and big["error"].startswith("does not fit")
    assert big["iteration_time_s"] > 0  # still predicted
    assert by[("v100-sxm2", 8, "fp32")]["error"] is None
    assert len(res.ok) + len(res.errors) == len(res)
    assert res.best("throughput")["error"] is None


def test_unknown_names_and_options_raise_early():
    with pytest.raises(NotFoundError):
        sweep("no-such-net", hardware="v100-sxm2")
    with pytest.raises(NotFoundError):
        sweep(small_mlp(), hardware=["v100-sxm2", "no-such-gpu"])
    with pytest.raises(InputError):
        sweep(small_mlp(), hardware="v100-sxm2", colour="blue")


def test_price_gives_cost_columns():
    res = sweep(small_mlp(), hardware=["v100-sxm2", "t4"], batch=32, price_per_hour={"v100-sxm2": 3.0})
    v, t = res.rows
    assert v["price_per_device_hour"] == 3.0 and v["cost_per_hour"] == 3.0
    assert v["cost_per_sample"] == pytest.approx(3.0 / 3600.0 / v["throughput"])
    assert t["price_per_device_hour"] is None and t["cost_per_sample"] is None
    flat = sweep(small_mlp(), hardware="t4", batch=32, price_per_hour=1.5)
    assert flat.rows[0]["cost_per_hour"] == 1.5


def test_progress_callback_and_bar():
    calls = []
    res = sweep(small_mlp(), hardware="v100-sxm2", batch=[1, 2, 3], progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3) and len(calls) == 3 and len(res) == 3
    buf = io.StringIO()
    bar = ProgressBar(stream=buf)
    for i in range(1, 101):
        bar(i, 100)
    text = buf.getvalue()
    assert "100/100" in text and text.count("\n") <= 11


def test_csv_and_json_outputs(tmp_path):
    res = sweep(small_mlp(), hardware=["v100-sxm2", "k80"], batch=[8], dtype=["fp32", "fp16"])
    path = tmp_path / "s.csv"
    text = res.to_csv(path)
    assert path.read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4 and list(rows[0]) == list(res.columns)
    assert float(rows[0]["iteration_time_s"]) == pytest.approx(res.rows[0]["iteration_time_s"])
    d = json.loads(json.dumps(res.to_dict()))
    assert d["rows"][0]["network"] == "small-mlp" and len(d["rows"]) == 4


def test_identical_calls_are_made_once():
    # sync/allreduce do not matter at one device but the sweep still predicts each distinct call once
    res = sweep(small_mlp(), hardware="v100-sxm2", batch=[8, 8, 16])
    assert len(res) == 3 and res.predict_calls == 2
    assert res.rows[0]["iteration_time_s"] == res.rows[1]["iteration_time_s"]


def test_parse_list():
    assert parse_list("1,2,4", int) == [1, 2, 4]
    assert parse_list("1..64", int) == [1, 2, 4, 8, 16, 32, 64]
    assert parse_list("1..8,12", int) == [1, 2, 4, 8, 12]
    assert parse_list("v100-sxm2, a100-sxm4-40gb") == ["v100-sxm2", "a100-sxm4-40gb"]
    assert parse_list(None) is None
    with pytest.raises(InputError):
        parse_list("a,b", int)
    with pytest.raises(InputError):
        parse_list("8..2", int)


@pytest.mark.skipif(not _parallel_available(), reason="multi-device model (perfmodel.parallel.predict) not available")
def test_multi_device_rows_match_predict():
    g = small_cnn()
    res = sweep(g, hardware="v100-sxm2", devices=[1, 2, 4], batch=16, allreduce=["ring", "tree"])
    for r in res.rows:
        kw = {} if r["allreduce"] == "ring" else {"allreduce": r["allreduce"]}
        if r["devices"] != 1:
            kw["devices"] = r["devices"]
        try:
            p = predict(g, "v100-sxm2", batch=16, layers=False, **kw)
        except InputError as e:
            assert r["error"] == str(e)
            continue
        assert r["iteration_time_s"] == p.iteration_time_s
        assert r["throughput"] == p.throughput_samples_per_s
        base = predict(g, "v100-sxm2", batch=16, layers=False)
        eff = p.throughput_samples_per_s / (p.devices * base.throughput_samples_per_s)
        assert math.isclose(r["scaling_efficiency"], eff, rel_tol=1e-12)


def test_top_level_api_is_callable_in_any_import_order():
    import subprocess
    import sys

    for code in ("import perfmodel; r = perfmodel.sweep('fcn5', 'v100-sxm2', batch=[4, 8]); assert len(r) == 2",
                 "import perfmodel.sweeps, perfmodel; assert len(perfmodel.sweep('fcn5', 'v100-sxm2', batch=[4])) == 1",
                 "from perfmodel.sweeps import sweep; import perfmodel; assert len(perfmodel.sweep('fcn5', 't4')) == 1"):
        subprocess.run([sys.executable, "-c", code], check=True)


def test_forked_workers_give_the_same_rows():
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork on this platform")
    kw = dict(hardware=["v100-sxm2", "k80"], batch=[4, 8, 16], dtype=["fp32", "fp16"], optimizer=["sgd", "adam"])
    one = sweep(small_mlp(), workers=1, **kw)
    calls = []
    two = sweep(small_mlp(), workers=2, progress=lambda d, t: calls.append(d), **kw)
    assert two.rows == one.rows
    assert calls[-1] == len(one)


def test_every_setup_field_is_sweepable():
    res = sweep("fcn5", "dgx1-v100", devices=8, scaling=["weak", "strong"], ps_servers=[1, 2], p2p=[True, False],
                allreduce="ps", efficiency=False)
    assert len(res) == 8 and all(r["error"] is None for r in res.rows)
    t = {(r["scaling"], r["ps_servers"], r["p2p"]): r["iteration_time_s"] for r in res.rows}
    assert t[("weak", 1, True)] == predict("fcn5", "dgx1-v100", devices=8, allreduce="ps", ps_servers=1,
                                           p2p=True, layers=False).iteration_time_s
    assert t[("strong", 1, True)] < t[("weak", 1, True)]  # 32 samples in all instead of 32 per device
    r = sweep("resnet50", "v100-sxm2", storage="hdd", dataset_size=1e12, raid0=[1, 4], prefetch=False,
              efficiency=False)
    assert r.rows[0]["io_s"] > r.rows[1]["io_s"] > 0
