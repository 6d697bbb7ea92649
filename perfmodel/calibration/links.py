"""Alpha-beta link fits from collective timings (torch-free): one fit for every link calibration.

All-reduce over p ranks (ring): T(n) = 2(p-1)/p * n/B + 2(p-1) alpha. Send/recv round trip of n bytes:
T(n) = 2 (alpha + n/B). Both are linear in n, T = c0 + c1 n, fitted by least squares on the relative error
(each point weighted by 1/T) so that small and large messages count alike.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError

# (c0 per alpha, c1 per 1/B) of each timed pattern, for p ranks
PATTERNS = {"allreduce": lambda p: (2.0 * (p - 1), 2.0 * (p - 1) / p), "sendrecv": lambda p: (2.0, 2.0)}


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(c0, c1) of T = c0 + c1 n by relative-error least squares over (bytes, seconds) points; c0 clipped at 0."""
    if len(points) < 2:
        raise InputError("need at least two (bytes, seconds) points to fit alpha and beta")
    n = np.array([p[0] for p in points], dtype=float)
    t = np.array([p[1] for p in points], dtype=float)
    w = 1.0 / t
    a = np.stack([np.ones_like(n), n], axis=1) * w[:, None]
    c0, c1 = np.linalg.lstsq(a, t * w, rcond=None)[0]
    if c1 <= 0:
        raise InputError("times do not grow with the message size; cannot fit a bandwidth")
    return max(0.0, float(c0)), float(c1)


def fit_alpha_beta(points: Sequence[tuple[float, float]], pattern: str = "allreduce",
                   ranks: int = 2) -> tuple[float, float]:
    """(latency alpha s, bandwidth B bytes/s) of `pattern` ("allreduce" over `ranks`, or "sendrecv")."""
    if pattern not in PATTERNS:
        raise InputError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    k0, k1 = PATTERNS[pattern](ranks)
    c0, c1 = fit_line(points)
    return c0 / k0, k1 / c1
