"""torch.distributed check (small): alpha-beta fit, a 2-process gloo DDP run of a tiny MLP, its prediction.

Skipped without PyTorch. Takes ~15-25 s (two spawns of 2 processes that import torch).
"""

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from conftest import small_mlp  # noqa: E402
from perfmodel import save_network  # noqa: E402
from perfmodel.hardware import Link, load_hardware  # noqa: E402
from perfmodel.parallel.collectives import ring_allreduce  # noqa: E402


def _tiny(tmp_path):
    p = tmp_path / "tiny.yaml"
    save_network(small_mlp(128, 256, 10, name="tiny-mlp"), p)
    return p


def test_fit_alpha_beta_recovers_the_ring_formula():
    from perfmodel.torch.ddp import fit_alpha_beta

    alpha, bw = 40e-6, 2.5e9
    pts = [(n, ring_allreduce(n, 2, bw, alpha)) for n in (4096, 65536, 1 << 20, 1 << 24, 1 << 26)]
    a, b = fit_alpha_beta(pts, 2)
    assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(bw, rel=1e-6)
    pts8 = [(n, ring_allreduce(n, 8, bw, alpha)) for n in (4096, 1 << 20, 1 << 26)]
    a, b = fit_alpha_beta(pts8, 8)
    assert a == pytest.approx(alpha, rel=1e-6) and b == pytest.approx(bw, rel=1e-6)


def _profile():
    try:
        from perfmodel.validation.profiles import find_calibrated_profile

        return find_calibrated_profile("cpu")
    except Exception:  # no calibrated profile here: any CPU profile exercises the mechanics
        return load_hardware("i7-3820")


def test_small_ddp_suite(tmp_path):
    from perfmodel.torch.ddp import calibrate_allreduce
    from perfmodel.validation.ddp_cpu import DDPCase, predict_ddp, run_ddp_suite

    cal = calibrate_allreduce(sizes=(4096, 65536, 1 << 20))
    assert cal.alpha_s >= 0 and cal.bandwidth_Bps > 0 and len(cal.points) == 3
    link = cal.link()
    assert isinstance(link, Link) and link.efficiency == 1.0 and "gloo" in link.source
    net = _tiny(tmp_path)
    res = run_ddp_suite(tmp_path / "report", tmp_path / "m.jsonl", cases=[DDPCase("tiny", str(net), 16, steps=3,
                                                                               warmup=1)],
                        profile=_profile(), link=link, rounds=1, process_speed=1.0, wait_idle=False,
                        single_process_reference=False, progress=None)
    assert len(res.cases) == 1
    c = res.cases[0]
    assert c.measured.world == 2 and len(c.measured.step_times_s) == 3 and c.measured.median_s > 0
    assert c.measured.params == 128 * 256 + 256 + 256 * 10 + 10
    assert c.predicted_s > 0 and c.parallel["devices"] == 2 and c.parallel["gradient_sync_s"] > 0
    assert (tmp_path / "report" / "report.md").read_text().startswith("# ddp-cpu")
    d = json.loads((tmp_path / "report" / "results.json").read_text())
    assert d["cases"][0]["case"]["name"] == "tiny"
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    assert rec["kind"] == "ddp_training_step" and rec["machine"]["cpu_model"]
    assert "tiny" in res.text()
    # the report can be rebuilt from the stored records alone
    from perfmodel.validation.ddp_cpu import report_from_measurements

    again = report_from_measurements(tmp_path / "m.jsonl", profile=_profile(), link=link,
                                     report_dir=tmp_path / "report2", process_speed=1.0)
    assert again.cases[0].measured.median_s == c.measured.median_s
    assert again.cases[0].predicted_s == pytest.approx(c.predicted_s)
    # the prediction's all-reduce uses the fitted link: more bandwidth is never slower
    fast = predict_ddp(net, 16, _profile(), link.model_copy(update={"bandwidth_Bps": link.bandwidth_Bps * 10}))
    assert fast.iteration_time_s <= c.predicted_s


def test_cli_replays_the_committed_ddp_cpu_measurements_and_rejects_bad_options(tmp_path):
    """`perfmodel validate --suite ddp-cpu --replay FILE` re-predicts the stored run without measuring;
    the suite's options reach it (a --device other than cpu is refused)."""
    from pathlib import Path

    from typer.testing import CliRunner

    from perfmodel.cli import app

    data = Path(__file__).resolve().parents[1] / "validation" / "measurements" / "ddp-cpu.jsonl"
    r = CliRunner().invoke(app, ["validate", "--suite", "ddp-cpu", "--replay", str(data), "--json",
                                 "--report", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert len(d["cases"]) == 6 and all(c["predicted_s"] > 0 for c in d["cases"])
    assert (tmp_path / "rep" / "report.md").exists()
    bad = CliRunner().invoke(app, ["validate", "--suite", "ddp-cpu", "--device", "cuda", "--replay", str(data)])
    assert bad.exit_code != 0 and "CPU only" in bad.output


def test_straggler_cv_from_runs_matches_the_expected_maximum_of_two():
    """Rank times (1.0, 1.2) and (1.0, 0.8): the slower waits 0.1 on a mean of 1.0; for 2 ranks the model's wait
    is cv / sqrt(pi), so cv = 0.1 sqrt(pi). Equal ranks give 0; one rank gives 0."""
    import math

    from perfmodel.parallel.sync_modes import straggler_delay
    from perfmodel.torch.ddp import straggler_cv_from_runs

    cv = straggler_cv_from_runs([[1.0, 1.0], [1.2, 0.8]])
    assert cv == pytest.approx(0.1 * math.sqrt(math.pi))
    assert straggler_delay(1.0, cv, 2) == pytest.approx(0.1)
    assert straggler_cv_from_runs([[0.5, 0.7], [0.5, 0.7]]) == 0.0
    assert straggler_cv_from_runs([[0.5, 0.7]]) == 0.0
