"""Synchronous training with stragglers, asynchronous training with parameter servers, and mixed.

- Synchronous: every step waits for the slowest of N workers. With per-worker step times i.i.d.
  normal (mean mu, coefficient of variation cv), the expected step is mu (1 + cv E[max of N standard
  normals]); `expected_max_normal` computes E[max] by numerical integration (exact to ~1e-9 for
  any N; closed forms 0, 1/sqrt(pi), 3/(2 sqrt(pi)) for N = 1, 2, 3).
- Asynchronous (parameter servers): workers never wait for each other. Each worker computes, pushes
  its gradient and pulls fresh parameters; N workers deliver N updates per worker step unless the
  servers saturate: throughput = min(N / worker_step, server_bandwidth / (PS_UPDATE_BYTES_FACTOR x
  gradient bytes)) updates/s. A gradient is applied on average after N - 1 other updates (staleness).
- Mixed: synchronous inside a group (a node), asynchronous between groups: a group is one async
  worker whose step includes its internal all-reduce and its own stragglers.
"""

from __future__ import annotations

import math
from functools import lru_cache

from ..errors import InputError

SYNC_MODES = ("sync", "async", "mixed")

# Bytes through the server NICs per applied update, in units of the gradient size: push + pull
# counted against one budget (the formula). Set to 1 for full-duplex NICs that push and pull
# at the same time.
PS_UPDATE_BYTES_FACTOR = 2.0


@lru_cache(maxsize=4096)
def expected_max_normal(n: int) -> float:
    """E[max of n i.i.d. standard normal variables] = integral of x n phi(x) Phi(x)^(n-1) dx."""
    if n < 1 or int(n) != n:
        raise InputError(f"number of workers must be a positive integer, got {n}")
    if n == 1:
        return 0.0
    if n == 2:
        return 1.0 / math.sqrt(math.pi)
    # integrate on a fine grid; the integrand is negligible outside [-9, 9 + sqrt(2 ln n)]
    hi = 9.0 + math.sqrt(2.0 * math.log(n))
    lo = -9.0
    steps = 6000
    h = (hi - lo) / steps
    total = 0.0
    for i in range(steps + 1):
        x = lo + i * h
        phi = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        cdf = 0.5 * math.erfc(-x / math.sqrt(2))
        f = x * n * phi * (cdf ** (n - 1) if cdf > 0 else 0.0)
        w = 1 if i in (0, steps) else (4 if i % 2 else 2)  # Simpson's rule
        total += w * f
    return total * h / 3


def straggler_delay(mean_s: float, cv: float, workers: int) -> float:
    """Extra time per synchronous step spent waiting for the slowest of `workers`: mean cv E[max]."""
    if cv < 0:
        raise InputError(f"straggler_cv must be >= 0, got {cv}")
    if cv == 0 or workers <= 1:
        return 0.0
    return mean_s * cv * expected_max_normal(int(workers))


def async_throughput(workers: int, worker_step_s: float, grad_bytes: float, server_bandwidth_Bps: float) -> dict:
    """Updates per second of asynchronous training: bound by the workers and by the servers' bandwidth."""
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    worker_rate = workers / worker_step_s if worker_step_s > 0 else math.inf
    if grad_bytes > 0 and server_bandwidth_Bps > 0:
        server_rate = server_bandwidth_Bps / (PS_UPDATE_BYTES_FACTOR * grad_bytes)
    else:
        server_rate = math.inf
    rate = min(worker_rate, server_rate)
    return {
        "updates_per_s": rate,
        "worker_bound_updates_per_s": worker_rate,
        "server_bound_updates_per_s": server_rate,
        "bound": "workers" if worker_rate <= server_rate else "servers",
        "staleness": average_staleness(workers),
    }


def average_staleness(workers: int) -> float:
    """Average number of other updates applied between reading parameters and applying a gradient (N - 1)."""
    return float(max(0, workers - 1))
