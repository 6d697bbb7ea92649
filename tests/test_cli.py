"""The CLI: human output, --json keys documented in the README, listings."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from perfmodel.cli import app

runner = CliRunner()


def run(*args):
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, (r.output, r.exception)
    return r.output


def test_predict_prints_breakdown():
    out = run("predict", "resnet50", "--hardware", "v100-sxm2", "--batch", "64")
    for needle in ("iteration time", "breakdown", "compute-bound kernels", "memory-bound kernels", "memory:",
                   "bottleneck:", "top 5 layers"):
        assert needle in out


def test_predict_json_keys():
    d = json.loads(run("predict", "resnet50", "--hardware", "v100-sxm2", "--batch", "64", "--json"))
    for k in ("iteration_time_s", "throughput_samples_per_s", "breakdown", "memory", "stages", "flops", "bottleneck"):
        assert k in d
    assert "layers" not in d
    assert {"total_bytes", "fits", "max_batch"} <= set(d["memory"])
    assert abs(sum(d["breakdown"].values()) - d["iteration_time_s"]) <= 1e-9 * d["iteration_time_s"]
    d2 = json.loads(run("predict", "resnet50", "--hardware", "v100-sxm2", "--layers", "--json"))
    assert len(d2["layers"]) == 176 and {"name", "op", "time_s", "flops", "bound"} <= set(d2["layers"][0])


def test_predict_cpu_threads_and_layers_table():
    out = run("predict", "fcn5", "--hardware", "i7-3820", "--threads", "8", "--layers")
    assert "8 threads" in out and "hyper-threads add no speed" in out
    assert "fc" in out and "bound" in out


def test_show_json_keys():
    d = json.loads(run("show", "resnet50", "--json"))
    assert d["name"] == "ResNet-50" or d["name"]
    assert d["params"] == 25_557_032
    assert 2 * 4.0e9 < d["flops"]["forward"] < 2 * 4.2e9
    assert d["flops"]["backward"] > d["flops"]["forward"]
    assert d["activation_bytes"] > 0 and len(d["layers"]) == 176


def test_listings():
    out = run("networks")
    assert "resnet50" in out and "gpt2_small" in out
    d = json.loads(run("hardware", "--json"))
    names = {h["name"] for h in d}
    assert {"v100-sxm2", "i7-3820", "pcie4-x16", "nvme-pcie4"} <= names
    assert "device" in run("hardware", "--kind", "device")
