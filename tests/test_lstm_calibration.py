"""oneDNN's fused LSTM on a CPU: GEMM efficiency and gate-math rate fitted from LSTM samples (calibration.lstm)."""

from __future__ import annotations

import pytest

from perfmodel.calibration.fit import FitOptions, Sample, fit_profile, predicted_sample_time, profile_dict
from perfmodel.calibration.lstm import CELL_KEY, LSTM_KEY, _solve, fit_lstm, lstm_label, lstm_work
from perfmodel.hardware.loader import hardware_from_dict
from perfmodel.ops.recurrent import CELL_FWD_FLOPS

from test_calibration import CORES, PEAK, synthetic_samples

SHAPES = ((384, 16, 32, 64), (256, 16, 64, 96), (32, 48, 64, 128), (64, 24, 256, 256), (48, 16, 512, 512))
TRUE = {1: (0.9, 1e9), 2: (0.8, 0.8e9)}  # threads: (GEMM efficiency, one core's gate FLOP/s): compute-bound gates


def test_lstm_work_counts_the_cost_rules_gemm_and_gate_flops_by_hand():
    """One layer, batch 2, T 3, F 4, H 5 (gH = 20, biases): forward GEMMs 2*6*4*20 + 2*6*5*20 = 2,160, backward
    dX 960 + dh 1,200 + dW 2*6*20*9 = 2,160: 6,480 in all; gate math 6*(3*20 + 5*c) forward and twice that
    backward; kernels 1 + 3 + 3 forward, 1 + 3 + 3 + 2 + 1 backward."""
    gemm, gate, kernels = lstm_work(lstm_label(2, 3, 4, 5))
    assert gemm == 6480
    assert gate == 3 * 6 * (3 * 20 + 5 * CELL_FWD_FLOPS["lstm"])
    assert kernels == 17
    assert lstm_work("gemm 64x64x64 nn") is None


def test_solve_recovers_an_exact_pair_and_drops_a_negative_term():
    assert _solve([(1.0, 1.0, 3.0), (2.0, 1.0, 5.0)]) == pytest.approx((2.0, 1.0))  # x + y = 3, 2x + y = 5
    x, y = _solve([(1.0, 1.0, 1.0), (2.0, 1.0, 3.0), (3.0, 1.0, 5.0)])  # exact 2x - y: y < 0 is not physical
    assert y == 0.0 and x > 0


def _lstm_samples(base) -> list[Sample]:
    """LSTM samples timed as calibration.lstm prices them for the TRUE parameters (benchmarks pay the kernels'
    training overhead)."""
    out = []
    for t, (eff, rate) in TRUE.items():
        for shp in SHAPES:
            gemm, gate, kernels = lstm_work(lstm_label(*shp))
            time_s = (gemm / (base.matrix_rate(t) * eff) + gate / (rate * base.speedup(t))
                      + kernels * base.kernel_overhead_s)
            out.append(Sample("matrix", t, time_s, gemm, 0.0, 1, label=lstm_label(*shp), ekey=LSTM_KEY))
    return out


def test_fit_recovers_gemm_efficiency_and_gate_rate_per_thread_count():
    samples = synthetic_samples()
    opts = FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES})
    base = fit_profile(samples, opts)
    lstm = _lstm_samples(base)
    curves, rates, notes = fit_lstm(lstm, base)
    for t, (eff, rate) in TRUE.items():
        assert curves[f"{LSTM_KEY}@t{t}"][0][1] == pytest.approx(eff, rel=1e-3)
        assert curves[f"rnn/gemm/recurrent/lstm@t{t}"] == curves[f"{LSTM_KEY}@t{t}"]
        assert rates[f"{CELL_KEY}@t{t}"] == pytest.approx(rate, rel=1e-6)
        assert rates[f"{CELL_KEY}.backward@t{t}"] == rates[f"{CELL_KEY}@t{t}"]
    assert len(notes) == 2 and "residual median 0.0%" in notes[0]
    fit = fit_profile(samples + lstm, opts)  # through the whole fit: the same, and its own samples come back
    assert fit.keyed_curves[f"{LSTM_KEY}@t2"][0][1] == pytest.approx(0.8, rel=1e-3)
    for s in lstm:
        assert predicted_sample_time(s, fit) == pytest.approx(s.time_s, rel=1e-3)


def test_the_engine_prices_a_calibration_lstm_as_the_fit_does():
    """The fitted profile, loaded as a device: predict's time of the sample's one-layer LSTM (forward + backward) is
    the sample's time within 3% (the bias reduction and bandwidth terms differ)."""
    from perfmodel import predict
    from perfmodel.graph.io import NetworkBuilder

    samples = synthetic_samples()
    opts = FitOptions(cores=CORES, nominal_peak_per_core={"fp32": PEAK / CORES})
    base = fit_profile(samples, opts)
    lstm = _lstm_samples(base)
    dev = hardware_from_dict(profile_dict(fit_profile(samples + lstm, opts), name="l", source="t", memory_bytes=8e9))
    for s in lstm:
        nb, steps, width, hidden = (int(x[1:]) for x in s.label.split()[1:])
        b = NetworkBuilder("l")
        b.input("x", shape=[steps, width])
        b.layer("lstm", "rnn", hidden=hidden)
        p = predict(b.build(), dev, batch=nb, threads=s.threads, optimizer="sgd")
        t = next(r.time_s["total"] for r in p.layers if r.name == "rnn")
        assert t == pytest.approx(s.time_s, rel=0.03), s.label
