"""perfmodel.planning: time-to-train and cost arithmetic, prices, compare, and the compare CLI."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from perfmodel.cli import app
from perfmodel.errors import InputError
from perfmodel.hardware.loader import load_hardware
from perfmodel.planning import (compare, example_prices, parse_duration, parse_money, parse_prices,
                                price_per_device_hour, time_to_train, training_cost)
from perfmodel.prediction import predict

from conftest import small_mlp


def _pred(batch=32, time_s=0.5, devices=1):
    p = predict(small_mlp(), "v100-sxm2", batch=batch, layers=False)
    return p.model_copy(update={"iteration_time_s": time_s, "devices": devices,
                                "throughput_samples_per_s": batch / time_s})


def test_time_to_train_arithmetic():
    p = _pred(batch=32, time_s=0.5)
    e = time_to_train(p, epochs=3, dataset_samples=1000)
    assert e.iterations_per_epoch == 32  # ceil(1000 / 32)
    assert e.iterations == 96
    assert e.time_s == pytest.approx(48.0)
    assert e.hours == pytest.approx(48.0 / 3600)
    assert e.device_hours == pytest.approx(48.0 / 3600)
    assert e.cost is None
    e = time_to_train(p, epochs=3, dataset_samples=1000, drop_last=True)
    assert e.iterations_per_epoch == 31 and e.time_s == pytest.approx(46.5)
    # fractional epochs, several devices, a price
    p8 = _pred(batch=256, time_s=0.1, devices=8)
    e = time_to_train(p8, epochs=0.5, dataset_samples=1_281_167, price_per_device_hour=2.0)
    assert e.iterations_per_epoch == math.ceil(1_281_167 / 256) == 5005
    assert e.time_s == pytest.approx(0.5 * 5005 * 0.1)
    assert e.device_hours == pytest.approx(e.time_s / 3600 * 8)
    assert e.cost == pytest.approx(e.device_hours * 2.0) == pytest.approx(training_cost(e.device_hours, 2.0))


def test_time_to_train_imagenet_example():
    # 90 epochs of ImageNet-1k at 1,000 samples/s on one device: 1,281,167 x 90 / 1000 s = 32.03 h
    p = _pred(batch=250, time_s=0.25)
    e = time_to_train(p, epochs=90, dataset_samples=1_281_167, price_per_device_hour=3.0)
    assert e.iterations_per_epoch == 5125
    assert e.hours == pytest.approx(90 * 5125 * 0.25 / 3600)
    assert e.cost == pytest.approx(e.hours * 3.0)


@pytest.mark.parametrize("bad", [dict(epochs=0, dataset_samples=10), dict(epochs=1, dataset_samples=0),
                                 dict(epochs=-1, dataset_samples=10), dict(epochs=1, dataset_samples=2.5)])
def test_time_to_train_rejects_nonsense(bad):
    with pytest.raises(InputError):
        time_to_train(_pred(), **bad)
    with pytest.raises(InputError):
        time_to_train(_pred(batch=32), epochs=1, dataset_samples=10, drop_last=True)


def test_parsers():
    assert parse_duration("24h") == 86400
    assert parse_duration("90min") == 5400
    assert parse_duration("3 days") == 3 * 86400
    assert parse_duration("2d") == 2 * 86400
    assert parse_duration("1w") == 7 * 86400
    assert parse_duration(60) == 60
    assert parse_money("$1,000") == 1000 and parse_money("2.5k") == 2500 and parse_money("12 USD") == 12
    assert parse_prices("a100=2.5,v100-sxm2=1.25") == {"a100": 2.5, "v100-sxm2": 1.25}
    assert parse_prices("3") == 3.0 and parse_prices(None) is None
    for bad in ("soon", "-1h"):
        with pytest.raises(InputError):
            parse_duration(bad)
    with pytest.raises(InputError):
        parse_money("lots")
    with pytest.raises(InputError):
        parse_prices("a100:2")


def test_prices_precedence_and_sources():
    v100 = load_hardware("v100-sxm2")
    assert price_per_device_hour(v100) == (None, "unknown")
    assert price_per_device_hour(v100, 1.5) == (1.5, "given")
    assert price_per_device_hour(v100, {"v100": 2.0}) == (2.0, "given")  # a prefix of the name
    assert price_per_device_hour(v100, {"v100": 2.0, "v100-sxm2": 3.0}) == (3.0, "given")  # exact wins
    priced = v100.model_copy(update={"price_per_hour": 0.9})
    assert price_per_device_hour(priced) == (0.9, "profile")
    table = example_prices()
    assert table, "prices/cloud_prices.yaml should hold example prices"
    for name, e in table.items():
        load_hardware(name)  # every priced name is a built-in profile
        assert e.source.startswith("http") and e.date and e.usd_per_device_hour > 0
        price, src = price_per_device_hour(name)
        assert price == e.usd_per_device_hour and src.startswith("example table")


def test_compare_flags_deadline_and_budget():
    c = compare("resnet50", ["v100-sxm2", "a100-sxm4-40gb", "k80"], devices=1, batch=32, dtype="fp16",
                epochs=1, dataset_samples=100_000, deadline_s=100.0, budget=1.0,
                price_per_hour={"v100-sxm2": 2.0, "a100": 3.0, "k80": 0.5})
    by = {r.hardware: r for r in c.rows}
    assert by["k80"].error and "fp16" in by["k80"].error  # no fp16: a row with the error, not a crash
    for name in ("v100-sxm2", "a100-sxm4-40gb"):
        r = by[name]
        p = predict("resnet50", name, batch=32, dtype="fp16", layers=False)
        assert r.iteration_time_s == p.iteration_time_s
        assert r.time_to_train_s == pytest.approx(math.ceil(100_000 / 32) * p.iteration_time_s)
        assert r.cost == pytest.approx(r.time_to_train_s / 3600 * r.price_per_device_hour)
        assert r.meets_deadline == (r.time_to_train_s <= 100.0)
        assert r.meets_budget == (r.cost <= 1.0)
    best = c.best()
    assert best is None or (best.meets_deadline and best.meets_budget)
    json.dumps(c.to_dict())


def test_compare_needs_prices_for_a_budget():
    with pytest.raises(InputError, match="price"):
        compare("resnet50", ["v100-sxm2"], epochs=1, dataset_samples=1000, budget=10)
    with pytest.raises(InputError):
        compare("resnet50", ["v100-sxm2"], deadline_s=10)


def test_compare_cli():
    run = CliRunner().invoke(app, ["compare", "resnet50", "--hardware", "v100-sxm2,a100-sxm4-40gb", "--epochs", "1",
                                   "--dataset-samples", "50000", "--deadline", "1h", "--price-per-hour", "v100=2.5"])
    assert run.exit_code == 0, run.output
    assert "time to train" in run.output and "best:" in run.output and "example table" in run.output
    run = CliRunner().invoke(app, ["compare", "resnet50", "-H", "v100-sxm2,t4", "--epochs", "2", "--dataset-samples",
                                   "1000", "--budget", "100", "--price-per-hour", "v100-sxm2=2,t4=0.5", "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.output)
    assert {r["hardware"] for r in d["rows"]} == {"v100-sxm2", "t4"}
    assert all(r["meets_budget"] is not None for r in d["rows"])
