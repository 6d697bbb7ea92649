"""Synchronous training with stragglers, asynchronous training with parameter servers, and mixed.

- Synchronous: every step waits for the slowest of N workers. With per-worker step times i.i.d.
  normal (mean mu, coefficient of variation cv), the expected step is mu (1 + cv E[max of N standard
  normals]); `expected_max_normal` computes E[max] by numerical integration (exact to ~1e-9 for
  any N; closed forms 0, 1/sqrt(pi), 3/(2 sqrt(pi)) for N = 1, 2, 3).
- Asynchronous (parameter servers): workers never wait for each other. Each worker computes, pushes
  its gradient and pulls fresh parameters, and queues for the servers' links when another worker's
  push or pull is on them. The links are full duplex (pushes come in while pulls go out); the N workers
  form a closed queueing network: a delay (the worker's step outside the server links: compute,
  latencies, the part of a transfer its own link makes slower than the server's) and two stations,
  server ingress and egress, each busy n / server_bandwidth per update. Exact mean value analysis
  (Reiser & Lavenberg 1980) of that network gives the updates per second: N / worker_step without
  contention, tending to server_bandwidth / n when the servers saturate (min() of the two was
  measured 45% too slow on 4 workers pushing 8 MB over 1 Gbit/s emulated links, cluster-emu).
  A gradient is applied on average after N - 1 other updates (staleness; exact for the mean over
  updates whatever the workers' rates).
- Mixed: synchronous inside a group (a node), asynchronous between groups: a group is one async
  worker whose step includes its internal all-reduce and its own stragglers.
- One slow worker (a deterministic straggler, `slow_worker_factor` k >= 1): one worker's compute takes k times
  as long. Synchronous: every step waits for it, (k - 1) x compute longer, less the other workers' pushes to
  parameter servers that run meanwhile (ps_push_overlap; a ring all-reduce cannot start early). Asynchronous: nobody waits; the
  throughput is the sum of the workers' rates (without contention (N - 1) / step + 1 / (step + (k - 1) x
  compute); the network above with two classes of workers).
"""

from __future__ import annotations

import math
from functools import lru_cache

from ..errors import InputError

SYNC_MODES = ("sync", "async", "mixed")

# Bytes through each direction of the servers' links per applied update, in units of the gradient size:
# the push comes in, the pull goes out (full duplex, as Ethernet and InfiniBand links are).
PS_UPDATE_BYTES_FACTOR = 1.0
MVA_EXACT_MAX_WORKERS = 4096  # beyond: the asymptotic bound min(N / (Z + D), 1 / D_max) (MVA's limit)


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


def slow_worker_delay(compute_s: float, factor: float, workers: int) -> float:
    """Extra time per synchronous step when one of `workers` computes `factor` times slower: (factor - 1) compute."""
    if factor < 1:
        raise InputError(f"slow_worker_factor must be >= 1, got {factor}")
    return (factor - 1.0) * compute_s if workers > 1 else 0.0


def ps_push_overlap(n_bytes: float, workers: int, servers: int, bw_worker: float, bw_server: float) -> float:
    """Seconds of a synchronous parameter-server push phase that run while one slow worker still computes.

    Dedicated servers: all pushes together take max(n/bw_worker, W n/(S bw_server)), the slow worker's alone
    max(n/bw_worker, n/(S bw_server)); the difference (the others' share of the servers' links) is done before
    the slow worker's push starts, when its extra compute is at least that long."""
    if n_bytes <= 0 or workers <= 1:
        return 0.0
    if servers < 1 or bw_worker <= 0 or bw_server <= 0:
        raise InputError("parameter-server push overlap needs servers >= 1 and bandwidths > 0")
    alone = max(n_bytes / bw_worker, n_bytes / (servers * bw_server))
    together = max(n_bytes / bw_worker, workers * n_bytes / (servers * bw_server))
    return together - alone


def async_throughput(workers: int, worker_step_s: float, grad_bytes: float, server_bandwidth_Bps: float,
                     slow_extra_s: float = 0.0) -> dict:
    """Updates per second of asynchronous training: N workers queueing for the servers' two link directions.

    `worker_step_s`: one worker's step alone (compute, push, pull); `slow_extra_s`: one worker's step is that
    much longer (a slow worker). Stations: ingress and egress, each PS_UPDATE_BYTES_FACTOR x grad_bytes /
    server_bandwidth per update; the rest of the step is the workers' own (delay)."""
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if slow_extra_s < 0:
        raise InputError(f"slow worker's extra time must be >= 0, got {slow_extra_s}")
    if worker_step_s <= 0:
        worker_rate = math.inf
    else:
        worker_rate = (workers - 1) / worker_step_s + 1.0 / (worker_step_s + slow_extra_s)
    d = PS_UPDATE_BYTES_FACTOR * grad_bytes / server_bandwidth_Bps if grad_bytes > 0 and server_bandwidth_Bps > 0 \
        else 0.0
    server_rate = 1.0 / d if d > 0 else math.inf
    if worker_step_s <= 0 or d == 0:
        rate = min(worker_rate, server_rate)
    else:
        think = max(0.0, worker_step_s - 2 * d)
        rate = closed_network_throughput(workers, think, d, slow_extra_s)
    return {
        "updates_per_s": rate,
        "worker_bound_updates_per_s": worker_rate,
        "server_bound_updates_per_s": server_rate,
        "server_utilisation": rate * d,
        "bound": "servers" if rate * d >= 0.8 else "workers",
        "staleness": average_staleness(workers),
    }


@lru_cache(maxsize=4096)
def closed_network_throughput(workers: int, think_s: float, demand_s: float, slow_extra_s: float = 0.0) -> float:
    """Throughput (jobs/s) of `workers` cycling through a delay `think_s` and two queueing stations of service
    `demand_s` each; one of them (when slow_extra_s > 0) thinks slow_extra_s longer. Exact MVA over the
    population vectors (fast, slow); above MVA_EXACT_MAX_WORKERS, the asymptotic bound."""
    slow = 1 if slow_extra_s > 0 and workers > 1 else 0
    pop = (workers - slow, slow)
    think = (think_s, think_s + slow_extra_s)
    if workers > MVA_EXACT_MAX_WORKERS:
        lone = sum(n / (z + 2 * demand_s) for n, z in zip(pop, think))
        return min(lone, 1.0 / demand_s)
    q_prev = [0.0] * (slow + 1)  # queue length per station (both alike) at (f, s) for s in 0..slow, f - 1
    x = (0.0, 0.0)
    for f in range(pop[0] + 1):
        q_row = []
        for s_ in range(slow + 1):
            if f == 0 and s_ == 0:
                q_row.append(0.0)
                continue
            xs = [0.0, 0.0]
            q = 0.0
            for r, n in ((0, f), (1, s_)):
                if n == 0:
                    continue
                q_before = q_prev[s_] if r == 0 else q_row[s_ - 1]
                resp = demand_s * (1.0 + q_before)
                xs[r] = n / (think[r] + 2 * resp)
                q += xs[r] * resp
            q_row.append(q)
            x = (xs[0], xs[1])
        q_prev = q_row
    return x[0] + x[1]


def average_staleness(workers: int) -> float:
    """Average number of other updates applied between reading parameters and applying a gradient (N - 1)."""
    return float(max(0, workers - 1))
