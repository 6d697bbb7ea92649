"""torch.distributed check (small): alpha-beta fit, a 2-process gloo DDP run of a tiny MLP, its prediction.

Skipped without PyTorch. Takes ~15-25 s (two spawns of 2 processes that import torch).
"""

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from perfmodel import NetworkBuilder, save_network  # noqa: E402
from perfmodel.hardware import Link, load_hardware  # noqa: E402
from perfmodel.parallel.collectives import ring_allreduce  # noqa: E402


def _tiny(tmp_path):
    b = NetworkBuilder("tiny-mlp")
    b.input("x", shape=[128])
    b.dense("fc1", units=256)
    b.relu("relu1")
    b.dense("fc2", units=10)
    b.softmax_cross_entropy("loss")
    p = tmp_path / "tiny.yaml"
    save_network(b.build(), p)
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
        from perfmodel.validation.suites import find_calibrated_profile

        return find_calibrated_profile("cpu")
    except Exception:  # no calibrated profile here: any CPU profile exercises the mechanics
        return load_hardware("i7-3820")


def test_small_ddp_suite(tmp_path):
    from perfmodel.torch.ddp import DDPCase, calibrate_allreduce, predict_ddp, run_ddp_suite

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
    from perfmodel.torch.ddp import report_from_measurements

    again = report_from_measurements(tmp_path / "m.jsonl", profile=_profile(), link=link,
                                     report_dir=tmp_path / "report2", process_speed=1.0)
    assert again.cases[0].measured.median_s == c.measured.median_s
    assert again.cases[0].predicted_s == pytest.approx(c.predicted_s)
    # the prediction's all-reduce uses the fitted link: more bandwidth is never slower
    fast = predict_ddp(net, 16, _profile(), link.model_copy(update={"bandwidth_Bps": link.bandwidth_Bps * 10}))
    assert fast.iteration_time_s <= c.predicted_s
