"""Fuzz of bad input through the CLI, in-process (typer's CliRunner): a corpus of hand-made bad files
(tests/data/bad/, expectations in expect.json) and hypothesis-generated broken networks, profiles and options.

Every case must end in one of two ways: a clean error (exit code != 0, no traceback, a message naming the
culprit: the file or the option), or exit 0 with a finite, positive iteration time. Every case must be fast
(alias bombs and huge inputs are refused, not worked through).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from perfmodel.cli import app

BAD = Path(__file__).parent / "data" / "bad"
EXPECT = json.loads((BAD / "expect.json").read_text())
CASE_SECONDS = 10.0
FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

NETWORK = {"name": "t", "layers": [
    {"op": "input", "name": "x", "shape": [3, 8, 8]},
    {"op": "conv2d", "name": "c1", "out_channels": 4, "kernel": 3, "padding": 1},
    {"op": "maxpool2d", "name": "p", "kernel": 2},
    {"op": "batchnorm", "name": "bn"},
    {"op": "flatten", "name": "f"},
    {"op": "custom", "name": "cu", "output_shape": [64], "forward_flops_per_sample": 1.0e6, "params": 10},
    {"op": "dense", "name": "fc", "units": 10},
    {"op": "softmax_cross_entropy", "name": "loss"},
]}
DEVICE = {"kind": "device", "name": "fuzz-gpu", "type": "gpu", "source": "fuzz", "peak_flops": {"fp32": "10 TFLOPS"},
          "memory_bandwidth": "900 GB/s", "memory": "16 GB", "host_link": "pcie3-x16", "kernel_overhead": "5 us"}
BAD_VALUES = [True, False, None, "", "3", "abc", "-1", 0, -1, -(10**6), 10**400, 2**64, 1e300, -0.0, 0.5,
              float("inf"), float("-inf"), float("nan"), [], [1, 2, 3], {}, {"a": 1}, "x" * 5000, "1e999 GB",
              "$input", "warp_drive"]


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run(args: list[str]):
    """Invoke the CLI in-process; assert the outcome is a clean error or a sane prediction."""
    t0 = time.perf_counter()
    with time_limit(CASE_SECONDS):
        res = CliRunner().invoke(app, [str(a) for a in args])
    took = time.perf_counter() - t0
    out = res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
    assert "Traceback" not in out, (args, out[-2000:])
    assert took < CASE_SECONDS, (args, took)
    if res.exit_code == 0:
        assert_sane(args, res.stdout)
    else:
        assert res.exit_code == 2 or res.exit_code == 1, (args, res.exit_code, out)
        msg = out.strip()
        assert msg and len(msg.splitlines()) <= 3, (args, out)
        assert msg.startswith("error:") or msg.startswith('{"error"'), (args, out)
    return res


def assert_sane(args, stdout: str) -> None:
    """Exit 0 must mean a usable answer: a finite, positive time (and no NaN/inf anywhere in JSON)."""
    if "--json" not in args or args[0] != "predict":
        return
    data = json.loads(stdout, parse_constant=lambda c: pytest.fail(f"{c} in the JSON output of {args}"))
    t = data["iteration_time_s"]
    assert isinstance(t, (int, float)) and math.isfinite(t) and t > 0, (args, t)


def culprit_named(res, *needles: str) -> None:
    assert res.exit_code != 0
    low = res.output.lower()
    for n in needles:
        assert n.lower() in low, (n, res.output)


# ---- the hand-made corpus ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_bad_file_corpus(name):
    case = EXPECT[name]
    path = BAD / name
    args = (["predict", path, "-H", "v100-sxm2"] if case["as"] == "network" else ["predict", "fcn5", "-H", path])
    res = run(args)
    culprit_named(res, name, *case["needles"])
    res_json = run(args + ["--json"])
    err = json.loads(res_json.output.strip().splitlines()[-1])
    assert name in err["error"] and err["type"].endswith("Error")


# ---- generated broken networks and profiles ---------------------------------------------------------------


def _write(tmp_path: Path, data, as_json: bool, stem: str) -> Path:
    p = tmp_path / (stem + (".json" if as_json else ".yaml"))
    if as_json:
        p.write_text(json.dumps(data, default=str))  # json writes NaN/Infinity; the reader must refuse them
    else:
        p.write_text(yaml.safe_dump(data, allow_unicode=True))
    return p


@st.composite
def broken_network(draw):
    net = copy.deepcopy(NETWORK)
    for _ in range(draw(st.integers(1, 3))):
        layer = net["layers"][draw(st.integers(0, len(net["layers"]) - 1))]
        field = draw(st.sampled_from(sorted(set(layer) | {"op", "name", "inputs", "units", "kernel", "stride"})))
        layer[field] = draw(st.sampled_from(BAD_VALUES))
    return net


@FUZZ
@given(net=broken_network(), as_json=st.booleans())
def test_fuzz_broken_network(tmp_path, net, as_json):
    p = _write(tmp_path, net, as_json, "fuzznet")
    res = run(["predict", p, "-H", "v100-sxm2", "--json"])
    if res.exit_code != 0:
        culprit_named(res, p.name)


ZOO_BLOCKS = yaml.safe_load((Path(__file__).parent.parent / "networks" / "resnet50.yaml").read_text())


@st.composite
def broken_block_network(draw):
    """ResNet-50 as written (blocks with parameters, block uses with args and repeats), one spot broken."""
    net = copy.deepcopy(ZOO_BLOCKS)
    spots = [(e, k) for e in net["layers"] for k in e] + [(b, k) for b in net["blocks"].values() for k in b]
    spots += [(e, k) for b in net["blocks"].values() for e in b["layers"] for k in e]
    spots += [(e["args"], k) for e in net["layers"] if isinstance(e.get("args"), dict) for k in e["args"]]
    where, key = draw(st.sampled_from(spots))
    where[key] = draw(st.sampled_from(BAD_VALUES))
    return net


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(net=broken_block_network())
def test_fuzz_broken_block_network(tmp_path, net):
    p = _write(tmp_path, net, False, "fuzzblocks")
    res = run(["predict", p, "-H", "v100-sxm2", "--json"])
    if res.exit_code != 0:
        culprit_named(res, p.name)


@st.composite
def broken_device(draw):
    dev = copy.deepcopy(DEVICE)
    for _ in range(draw(st.integers(1, 2))):
        field = draw(st.sampled_from(sorted(set(dev) | {"efficiency", "price_per_hour", "cores", "runtime_reserved"})))
        value = draw(st.sampled_from(BAD_VALUES + ["1e-300 TFLOPS", "0 GB/s", "10 furlongs", "1e30 GB"]))
        if field == "peak_flops" and draw(st.booleans()):
            value = {"fp32": value}
        dev[field] = value
    return dev


@FUZZ
@given(dev=broken_device(), as_json=st.booleans())
def test_fuzz_broken_device(tmp_path, dev, as_json):
    p = _write(tmp_path, dev, as_json, "fuzzdev")
    res = run(["predict", "fcn5", "-H", p, "--json"])
    if res.exit_code != 0:
        culprit_named(res, p.name)


@FUZZ
@given(data=st.binary(min_size=1, max_size=400), suffix=st.sampled_from([".yaml", ".json"]))
def test_fuzz_random_bytes(tmp_path, data, suffix):
    p = tmp_path / ("bytes" + suffix)
    p.write_bytes(data)
    res = run(["predict", p, "-H", "v100-sxm2"])
    culprit_named(res, p.name)


# ---- options --------------------------------------------------------------------------------------------

OPTION_VALUES = ["0", "-2", "1" + "0" * 40, "1000000000", "nan", "inf", "-inf", "", ",", "1,,2", "abc", "1e999 MB",
                 "1e999TB", "-5 GB", "0 B"]
PREDICT_OPTIONS = ["--batch", "--devices", "--threads", "--nodes", "--straggler-cv", "--bucket-size",
                   "--dataset-size", "--grad-accumulation", "--raid0", "--ps-servers", "--hardware", "--dtype"]
PLAN_OPTIONS = ["--devices", "--global-batch", "--tp", "--pp", "--microbatch", "--top", "--memory-limit",
                "--price-per-hour", "--dtype"]


@FUZZ
@given(option=st.sampled_from(PREDICT_OPTIONS), value=st.sampled_from(OPTION_VALUES))
def test_fuzz_predict_options(option, value):
    args = ["predict", "fcn5", "-H", "dgx1-v100", "-n", "8", option, value, "--json"]
    if option == "--hardware":
        args = ["predict", "fcn5", option, value, "--json"]
    res = run(args)
    if res.exit_code != 0 and value not in ("abc",):
        culprit_named(res, option if option != "--hardware" else "")


@FUZZ
@given(option=st.sampled_from(PLAN_OPTIONS), value=st.sampled_from(OPTION_VALUES))
def test_fuzz_plan_options(option, value):
    args = ["plan", "fcn5", "-H", "dgx1-v100", "-n", "8", option, value]
    if option == "--devices":
        args = ["plan", "fcn5", "-H", "dgx1-v100", option, value]
    run(args)


@pytest.mark.parametrize("args,needle", [
    (["sweep", "fcn5", "-H", "v100-sxm2", "--csv", "{dir}"], "--csv"),
    (["sweep", "fcn5", "-H", "v100-sxm2", "--csv", "{dir}/missing/x.csv"], "--csv"),
    (["sweep", "fcn5", "-H", "v100-sxm2", "--plot", "{dir}"], "--plot"),
    (["report", "fcn5", "-H", "v100-sxm2", "--devices", "none", "-o", "{dir}"], "--out"),
    (["report", "fcn5", "-H", "v100-sxm2", "--devices", "0", "-o", "{dir}/r.html"], "--devices"),
    (["sweep", "fcn5", "-H", "v100-sxm2,,t4"], "empty name"),
    (["sweep", "fcn5", "-H", "v100-sxm2", "--devices", "1,,2"], "--devices"),
    (["hardware", "--kind", "toaster"], "toaster"),
    (["compare", "fcn5", "-H", "v100-sxm2", "--price-per-hour", "nan"], "--price-per-hour"),
    (["validate", "--suite", "dlbench-2016", "--data", "{dir}/missing.csv"], "--data"),
    (["validate", "--suite", "dlbench-2016", "--data", str(BAD / "net_binary.yaml")], "binary"),
    (["predict", "/tmp/" + "a" * 5000 + ".yaml", "-H", "v100-sxm2"], "too long"),
    (["predict", "fcn5", "-H", "v100-sxm2", "--devices", "1000000000"], "--devices"),
    (["predict", "bert_base", "-H", "dgx1-v100", "-n", "5", "--plan", "dp=1,tp=5,pp=1"], "heads"),
    (["predict", "fcn5", "-H", "v100-sxm2", "--storage", "nvme"], "storage profile"),
])
def test_bad_options(tmp_path, args, needle):
    res = run([a.replace("{dir}", str(tmp_path)) for a in args])
    culprit_named(res, needle)


# ---- every option of every command (new options are fuzzed without editing this file) ---------------------

BASE_ARGS = {
    "predict": ["fcn5", "-H", "v100-sxm2"], "show": ["fcn5"], "networks": [], "hardware": [],
    "sweep": ["fcn5", "-H", "v100-sxm2", "-q"], "fit": ["fcn5", "-H", "v100-sxm2"],
    "compare": ["fcn5", "-H", "v100-sxm2"], "serve": ["fcn5", "-H", "v100-sxm2"],
    "plan": ["fcn5", "-H", "dgx1-v100", "-n", "8"],
}
ANY_VALUES = ["0", "-2", "1" + "0" * 40, "nan", "inf", "", ",", "a,,b", "x" * 300, "1e999 GB", "\x00", "-"]


def _value_options() -> list[tuple[str, str]]:
    import typer.main

    group = typer.main.get_command(app)
    out = []
    for name in sorted(BASE_ARGS):
        cmd = group.get_command(None, name)
        for p in cmd.params:
            opts = [o for o in getattr(p, "opts", []) if o.startswith("--")]
            if opts and not getattr(p, "is_flag", False) and opts[0] not in ("--help",):
                out.append((name, opts[0]))
    return out


VALUE_OPTIONS = _value_options()


def test_every_command_has_base_args():
    assert len(VALUE_OPTIONS) > 40 and {c for c, _ in VALUE_OPTIONS} >= {"predict", "plan", "sweep", "compare"}


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(command_option=st.sampled_from(VALUE_OPTIONS), value=st.sampled_from(ANY_VALUES))
def test_fuzz_every_option(monkeypatch, command_option, value):
    command, option = command_option
    with tempfile.TemporaryDirectory() as d:
        monkeypatch.chdir(d)  # output options may write files: never into the checkout, and fresh per example
        res = run([command, *BASE_ARGS[command], option, value])
        monkeypatch.undo()
    if res.exit_code != 0:
        low = res.output.lower()
        names = {option, option.lstrip("-"), option.lstrip("-").replace("-", "_")}
        assert any(n in low for n in names) or "error: in " in low, (command, option, value, res.output)
