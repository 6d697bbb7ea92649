"""Bad input ends in a one-paragraph error naming the file, layer or field, and a non-zero exit; never a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import perfmodel
from perfmodel.errors import HardwareError, InputError, NetworkError, NotFoundError, ShapeError

GOOD = """\
name: t
layers:
  - {op: input, name: x, shape: [3, 8, 8]}
  - {op: conv2d, name: c1, out_channels: 4, kernel: 3}
  - {op: flatten, name: f}
  - {op: dense, name: fc, units: 10}
  - {op: softmax_cross_entropy, name: loss}
"""


def write(tmp_path, text, name="net.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "perfmodel", *map(str, args)], capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


CASES = {
    "yaml syntax": ("name: t\nlayers:\n  - {op: input, name: x, shape: [3, 8\n", NetworkError, ["YAML syntax error", "line"]),
    "unknown op": (GOOD.replace("op: flatten", "op: flaten"), NetworkError, ["unknown op 'flaten'", "flatten", "layer 2"]),
    "missing field": (GOOD.replace("out_channels: 4, ", ""), NetworkError, ["out_channels", "c1", "Field required"]),
    "wrong type": (GOOD.replace("units: 10", "units: ten"), NetworkError, ["units", "fc", "integer"]),
    "shape mismatch": (GOOD.replace("{op: flatten, name: f}", "{op: add, name: f, inputs: [c1, x]}"), ShapeError,
                       ["layer 'f'", "same shape", "[4, 6, 6]", "[3, 8, 8]"]),
    "dangling input": (GOOD.replace("{op: flatten, name: f}", "{op: flatten, name: f, inputs: [c2]}"), NetworkError,
                       ["input 'c2' names no layer", "layer 'f'", "c1"]),
    "cycle": ("""\
name: t
layers:
  - {op: input, name: x, shape: [4]}
  - {op: dense, name: a, units: 4, inputs: [x]}
  - {op: add, name: b, inputs: [a, c]}
  - {op: relu, name: c, inputs: [b]}
""", NetworkError, ["cycle", "b", "c"]),
    "negative kernel": (GOOD.replace("kernel: 3", "kernel: -3"), NetworkError, ["kernel", "c1", "positive"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_network_file_api(tmp_path, case):
    text, exc, needles = CASES[case]
    p = write(tmp_path, text)
    with pytest.raises(exc) as ei:
        perfmodel.load_network(p)
    msg = str(ei.value)
    assert str(p) in msg
    for n in needles:
        assert n in msg, (n, msg)


@pytest.mark.parametrize("case", ["yaml syntax", "unknown op", "shape mismatch", "cycle"])
def test_bad_network_file_cli(tmp_path, case):
    text, _, needles = CASES[case]
    p = write(tmp_path, text)
    code, out, err = cli("predict", p, "--hardware", "v100-sxm2")
    assert code != 0
    assert "Traceback" not in err and err.startswith("error:")
    assert str(p) in err and needles[0] in err
    assert len(err.strip().splitlines()) <= 3


def test_unknown_names_suggest_close_matches():
    with pytest.raises(NotFoundError, match="resnet50"):
        perfmodel.load_network("resnet-5")
    with pytest.raises(NotFoundError, match="v100-sxm2"):
        perfmodel.load_hardware("v100-sxm")
    code, _, err = cli("predict", "resnet5", "--hardware", "v100-sxm2")
    assert code != 0 and "Did you mean" in err and "Traceback" not in err


def test_bad_numbers():
    with pytest.raises(InputError, match=r"batch.*(positive|greater than 0)"):
        perfmodel.predict("fcn5", "v100-sxm2", batch=0)
    with pytest.raises(InputError, match="dtype"):
        perfmodel.predict("fcn5", "v100-sxm2", dtype="fp17")
    with pytest.raises(InputError, match="no bf16 rate"):
        perfmodel.predict("fcn5", "v100-sxm2", dtype="bf16")
    with pytest.raises(InputError, match="optimizer"):
        perfmodel.predict("fcn5", "v100-sxm2", optimizer="lbfgs")
    code, _, err = cli("predict", "fcn5", "--hardware", "v100-sxm2", "--batch", "0")
    assert code != 0 and "batch" in err and "Traceback" not in err


def test_negative_bandwidth_in_profile(tmp_path):
    p = write(tmp_path, """\
kind: device
name: bad
type: gpu
source: test
peak_flops: {fp32: 10 TFLOPS}
memory_bandwidth: -900 GB/s
memory: 16 GB
""", "bad.yaml")
    with pytest.raises(HardwareError) as ei:
        perfmodel.load_hardware(p)
    assert "memory_bandwidth" in str(ei.value) and str(p) in str(ei.value)
    code, _, err = cli("predict", "fcn5", "--hardware", p)
    assert code != 0 and "memory_bandwidth" in err and "Traceback" not in err


def test_block_errors_name_the_block(tmp_path):
    p = write(tmp_path, """\
name: t
blocks:
  b1:
    params: {ch: null}
    layers:
      - {op: conv2d, name: c, out_channels: $ch, kernel: 3, padding: 1}
layers:
  - {op: input, name: x, shape: [3, 8, 8]}
  - {block: b1, name: s1, repeat: 2}
""")
    with pytest.raises(NetworkError, match="needs argument"):
        perfmodel.load_network(p)
    p2 = write(tmp_path, """\
name: t
blocks:
  b1:
    layers:
      - {op: conv2d, name: c, out_channels: $ch, kernel: 3}
layers:
  - {op: input, name: x, shape: [3, 8, 8]}
  - {block: b2, name: s1}
""", "n2.yaml")
    with pytest.raises(NetworkError, match="unknown block 'b2'.*b1"):
        perfmodel.load_network(p2)


@pytest.mark.parametrize("option,value,needle", [
    ("batch", 10**400, "less than or equal"),
    ("batch", True, "expected an integer"),
    ("batch", "32", "expected an integer"),
    ("devices", 10**9, "less than or equal"),
    ("threads", 10**12, "less than or equal"),
    ("straggler_cv", float("nan"), "straggler_cv"),
    ("dataset_size", float("inf"), "finite"),
])
def test_api_options_refused(option, value, needle):
    with pytest.raises(InputError) as ei:
        perfmodel.predict("fcn5", "v100-sxm2", **{option: value})
    assert option in str(ei.value) and needle in str(ei.value)


def test_data_file_errors_name_the_field_path(tmp_path):
    p = write(tmp_path, GOOD.replace("units: 10", "units: 1" + "0" * 400))
    with pytest.raises(NetworkError, match=r"field 'layers\[3\]\.units': integer too large"):
        perfmodel.load_network(p)
    p = write(tmp_path, GOOD.replace("{op: flatten, name: f}", "{op: flatten, name: f, op2: .nan}"), "n2.yaml")
    with pytest.raises(NetworkError, match=r"layers\[2\]\.op2': expected a finite number"):
        perfmodel.load_network(p)
    with pytest.raises(NetworkError, match="path too long"):
        perfmodel.load_network(tmp_path / ("a" * 300 + ".yaml"))


def test_hardware_kind_filter():
    from perfmodel.hardware import list_hardware

    gpus = list_hardware("gpu")
    assert gpus and all(h.kind == "device" and h.type == "gpu" for h in gpus)
    with pytest.raises(InputError, match="unknown hardware kind 'toaster'.*device, link"):
        list_hardware("toaster")
