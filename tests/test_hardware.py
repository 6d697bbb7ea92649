"""Built-in hardware profiles (devices, links, storage), their datasheet numbers, and bad-input errors."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import yaml

from perfmodel.errors import HardwareError, NotFoundError
from perfmodel.hardware import (
    Device,
    EfficiencyCurve,
    Link,
    Storage,
    builtin_hardware,
    hardware_from_dict,
    list_hardware,
    load_hardware,
)
from perfmodel.paths import data_dir
from perfmodel.units import parse_quantity

PROFILES = data_dir("hardware_profiles")
KIND_DIRS = {"devices": "device", "links": "link", "storage": "storage"}
SUFFIXES = (".yaml", ".yml", ".json")


def _files(sub: str) -> list[Path]:
    return sorted(p for p in (PROFILES / sub).iterdir() if p.suffix in SUFFIXES)


OWN_FILES = [p for sub in KIND_DIRS for p in _files(sub)]
OWN_NAMES = [p.stem for p in OWN_FILES]
DEVICE_NAMES = [p.stem for p in _files("devices")]
GPU_NAMES = ["gtx-980", "gtx-1080", "k80", "titan-x-pascal", "p100-sxm2", "p100-pcie", "v100-sxm2",
             "v100-sxm2-32gb", "v100-pcie", "t4", "a100-sxm4-40gb", "a100-sxm4-80gb", "h100-sxm", "h200"]
CPU_NAMES = ["i7-3820", "xeon-e5-2630v3-2s", "epyc-9654", "xeon-platinum-8480plus"]
LINK_NAMES = ["pcie3-x16", "pcie4-x16", "pcie5-x16", "nvlink1", "nvlink2", "nvlink3", "nvlink4",
              "infiniband-fdr", "infiniband-edr", "infiniband-hdr", "infiniband-ndr",
              "ethernet-10g", "ethernet-25g", "ethernet-100g"]
STORAGE_NAMES = ["hdd", "hdd-raid0x4", "sata-ssd", "nvme-pcie3", "nvme-pcie4", "nvme-pcie5", "ram"]


# --------------------------------------------------------------------------- the built-in set


def test_expected_profiles_exist():
    names = set(builtin_hardware())
    for n in GPU_NAMES + CPU_NAMES + LINK_NAMES + STORAGE_NAMES:
        assert n in names, f"missing built-in profile {n}"


@pytest.mark.parametrize("path", OWN_FILES, ids=OWN_NAMES)
def test_profile_loads_by_name_and_matches_its_file(path: Path):
    obj = load_hardware(path.stem)
    assert obj.name == path.stem, "the profile name must equal the file stem"
    assert obj.kind == KIND_DIRS[path.parent.name], "file is in the folder of another kind"
    assert obj.source.strip(), "every profile names its source"
    assert "hardware_datasheets.md" in obj.source or "[" in obj.source, "source should carry a reference tag"
    # raw file: quantities are written in human units, not bare SI numbers
    raw = yaml.safe_load(path.read_text())
    for key in ("memory_bandwidth", "memory", "bandwidth", "read_bandwidth", "latency", "kernel_overhead"):
        if key in raw:
            assert isinstance(raw[key], str) and any(c.isalpha() for c in raw[key]), f"{key} needs a unit"


def test_list_hardware_contains_every_builtin_profile():
    listed = {h.name for h in list_hardware()}
    assert set(OWN_NAMES) <= listed
    assert {h.name for h in list_hardware("device")} >= set(GPU_NAMES + CPU_NAMES)
    assert {h.name for h in list_hardware("link")} >= set(LINK_NAMES)
    assert {h.name for h in list_hardware("storage")} >= set(STORAGE_NAMES)
    assert all(isinstance(h, Device) for h in list_hardware("device"))


def test_names_unique_across_all_hardware_files():
    stems = Counter(p.stem for p in PROFILES.rglob("*") if p.suffix in SUFFIXES)
    dup = [s for s, n in stems.items() if n > 1]
    assert not dup, f"hardware profile names must be unique across kinds: {dup}"


@pytest.mark.parametrize("name", GPU_NAMES)
def test_gpu_host_link_exists_and_is_pcie(name):
    d = load_hardware(name, kind="device")
    assert d.type == "gpu"
    assert d.host_link, "GPUs need a host link"
    link = load_hardware(d.host_link, kind="link")
    assert isinstance(link, Link) and link.type == "pcie"
    assert d.kernel_overhead_s > 0 and d.runtime_reserved_bytes > 0
    assert d.runtime_reserved_bytes < 0.2 * d.memory_bytes


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_device_efficiency_is_documented_and_sane(name):
    d = load_hardware(name, kind="device")
    e = d.efficiency
    assert "not fitted" in e.source
    for fam in ("matrix", "conv", "memory"):
        c = getattr(e, fam)
        assert 0.3 <= c.max <= 0.9 and c.half > 0
    # tensor/low-precision dtypes get their own curve when the device has them
    if any(dt in d.peak_flops for dt in ("fp16", "bf16", "fp8", "int8")):
        assert e.lowp_matrix is not None and e.lowp_conv is not None
    # every low-precision / tensor peak is at least the fp32 peak; fp64 at most fp32
    for dt, v in d.peak_flops.items():
        if dt == "fp64":
            assert v <= d.peak("fp32")
        else:
            assert v >= d.peak("fp32")


@pytest.mark.parametrize("name", CPU_NAMES)
def test_cpu_fields(name):
    d = load_hardware(name, kind="device")
    assert d.is_cpu and d.cores and d.clock_hz and d.simd
    assert d.threads_per_core >= 1 and d.sockets >= 1
    ts = d.thread_scaling
    assert "assumption" in ts.source
    assert ts.per_core_bandwidth_Bps is not None and ts.per_core_bandwidth_Bps < d.memory_bandwidth_Bps
    # peak fp32 = cores x clock x FLOPs/cycle for an integer FLOPs/cycle (16, 32 or 64)
    per_cycle = d.peak("fp32") / (d.cores * d.clock_hz)
    assert per_cycle == pytest.approx(round(per_cycle), rel=1e-6) and round(per_cycle) in (16, 32, 64)


# --------------------------------------------------------------------------- datasheet numbers


def test_datasheet_gpu_numbers():
    v100 = load_hardware("v100-sxm2")
    assert v100.peak("fp32") == pytest.approx(15.7e12)
    assert v100.peak("fp16") == pytest.approx(125e12)
    assert v100.memory_bandwidth_Bps == pytest.approx(900e9)
    assert not v100.supports("bf16") and not v100.supports("tf32")
    assert load_hardware("v100-sxm2-32gb").memory_bytes == pytest.approx(2 * v100.memory_bytes)

    a100 = load_hardware("a100-sxm4-40gb")
    assert a100.peak("bf16") == pytest.approx(312e12)  # dense, not the 624 sparse figure
    assert a100.peak("tf32") == pytest.approx(156e12)
    assert a100.memory_bandwidth_Bps == pytest.approx(1555e9)
    assert load_hardware("a100-sxm4-80gb").memory_bandwidth_Bps == pytest.approx(2039e9)

    h100 = load_hardware("h100-sxm")
    assert h100.memory_bandwidth_Bps == pytest.approx(3.35e12)
    assert h100.peak("bf16") == pytest.approx(989.4e12)  # dense, not 1,979 sparse
    assert h100.peak("fp8") == pytest.approx(1979e12)
    h200 = load_hardware("h200")
    assert h200.memory_bandwidth_Bps == pytest.approx(4.8e12)
    assert h200.peak("bf16") == h100.peak("bf16")

    k80 = load_hardware("k80")  # one GK210 die, as software sees it
    assert k80.peak("fp32") == pytest.approx(4.37e12, rel=0.01)
    assert k80.memory_bandwidth_Bps == pytest.approx(240e9)
    assert 11e9 < k80.memory_bytes < 14e9

    t4 = load_hardware("t4")
    assert t4.peak("fp16") == pytest.approx(65e12) and not t4.supports("bf16")
    assert load_hardware("gtx-980").peak("fp32") == pytest.approx(4.98e12)
    assert load_hardware("gtx-1080").memory_bandwidth_Bps == pytest.approx(320e9)
    assert load_hardware("p100-sxm2").peak("fp16") == pytest.approx(21.2e12)
    # Pascal consumer parts: fp16 is 1/64 rate and deliberately left out
    assert not load_hardware("gtx-1080").supports("fp16")
    assert not load_hardware("titan-x-pascal").supports("fp16")


def test_datasheet_cpu_numbers():
    i7 = load_hardware("i7-3820")
    assert i7.cores == 4 and i7.threads_per_core == 2 and i7.hardware_threads == 8
    assert i7.clock_hz == pytest.approx(3.6e9)
    assert i7.peak("fp32") == pytest.approx(4 * 3.6e9 * 16)
    assert i7.memory_bandwidth_Bps == pytest.approx(51.2e9)

    e5 = load_hardware("xeon-e5-2630v3-2s")
    assert e5.cores == 16 and e5.sockets == 2 and e5.hardware_threads == 32
    assert e5.peak("fp32") == pytest.approx(16 * 2.4e9 * 32)
    assert e5.memory_bandwidth_Bps == pytest.approx(2 * 4 * 1866.67e6 * 8, rel=0.005)

    assert load_hardware("epyc-9654").memory_bandwidth_Bps == pytest.approx(460.8e9)
    assert load_hardware("xeon-platinum-8480plus").peak("fp32") == pytest.approx(7168e9)


def test_link_and_storage_numbers():
    assert load_hardware("pcie3-x16").bandwidth_Bps == pytest.approx(15.75e9)
    assert load_hardware("pcie4-x16").bandwidth_Bps == pytest.approx(31.5e9)
    assert load_hardware("pcie5-x16").bandwidth_Bps == pytest.approx(63e9)
    assert load_hardware("nvlink2").bandwidth_Bps == pytest.approx(150e9)  # per-GPU aggregate, per direction
    assert load_hardware("nvlink3").bandwidth_Bps == pytest.approx(300e9)
    assert load_hardware("nvlink4").bandwidth_Bps == pytest.approx(450e9)
    assert load_hardware("infiniband-edr").bandwidth_Bps == pytest.approx(12.5e9)
    assert load_hardware("infiniband-hdr").bandwidth_Bps == pytest.approx(25e9)
    assert load_hardware("infiniband-ndr").bandwidth_Bps == pytest.approx(50e9)
    assert load_hardware("ethernet-10g").bandwidth_Bps == pytest.approx(1.25e9)
    assert load_hardware("ethernet-100g").bandwidth_Bps == pytest.approx(12.5e9)
    for name in LINK_NAMES:
        link = load_hardware(name, kind="link")
        assert link.type in ("pcie", "nvlink", "infiniband", "ethernet")
        assert 0.5 <= link.efficiency <= 1 and link.latency_s > 0
        assert link.effective_bandwidth_Bps < link.bandwidth_Bps
    # ordering of storage tiers
    bw = {n: load_hardware(n, kind="storage").effective_read_Bps for n in STORAGE_NAMES}
    assert bw["hdd"] < bw["sata-ssd"] < bw["nvme-pcie3"] < bw["nvme-pcie4"] < bw["nvme-pcie5"] < bw["ram"]
    assert bw["hdd"] < bw["hdd-raid0x4"] < bw["nvme-pcie3"]
    assert load_hardware("hdd").latency_s > load_hardware("sata-ssd").latency_s > load_hardware("ram").latency_s


# --------------------------------------------------------------------------- model behaviour


def test_unit_parsing():
    assert parse_quantity("100 Gb/s", "bandwidth") == pytest.approx(12.5e9)
    assert parse_quantity("900 GB/s", "bandwidth") == pytest.approx(900e9)
    assert parse_quantity("15.7 TFLOPS", "flops") == pytest.approx(15.7e12)
    assert parse_quantity("624 TOPS", "flops") == pytest.approx(624e12)
    assert parse_quantity("6 us", "time") == pytest.approx(6e-6)
    assert parse_quantity("12 ms", "time") == pytest.approx(12e-3)
    assert parse_quantity("16 GiB", "bytes") == 16 * 2**30
    assert parse_quantity("3.6 GHz", "frequency") == pytest.approx(3.6e9)
    link = hardware_from_dict({"kind": "link", "name": "x", "source": "s", "bandwidth": "100 Gb/s"})
    assert link.bandwidth_Bps == pytest.approx(12.5e9)


def test_efficiency_curve_saturating_is_monotone():
    c = EfficiencyCurve(max=0.8, half=1e8)
    sizes = [10.0 ** k for k in range(0, 14)]
    vals = [c.at(s) for s in sizes]
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    assert c.at(1e8) == pytest.approx(0.4)
    assert vals[-1] == pytest.approx(0.8, rel=1e-4) and vals[-1] <= 0.8
    assert EfficiencyCurve(max=0.7, half=0).at(123.0) == pytest.approx(0.7)


def test_efficiency_curve_interpolates_points():
    c = EfficiencyCurve(points=[[1e9, 0.8], [1e6, 0.2]])  # unsorted on purpose
    assert c.at(1e3) == pytest.approx(0.2)  # held constant below the first point
    assert c.at(1e12) == pytest.approx(0.8)  # and above the last one
    assert c.at(1e6) == pytest.approx(0.2) and c.at(1e9) == pytest.approx(0.8)
    assert c.at(math.sqrt(1e6 * 1e9)) == pytest.approx(0.5)  # linear in log(size)
    sizes = [10.0 ** (k / 4) for k in range(16, 40)]
    vals = [c.at(s) for s in sizes]
    assert all(b >= a for a, b in zip(vals, vals[1:]))


def test_efficiency_curve_for_dtype():
    a100 = load_hardware("a100-sxm4-40gb")
    assert a100.efficiency.curve("matrix", "bf16") == a100.efficiency.lowp_matrix
    assert a100.efficiency.curve("matrix", "fp32") == a100.efficiency.matrix


def test_raid0_scaling():
    hdd = load_hardware("hdd", kind="storage")
    r4 = hdd.raid0(4)
    assert isinstance(r4, Storage) and r4.disks == 4 and r4.name == "hdd-raid0x4"
    assert r4.effective_read_Bps == pytest.approx(4 * hdd.read_bandwidth_Bps * hdd.raid_efficiency)
    assert r4.latency_s == hdd.latency_s
    built_in = load_hardware("hdd-raid0x4", kind="storage")
    assert built_in.effective_read_Bps == pytest.approx(r4.effective_read_Bps)


# --------------------------------------------------------------------------- bad input

GOOD_DEVICE = """\
kind: device
name: test-gpu
type: gpu
source: test
peak_flops: {fp32: 10 TFLOPS}
memory_bandwidth: 500 GB/s
memory: 16 GB
"""


def _write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_tmp_file_loads(tmp_path):
    d = load_hardware(_write(tmp_path, GOOD_DEVICE, "good.yaml"))
    assert isinstance(d, Device) and d.memory_bandwidth_Bps == 500e9


def _expect_error(path: Path, *fragments: str) -> HardwareError:
    with pytest.raises(HardwareError) as ei:
        load_hardware(path)
    msg = str(ei.value)
    assert str(path) in msg, f"error does not name the file: {msg}"
    for f in fragments:
        assert f in msg, f"error does not mention {f!r}: {msg}"
    return ei.value


def test_yaml_syntax_error(tmp_path):
    p = _write(tmp_path, GOOD_DEVICE.replace("memory: 16 GB", "memory: [16 GB\nsimd: x"))
    _expect_error(p, "YAML syntax error", "line")


def test_missing_field(tmp_path):
    p = _write(tmp_path, GOOD_DEVICE.replace("memory_bandwidth: 500 GB/s\n", ""))
    _expect_error(p, "memory_bandwidth", "required")


@pytest.mark.parametrize("text,field", [
    (GOOD_DEVICE.replace("500 GB/s", "-500 GB/s"), "memory_bandwidth"),
    ("kind: link\nname: l\nsource: s\nbandwidth: -10 GB/s\n", "bandwidth"),
    ("kind: storage\nname: s\nsource: s\nread_bandwidth: -1 MB/s\n", "read_bandwidth"),
])
def test_negative_bandwidth(tmp_path, text, field):
    _expect_error(_write(tmp_path, text), f"'{field}'", "greater than 0")


@pytest.mark.parametrize("old,new,field", [
    ("peak_flops: {fp32: 10 TFLOPS}", "peak_flops: 10 TFLOPS", "peak_flops"),
    ("memory: 16 GB", "memory: [16, GB]", "memory"),
    ("memory_bandwidth: 500 GB/s", "memory_bandwidth: 500 furlongs", "memory_bandwidth"),
    ("type: gpu", "type: quantum", "type"),
])
def test_wrong_type(tmp_path, old, new, field):
    _expect_error(_write(tmp_path, GOOD_DEVICE.replace(old, new)), f"'{field}'")


def test_cpu_without_cores(tmp_path):
    _expect_error(_write(tmp_path, GOOD_DEVICE.replace("type: gpu", "type: cpu")), "cores")


def test_unknown_field_is_rejected(tmp_path):
    _expect_error(_write(tmp_path, GOOD_DEVICE + "memroy_bandwith: 1 GB/s\n"), "memroy_bandwith")


def test_unknown_kind(tmp_path):
    _expect_error(_write(tmp_path, GOOD_DEVICE.replace("kind: device", "kind: toaster")), "'kind'", "toaster")


def test_not_a_mapping(tmp_path):
    _expect_error(_write(tmp_path, "- just\n- a list\n"), "mapping")


def test_wrong_kind_requested():
    with pytest.raises(HardwareError, match="link"):
        load_hardware("v100-sxm2", kind="link")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(NotFoundError) as ei:
        load_hardware("v100")
    assert "v100-sxm2" in str(ei.value)
    with pytest.raises(NotFoundError) as ei:
        load_hardware("a100-sxm4")
    assert "a100-sxm4-40gb" in str(ei.value)


def test_name_lookup_ignores_case_and_separators():
    assert load_hardware("V100_SXM2").name == "v100-sxm2"


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(NotFoundError):
        load_hardware(tmp_path / "nope.yaml")
