"""Issue 15 CLI behaviour: options that do not apply are refused, suggestions, sample sizes, calibrate samples."""

from __future__ import annotations

import subprocess
import sys

import pytest

from perfmodel.errors import InputError, NotFoundError


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "perfmodel", *map(str, args)], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


# 1. --threads on a GPU and int8 training are refused

def test_threads_on_gpu_is_a_clear_error():
    rc, _, err = cli("predict", "resnet50", "--hardware", "a100-sxm4-40gb", "--threads", "4")
    assert rc == 2
    assert "a100-sxm4-40gb" in err and "CPUs" in err


def test_int8_training_is_a_clear_error_naming_training_dtypes():
    rc, _, err = cli("predict", "resnet50", "--hardware", "a100-sxm4-40gb", "--dtype", "int8")
    assert rc == 2
    assert "inference" in err and "bf16" in err and "a100-sxm4-40gb" in err


def test_sweep_and_plan_refuse_int8_and_threads_on_gpu():
    rc, _, err = cli("sweep", "resnet50", "-H", "a100-sxm4-40gb", "--dtype", "fp32,int8")
    assert rc == 2 and "inference" in err
    rc, _, err = cli("sweep", "resnet50", "-H", "a100-sxm4-40gb", "--threads", "2")
    assert rc == 2 and "CPUs" in err
    rc, _, err = cli("plan", "resnet50", "-H", "dgx-a100", "--devices", "8", "--dtype", "int8")
    assert rc == 2 and "inference" in err


def test_api_predict_refuses_threads_on_gpu_but_cpu_keeps_them():
    from perfmodel.prediction import predict

    with pytest.raises(InputError, match="CPUs"):
        predict("resnet50", "a100-sxm4-40gb", threads=2, layers=False)
    with pytest.raises(InputError, match="inference"):
        predict("resnet50", "a100-sxm4-40gb", dtype="int8", layers=False)
    from perfmodel.hardware.loader import list_hardware

    cpu = next(d for d in list_hardware("device") if d.type == "cpu")
    assert predict("resnet50", cpu, threads=1, layers=False).iteration_time_s > 0


# 2. --hardware a100 suggests the names containing a100 first

def test_hardware_suggestions_rank_substring_matches_first():
    from perfmodel.hardware.loader import load_hardware

    with pytest.raises(NotFoundError) as e:
        load_hardware("a100")
    hint = str(e.value).split("Did you mean: ")[1].split("?")[0].split(", ")
    assert hint[:4] == ["a100-sxm4-40gb", "a100-sxm4-80gb", "dgx-a100", "dgx-a100-ib-hdr"]


# 3. the on-disk sample size is its own option (and a dataset preset), not the dtype-sized tensor

def _storage_bps(**kw):
    from perfmodel.prediction import predict

    p = predict("resnet50", "a100-sxm4-40gb", storage="hdd", layers=False, **kw)
    return p.to_dict(layers=False)["assumptions"]["storage_bytes_per_sample"], p.iteration_time_s


def test_dataset_preset_sets_sample_size_independent_of_dtype():
    from perfmodel.dataflow import dataset_preset

    assert dataset_preset("imagenet") == (1281167, 110e3)
    fp32, t32 = _storage_bps(dataset="imagenet", dataset_size=5e12)
    bf16, t16 = _storage_bps(dataset="imagenet", dataset_size=5e12, dtype="bf16")
    assert fp32 == bf16 == 110e3
    assert t32 == pytest.approx(t16)  # both read the same JPEG bytes from a slow disk
    # default (no preset, no sample size) unchanged: the input tensor in the training dtype
    assert _storage_bps(dataset_size=5e12)[0] == 2 * _storage_bps(dataset_size=5e12, dtype="bf16")[0]


def test_dataset_preset_unknown_and_cli_sample_size():
    from perfmodel.prediction import make_setup

    with pytest.raises(InputError, match="imagenet"):
        make_setup(dataset="nosuchset")
    s = make_setup(dataset="imagenet")
    assert s.input_bytes_per_sample == 110e3 and s.dataset_size == pytest.approx(1281167 * 110e3)
    rc, out, err = cli("predict", "resnet50", "-H", "a100-sxm4-40gb", "--storage", "hdd", "--dataset-size", "5TB",
                       "--sample-size", "110kB", "--json")
    assert rc == 0, err
    import json

    assert json.loads(out)["assumptions"]["storage_bytes_per_sample"] == 110e3
    rc, _, err = cli("predict", "resnet50", "-H", "a100-sxm4-40gb", "--dataset", "imagenet", "--sample-size", "0kB")
    assert rc == 2


# 4. calibrate keeps its raw samples by default (user data folder) and says where

def test_calibration_samples_default_path(monkeypatch, tmp_path):
    from perfmodel.validation.storage import calibration_samples_path

    monkeypatch.setenv("PERFMODEL_DATA", str(tmp_path))
    assert calibration_samples_path("cpu") == tmp_path / "calibration" / "cpu-samples.jsonl"


def test_calibrate_passes_the_default_samples_path_and_says_how_to_refit(monkeypatch, tmp_path):
    """Without torch: a stand-in perfmodel.torch.calibrate records what the CLI passes, then refuses a busy run."""
    import types

    from typer.testing import CliRunner

    from perfmodel.cli import app
    from perfmodel.errors import InputError as BusyError

    monkeypatch.setenv("PERFMODEL_DATA", str(tmp_path))
    seen = {}

    def fake_calibrate(out, **kw):
        seen.update(kw)
        kw["samples_path"].parent.mkdir(parents=True, exist_ok=True)
        kw["samples_path"].write_text("{}\n")
        raise BusyError("other processes disturbed 40% of the samples")

    import perfmodel.torch as ptorch

    fake = types.ModuleType("perfmodel.torch.calibrate")
    fake.calibrate = fake_calibrate
    monkeypatch.setitem(sys.modules, "perfmodel.torch.calibrate", fake)
    monkeypatch.setattr(ptorch, "calibrate", fake, raising=False)
    r = CliRunner().invoke(app, ["calibrate", "--quick"])
    want = tmp_path / "calibration" / "cpu-samples.jsonl"
    assert seen["samples_path"] == want
    text = r.output + (r.stderr if r.stderr_bytes is not None else "")
    assert str(want) in text and "--from-samples" in text and "--allow-busy" in text
