"""Collective communication on the alpha-beta model: one registered pure function per algorithm.

Every function takes the message size `n` in bytes (for all-gather / reduce-scatter: the full,
gathered size), the number of ranks `p`, the bandwidth `bw` in bytes/s per rank per direction and the
per-message latency `alpha` in seconds, and returns seconds. Links are full duplex (a rank sends and
receives at `bw` at the same time). Formulas:

- ring all-reduce (reduce-scatter + all-gather, Patarasuk & Yuan 2009):
      2 (p-1)/p * n/bw + 2 (p-1) alpha
- double binary tree all-reduce (Sanders, Speck & Traeff 2009; NCCL 2.4): pipelined reduce + broadcast
  over two complementary trees, each carrying half the data, reach full bandwidth at logarithmic latency:
      2 (p-1)/p * n/bw + 2 ceil(log2 p) alpha
- recursive halving-doubling all-reduce (Rabenseifner; Thakur, Rabenseifner & Gropp 2005), with
  p' = 2^floor(log2 p) and, when p is not a power of two, one extra exchange before and after:
      2 (p'-1)/p' * n/bw + 2 log2(p') alpha  [+ 2 (n/bw + alpha) if p != p']
- hierarchical all-reduce on k ranks per node and m nodes: reduce-scatter inside the node, ring
  all-reduce of n/k bytes across nodes by each of the k ranks at once (sharing the node's network
  bandwidth B_net, so each gets B_net/k), all-gather inside the node:
      2 (k-1)/k * n/bw_in + 2 (k-1) alpha_in + 2 (m-1)/m * n/B_net + 2 (m-1) alpha_net
- parameter server (push gradients, pull parameters) with s server shards: the time is set by the
  busiest NIC, per phase:
      dedicated servers: max(n/bw_worker, w n/(s bw_server)) per phase
      co-located (server shard j on worker j): max((w-1) n/s, (s-1) n/s) / bw per phase
  total = 2 phases + 2 alpha
- all-gather and reduce-scatter (ring): (p-1)/p * n/bw + (p-1) alpha
- broadcast: min(binomial tree ceil(log2 p) (alpha + n/bw), scatter + all-gather (van de Geijn)
  2 (p-1)/p n/bw + (ceil(log2 p) + p - 1) alpha)
- point-to-point: alpha + n/bw
"""

from __future__ import annotations

import math
from typing import Callable

from ..errors import InputError

# algorithm name -> function(n, p, bw, alpha) -> seconds  (all-reduce over one tier)
ALLREDUCE: dict[str, Callable[..., float]] = {}
# other collectives: name -> function
COLLECTIVES: dict[str, Callable[..., float]] = {}


def allreduce_algorithm(name: str):
    """Register an all-reduce algorithm over a single tier of ranks."""

    def deco(fn):
        ALLREDUCE[name] = fn
        return fn

    return deco


def collective(name: str):
    def deco(fn):
        COLLECTIVES[name] = fn
        return fn

    return deco


def _check(n: float, p: int, bw: float, alpha: float) -> None:
    if n < 0:
        raise InputError(f"message size must be >= 0 bytes, got {n}")
    if p < 1 or int(p) != p:
        raise InputError(f"ranks must be a positive integer, got {p}")
    if bw <= 0:
        raise InputError(f"bandwidth must be > 0 bytes/s, got {bw}")
    if alpha < 0:
        raise InputError(f"latency must be >= 0 s, got {alpha}")


def _log2ceil(p: int) -> int:
    return math.ceil(math.log2(p)) if p > 1 else 0


@allreduce_algorithm("ring")
def ring_allreduce(n: float, p: int, bw: float, alpha: float) -> float:
    """Ring all-reduce: 2(p-1)/p * n/bw + 2(p-1) alpha."""
    _check(n, p, bw, alpha)
    if p == 1 or n == 0:
        return 0.0
    return 2 * (p - 1) / p * n / bw + 2 * (p - 1) * alpha


@allreduce_algorithm("tree")
def tree_allreduce(n: float, p: int, bw: float, alpha: float) -> float:
    """Double binary tree all-reduce: 2(p-1)/p * n/bw + 2 ceil(log2 p) alpha."""
    _check(n, p, bw, alpha)
    if p == 1 or n == 0:
        return 0.0
    return 2 * (p - 1) / p * n / bw + 2 * _log2ceil(p) * alpha


@allreduce_algorithm("halving-doubling")
def halving_doubling_allreduce(n: float, p: int, bw: float, alpha: float) -> float:
    """Recursive halving (reduce-scatter) + recursive doubling (all-gather), Rabenseifner's algorithm."""
    _check(n, p, bw, alpha)
    if p == 1 or n == 0:
        return 0.0
    q = 2 ** int(math.floor(math.log2(p)))
    t = 2 * (q - 1) / q * n / bw + 2 * math.log2(q) * alpha
    if q != p:  # the p - q extra ranks first fold into partners, and get the result back at the end
        t += 2 * (n / bw + alpha)
    return t


def hierarchical_allreduce(n: float, k: int, m: int, bw_in: float, alpha_in: float, bw_net: float,
                           alpha_net: float) -> float:
    """Reduce-scatter in the node (k ranks), ring all-reduce of n/k across m nodes, all-gather in the node.

    `bw_net` is the node's aggregate network bandwidth; the k concurrent inter-node all-reduces share it.
    """
    _check(n, k, bw_in, alpha_in)
    if m < 1:
        raise InputError(f"nodes must be >= 1, got {m}")
    t = 0.0
    if k > 1:
        t += reduce_scatter(n, k, bw_in, alpha_in) + all_gather(n, k, bw_in, alpha_in)
    if m > 1:
        if bw_net <= 0:
            raise InputError("hierarchical all-reduce across nodes needs a network bandwidth > 0")
        t += ring_allreduce(n / k, m, bw_net / k, alpha_net)
    return t


def parameter_server(n: float, workers: int, servers: int, bw_worker: float, alpha: float,
                     bw_server: float | None = None, colocated: bool = False) -> float:
    """Push n bytes of gradients from every worker to `servers` shards, then pull n bytes of parameters.

    Each phase lasts as long as the busiest NIC needs. Dedicated servers (`colocated=False`) have
    bandwidth `bw_server` (default: same as workers); co-located shards live on `servers` of the workers.
    """
    _check(n, workers, bw_worker, alpha)
    if servers < 1:
        raise InputError(f"parameter servers must be >= 1, got {servers}")
    if n == 0:
        return 0.0
    if colocated:
        if servers > workers:
            raise InputError(f"co-located parameter servers ({servers}) cannot outnumber workers ({workers})")
        if workers == 1:
            return 0.0
        busiest = max((workers - 1) * n / servers, (servers - 1) * n / servers)
        phase = busiest / bw_worker
    else:
        bs = bw_server if bw_server is not None else bw_worker
        phase = max(n / bw_worker, workers * n / (servers * bs))
    return 2 * phase + 2 * alpha


@collective("all-gather")
def all_gather(n: float, p: int, bw: float, alpha: float) -> float:
    """Ring all-gather of a total of n bytes (n/p from each rank): (p-1)/p n/bw + (p-1) alpha."""
    _check(n, p, bw, alpha)
    if p == 1 or n == 0:
        return 0.0
    return (p - 1) / p * n / bw + (p - 1) * alpha


@collective("reduce-scatter")
def reduce_scatter(n: float, p: int, bw: float, alpha: float) -> float:
    """Ring reduce-scatter of n bytes (each rank ends with n/p reduced): (p-1)/p n/bw + (p-1) alpha."""
    _check(n, p, bw, alpha)
    if p == 1 or n == 0:
        return 0.0
    return (p - 1) / p * n / bw + (p - 1) * alpha


@collective("broadcast")
def broadcast(n: float, p: int, bw: float, alpha: float) -> float:
    """The faster of a binomial tree and scatter + ring all-gather (van de Geijn)."""
    _check(n, p, bw, alpha)
    if p == 1 or n == 0:
        return 0.0
    lg = _log2ceil(p)
    binomial = lg * (alpha + n / bw)
    scatter_allgather = 2 * (p - 1) / p * n / bw + (lg + p - 1) * alpha
    return min(binomial, scatter_allgather)


@collective("p2p")
def point_to_point(n: float, p: int, bw: float, alpha: float) -> float:
    """One message of n bytes between two ranks: alpha + n/bw (p is ignored)."""
    _check(n, max(1, p), bw, alpha)
    if n == 0:
        return 0.0
    return alpha + n / bw


COLLECTIVES["all-reduce"] = ring_allreduce


def allreduce(algorithm: str, n: float, p: int, bw: float, alpha: float) -> float:
    """All-reduce of n bytes over p ranks of one tier with a registered algorithm."""
    try:
        fn = ALLREDUCE[algorithm]
    except KeyError:
        raise InputError(f"unknown all-reduce algorithm {algorithm!r}; known: {', '.join(ALLREDUCE)}") from None
    return fn(n, p, bw, alpha)
