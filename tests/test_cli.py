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


def test_predict_device_swaps_the_nodes_gpu_and_bare_devices_state_their_topology():
    out = run("predict", "resnet50", "-H", "dgx1-v100", "-n", "8", "--device", "v100-sxm2-32gb", "--json")
    assert json.loads(out)["hardware"] == "dgx1-v100[v100-sxm2-32gb]"
    out = run("predict", "resnet50", "-H", "v100-sxm2", "-n", "8")
    assert "assumed topology: 8 x v100-sxm2 in one node" in out and "implausible" not in out
    out = run("predict", "resnet50", "-H", "v100-sxm2", "-n", "64")
    assert "no built-in node holds 64 devices" in out


def test_predict_takes_the_large_model_options():
    out = json.loads(run("predict", "gpt2_small", "-H", "dgx-a100", "-n", "8", "--recompute", "full", "--zero", "1",
                         "--optimizer", "adam", "--json"))
    assert out["breakdown"]["recompute"] > 0 and out["parallel"]["zero"] == 1
    r = runner.invoke(app, ["predict", "fcn5", "-H", "dgx1-v100", "-n", "2", "--context-parallel", "2"])
    assert r.exit_code != 0 and "no attention layer" in (r.output + str(r.exception))  # cp needs a sequence model


def test_sweep_top_shows_the_fastest_rows_only():
    out = run("sweep", "resnet50", "-H", "dgx1-v100", "-n", "1,2,4,8", "-b", "32,64", "--top", "2")
    body = [l for l in out.splitlines() if l.startswith("dgx1-v100")]
    assert len(body) == 2 and body[0].split()[1:3] == ["8", "64"]
    assert "showing the 2 of highest throughput" in out


def test_plan_says_best_once_and_no_plan_is_an_error():
    out = run("plan", "gpt2_small", "-H", "dgx-a100", "-n", "8", "--top", "2")
    assert out.lower().count("best") == 1
    r = runner.invoke(app, ["plan", "gpt3_175b", "-H", "dgx-a100", "-n", "8"])
    assert r.exit_code != 0 and "no plan found" in (r.output + str(r.exception))


def test_predict_slow_worker_factor_flag():
    """--slow-worker-factor reaches the model: sync waits (k-1) x the slow worker's compute; k < 1 is refused."""
    args = ["predict", "resnet50", "--hardware", "dgx1-v100", "--devices", "8", "--json"]
    base = json.loads(runner.invoke(app, args).stdout)
    slow = json.loads(runner.invoke(app, args + ["--slow-worker-factor", "2"]).stdout)
    assert slow["iteration_time_s"] > base["iteration_time_s"] * 1.3
    bad = runner.invoke(app, args + ["--slow-worker-factor", "0.5"])
    assert bad.exit_code == 2 and "--slow-worker-factor" in bad.output
