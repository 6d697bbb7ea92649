"""The link fit recovers a known alpha and beta from synthetic timings (hand-computed formulas)."""

import pytest

from perfmodel.errors import InputError
from perfmodel.validation.cluster_emu_fit import LinkFit, fit_alpha_beta, medians
from perfmodel.validation.cluster_emu_net import BURST_BYTES

SIZES = [4096 * 4**i for i in range(8)]
ALPHA, B = 50e-6, 100e6


def test_allreduce_two_ranks():
    # ring all-reduce, p = 2: T = n/B + 2 alpha; e.g. 1 MiB: 1048576/1e8 + 1e-4 = 10.58576 ms
    pts = [(n, n / B + 2 * ALPHA) for n in SIZES]
    assert pts[4][1] == pytest.approx(0.01058576)
    a, b = fit_alpha_beta(pts, "allreduce", 2)
    assert a == pytest.approx(ALPHA, rel=1e-6) and b == pytest.approx(B, rel=1e-6)


def test_allreduce_four_ranks_and_sendrecv():
    pts = [(n, 1.5 * n / B + 6 * ALPHA) for n in SIZES]  # 2(p-1)/p = 1.5, 2(p-1) = 6
    assert fit_alpha_beta(pts, "allreduce", 4) == pytest.approx((ALPHA, B), rel=1e-6)
    rt = [(n, 2 * (ALPHA + n / B)) for n in SIZES]  # round trip
    assert fit_alpha_beta(rt, "sendrecv") == pytest.approx((ALPHA, B), rel=1e-6)


def test_noisy_points_still_close():
    noise = [1.03, 0.97, 1.02, 0.99, 1.01, 0.98, 1.02, 1.0]
    pts = [(n, (n / B + 2 * ALPHA) * f) for n, f in zip(SIZES, noise)]
    a, b = fit_alpha_beta(pts)
    assert a == pytest.approx(ALPHA, rel=0.1) and b == pytest.approx(B, rel=0.05)


def test_refuses_flat_times_and_one_point():
    with pytest.raises(InputError):
        fit_alpha_beta([(1, 1.0), (2, 0.5)])
    with pytest.raises(InputError):
        fit_alpha_beta([(1, 1.0)])


def test_medians_take_the_slowest_rank_per_repetition():
    r0 = {"4096": [1.0, 5.0, 2.0]}
    r1 = {"4096": [3.0, 1.0, 1.0]}
    assert medians([r0, r1]) == [(4096, 3.0)]  # per rep max: 3, 5, 2 -> median 3


def _tbf(n: int, k0: float, k1: float) -> float:
    """A tbf-shaped link: messages under the 64 KiB burst pass unshaped (latency only), larger ones at B."""
    return k0 * ALPHA + (k1 * n / B if n >= BURST_BYTES else 0.0)


def test_link_profile_and_record_round_trip():
    pts = tuple((n, _tbf(n, 2, 1)) for n in SIZES)  # all-reduce, p = 2
    rt = tuple((n, _tbf(n, 2, 2)) for n in SIZES)  # round trips
    fit = LinkFit("emu-test", 2, pts, rt, {"nodes": 2}, "2026-01-01T00:00:00+00:00", rt)
    lk = fit.link()
    assert lk.name == "emu-test" and lk.bandwidth_Bps == pytest.approx(B) and lk.latency_s == pytest.approx(ALPHA)
    assert fit.rpc_link().bandwidth_Bps == pytest.approx(B) and fit.rpc_link().latency_s == pytest.approx(ALPHA)
    assert LinkFit.from_record(fit.to_dict()) == fit


def test_the_unshaped_burst_does_not_inflate_the_bandwidth():
    # one relative-error line through all sizes reads the free sub-burst messages as a faster link
    pts = tuple((n, _tbf(n, 2, 1)) for n in SIZES)
    assert fit_alpha_beta(pts, "allreduce", 2)[1] > 1.1 * B
    fit = LinkFit("t", 2, pts, pts, {}, "x")
    assert fit.fit("allreduce") == pytest.approx((ALPHA, B), rel=1e-6)  # big messages give B, small ones alpha
