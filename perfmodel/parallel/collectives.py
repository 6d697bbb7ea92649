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
- all-to-all, direct (pairwise exchange; n = one rank's whole send buffer, n/p to each peer):
      (p-1)/p * n/bw + (p-1) alpha
- point-to-point: alpha + n/bw

Tiers (as ASTRA-sim composes collectives over the dimensions of a topology): `Tier(ranks, bandwidth_Bps,
latency_s, shared)`, innermost first (e.g. GPUs of a node over NVLink, then nodes over the network). A
`shared` tier's bandwidth belongs to the whole group of inner ranks (a node's NICs), so when all of them
use it at once each gets bandwidth / (product of inner ranks). `collective_time(collective, n, tiers,
algorithm)` runs either
- "hierarchical": composed per tier. All-reduce: reduce-scatter on tiers 0..k-2 (each on the 1/p_i
  shard left by the tiers inside), all-reduce of the remaining shard on the outermost tier, all-gather
  back out to in. Reduce-scatter / all-gather: the same phases alone. All-to-all: one all-to-all of the
  whole buffer per tier. Each tier uses its own algorithm (`algorithms`, default DEFAULT_ALGORITHM; a
  tier algorithm with no reduce-scatter/all-gather form, such as tree, runs those phases as ring); or
- a flat algorithm over all ranks at once, at the slowest bandwidth and the largest latency among the
  tiers with more than one rank (a ring laid out node by node crosses a shared tier once per node, so a
  shared tier gives its whole bandwidth).
A new algorithm is one registered function (`@algorithm("all-reduce", "name")`); the CLI's --allreduce
choices come from `allreduce_choices()`.

Backends (hardware/backends.py, hardware_profiles/backends/*.yaml): a collective library names, per collective,
the registered algorithm it runs and its local staging copies. `backend_time` prices one collective as the backend
runs it: the algorithm's formula plus the staging copies as memory work on the device's rates (engine
stage_time: bytes over the memory bandwidth, fresh or cold pages of a buffer allocated for the call). gloo's
reduce-scatter, for one, is "via-all-reduce": it clones the input, all-reduces the whole of it and keeps its chunk,
so it moves an all-reduce's bytes, twice the ring reduce-scatter's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..errors import InputError
from ..hardware.backends import backend_for
from ..ops.base import Work
from ..step import stage_time

Formula = Callable[[float, int, float, float], float]  # (n bytes, p ranks, bw B/s, alpha s) -> seconds
Formula1 = Callable[[float], float]  # n bytes -> seconds (one group's collective)
# collective -> algorithm name -> formula over one tier
ALGORITHMS: dict[str, dict[str, Formula]] = {}
# collective -> its default single-tier formula (the first algorithm registered for it)
COLLECTIVES: dict[str, Formula] = {}
# all-reduce algorithm name -> formula over one tier (the "all-reduce" entry of ALGORITHMS)
ALLREDUCE: dict[str, Formula] = ALGORITHMS.setdefault("all-reduce", {})
# schemes beyond one tier that the data-parallel model offers besides the registered all-reduce algorithms
ALLREDUCE_SCHEMES = ("hierarchical", "ps")


def algorithm(collective_name: str, name: str):
    """Register `name` as an algorithm of `collective_name` over a single tier of ranks."""

    def deco(fn: Formula) -> Formula:
        ALGORITHMS.setdefault(collective_name, {})[name] = fn
        COLLECTIVES.setdefault(collective_name, fn)
        return fn

    return deco


def allreduce_algorithm(name: str):
    """Register an all-reduce algorithm over a single tier of ranks."""
    return algorithm("all-reduce", name)


def allreduce_choices() -> tuple[str, ...]:
    """The data-parallel all-reduce choices (CLI --allreduce): registered algorithms, then the schemes."""
    return tuple(ALLREDUCE) + ALLREDUCE_SCHEMES


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

    `bw_net` is the node's aggregate network bandwidth; the k concurrent inter-node all-reduces share it
    (a shared tier; see hierarchical_time).
    """
    _check(n, k, bw_in, alpha_in)
    if m < 1:
        raise InputError(f"nodes must be >= 1, got {m}")
    if m > 1 and bw_net <= 0:
        raise InputError("hierarchical all-reduce across nodes needs a network bandwidth > 0")
    tiers = (Tier(k, bw_in, alpha_in),) + ((Tier(m, bw_net, alpha_net, shared=True),) if m > 1 else ())
    return hierarchical_time("all-reduce", n, tiers)


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


@algorithm("all-gather", "ring")
def all_gather(n: float, p: int, bw: float, alpha: float) -> float:
    """Ring all-gather of a total of n bytes (n/p from each rank): (p-1)/p n/bw + (p-1) alpha."""
    return _p_minus_1_steps(n, p, bw, alpha)


def _p_minus_1_steps(n: float, p: int, bw: float, alpha: float) -> float:
    """p-1 steps, each moving n/p bytes per rank: (p-1)/p n/bw + (p-1) alpha (0 for one rank or no bytes)."""
    _check(n, p, bw, alpha)
    if p == 1 or n == 0:
        return 0.0
    return (p - 1) / p * n / bw + (p - 1) * alpha


@algorithm("reduce-scatter", "ring")
def reduce_scatter(n: float, p: int, bw: float, alpha: float) -> float:
    """Ring reduce-scatter of n bytes (each rank ends with n/p reduced): (p-1)/p n/bw + (p-1) alpha."""
    return _p_minus_1_steps(n, p, bw, alpha)


@algorithm("broadcast", "auto")
def broadcast(n: float, p: int, bw: float, alpha: float) -> float:
    """The faster of a binomial tree and scatter + ring all-gather (van de Geijn)."""
    _check(n, p, bw, alpha)
    if p == 1 or n == 0:
        return 0.0
    lg = _log2ceil(p)
    binomial = lg * (alpha + n / bw)
    scatter_allgather = 2 * (p - 1) / p * n / bw + (lg + p - 1) * alpha
    return min(binomial, scatter_allgather)


@algorithm("p2p", "direct")
def point_to_point(n: float, p: int, bw: float, alpha: float) -> float:
    """One message of n bytes between two ranks: alpha + n/bw (p is ignored)."""
    _check(n, max(1, p), bw, alpha)
    if n == 0:
        return 0.0
    return alpha + n / bw


@algorithm("reduce-scatter", "halving-doubling")
def halving_reduce_scatter(n: float, p: int, bw: float, alpha: float) -> float:
    """Recursive-halving reduce-scatter: the first half of Rabenseifner's all-reduce."""
    return halving_doubling_allreduce(n, p, bw, alpha) / 2


@algorithm("all-gather", "halving-doubling")
def doubling_all_gather(n: float, p: int, bw: float, alpha: float) -> float:
    """Recursive-doubling all-gather: the second half of Rabenseifner's all-reduce."""
    return halving_doubling_allreduce(n, p, bw, alpha) / 2


@algorithm("reduce-scatter", "via-all-reduce")
def reduce_scatter_via_allreduce(n: float, p: int, bw: float, alpha: float) -> float:
    """Reduce-scatter run as a ring all-reduce of the whole n bytes, each rank keeping its chunk (gloo):
    2(p-1)/p n/bw + 2(p-1) alpha, twice the ring reduce-scatter."""
    return ring_allreduce(n, p, bw, alpha)


@algorithm("all-to-all", "direct")
def all_to_all(n: float, p: int, bw: float, alpha: float) -> float:
    """Pairwise-exchange all-to-all of a rank's n-byte buffer (n/p to each peer): (p-1)/p n/bw + (p-1) alpha."""
    return _p_minus_1_steps(n, p, bw, alpha)


COLLECTIVES["all-reduce"] = ring_allreduce


def allreduce(algorithm: str, n: float, p: int, bw: float, alpha: float) -> float:
    """All-reduce of n bytes over p ranks of one tier with a registered algorithm."""
    try:
        fn = ALLREDUCE[algorithm]
    except KeyError:
        raise InputError(f"unknown all-reduce algorithm {algorithm!r}; known: {', '.join(ALLREDUCE)}") from None
    return fn(n, p, bw, alpha)


# ---------------------------------------------------------------------------------------------
# collective libraries (backends)


def staging_works(backend, collective_name: str, n: float, p: int) -> tuple[Work, ...]:
    """The local copies `backend` makes around one `collective_name` of n bytes over p ranks, as memory work: per
    staging pass one kernel reading and writing its multiples of n (of n/p for a pass on the rank's share), writing
    into a new buffer of n bytes where the pass allocates one (its pages cost what DeviceTraits' fresh / cold buffer
    costs say), else into an existing buffer (no page cost)."""
    if n < 0 or p < 1:
        raise InputError(f"staging needs n >= 0 bytes and p >= 1 ranks, got n={n}, p={p}")
    out = []
    for s in backend.impl(collective_name).staging:
        b = n / p if s.share == "rank" else n
        if b * (s.read + s.written) > 0:
            out.append(Work("memory", bytes_read=s.read * b, bytes_written=s.written * b,
                            allocs=(float(n),) if s.allocated else (0.0,)))  # (0.0,): an existing buffer
    return tuple(out)


def backend_time(backend, collective_name: str, n: float, p: int, bw: float, alpha: float, rates=None) -> float:
    """Seconds of `collective_name` of n bytes over p ranks of one tier as `backend` (hardware.backends.Backend)
    runs it: its algorithm's formula, plus its staging copies (staging_works) timed on `rates` (engine Rates of the
    rank's device; None: no staging cost). Nothing for one rank or no bytes."""
    t = formula(collective_name, backend.impl(collective_name).algorithm)(n, p, bw, alpha)
    if rates is None or p == 1 or n == 0:
        return t
    works = staging_works(backend, collective_name, n, p)
    return t + (stage_time(works, rates).time_s if works else 0.0)


def backend_fns(backend, p: int, bw: float, alpha: float, rates=None) -> tuple[Formula1, Formula1]:
    """(all-gather seconds(n), reduce-scatter seconds(n)) of a flat group of p ranks at bandwidth bw and latency
    alpha, as `backend` runs them (backend_time)."""
    return (lambda n: backend_time(backend, "all-gather", n, p, bw, alpha, rates),
            lambda n: backend_time(backend, "reduce-scatter", n, p, bw, alpha, rates))


def dp_backend_fns(device_type: str, info: dict, rates=None) -> tuple[Formula1, Formula1] | None:
    """(all-gather seconds(n), reduce-scatter seconds(n)) of a flat data-parallel group as the collective library
    of `device_type` runs them (hardware.backends.backend_for, backend_fns); `info` describes the group as
    plan.dp_allreduce_fn does (ranks, and bandwidth_Bps / latency_s for a flat algorithm). None for a group that is
    not flat (hierarchical, parameter server), of one rank, or a device type no backend profile claims."""
    backend = backend_for(device_type)
    p = int(info.get("ranks", 1))
    if backend is None or p < 2 or "bandwidth_Bps" not in info or info.get("algorithm") in ALLREDUCE_SCHEMES:
        return None
    return backend_fns(backend, p, float(info["bandwidth_Bps"]), float(info["latency_s"]), rates)


# ---------------------------------------------------------------------------------------------
# composition over tiers


@dataclass(frozen=True, slots=True)
class Tier:
    """One dimension of the topology: `ranks` per group, bandwidth per direction and per-message latency.

    `bandwidth_Bps` is per rank, or, when `shared`, for the whole group of inner-tier ranks behind it
    (e.g. a node's NICs used by all its GPUs).
    """

    ranks: int
    bandwidth_Bps: float
    latency_s: float
    shared: bool = False
    name: str = ""


DEFAULT_ALGORITHM = {"all-reduce": "ring", "reduce-scatter": "ring", "all-gather": "ring", "all-to-all": "direct",
                     "broadcast": "auto", "p2p": "direct"}


def formula(collective_name: str, name: str | None = None) -> Formula:
    """The single-tier formula of `collective_name` with algorithm `name` (default DEFAULT_ALGORITHM)."""
    algos = ALGORITHMS.get(collective_name)
    if algos is None:
        raise InputError(f"unknown collective {collective_name!r}; known: {', '.join(ALGORITHMS)}")
    key = name or DEFAULT_ALGORITHM[collective_name]
    if key not in algos:
        raise InputError(f"unknown {collective_name} algorithm {key!r}; known: {', '.join(algos)}")
    return algos[key]


def _phase(collective_name: str, name: str) -> Formula:
    """A reduce-scatter/all-gather phase of a hierarchical collective: the tier's algorithm if it has one, else ring."""
    return ALGORITHMS[collective_name].get(name) or ALGORITHMS[collective_name]["ring"]


def _flow_bandwidth(tiers: tuple[Tier, ...], i: int) -> float:
    """Bandwidth of one flow on tier i when every rank of the tiers inside runs its own collective there."""
    t = tiers[i]
    if not t.shared:
        return t.bandwidth_Bps
    return t.bandwidth_Bps / math.prod(u.ranks for u in tiers[:i])


def hierarchical_time(collective_name: str, n: float, tiers, algorithms=None) -> float:
    """`collective_name` of n bytes composed over `tiers` (innermost first); see the module docstring."""
    tiers = tuple(tiers)
    algos = tuple(algorithms) if algorithms else (DEFAULT_ALGORITHM.get(collective_name, "ring"),) * len(tiers)
    if len(algos) != len(tiers):
        raise InputError(f"{len(tiers)} tiers need {len(tiers)} algorithms, got {len(algos)}")
    if collective_name == "all-to-all":
        return sum(formula("all-to-all", a)(n, t.ranks, _flow_bandwidth(tiers, i), t.latency_s)
                   for i, (t, a) in enumerate(zip(tiers, algos)))
    if collective_name not in ("all-reduce", "reduce-scatter", "all-gather"):
        raise InputError(f"{collective_name} has no hierarchical form; use a flat algorithm")
    last = len(tiers) - 1 if collective_name == "all-reduce" else len(tiers)
    t_total, shard = 0.0, n
    for i in range(last):  # reduce-scatter (or all-gather) phases, inside out
        t = tiers[i]
        phase = "all-gather" if collective_name == "all-gather" else "reduce-scatter"
        t_total += _phase(phase, algos[i])(shard, t.ranks, _flow_bandwidth(tiers, i), t.latency_s)
        if collective_name == "all-reduce":  # and the all-gather back out
            t_total += _phase("all-gather", algos[i])(shard, t.ranks, _flow_bandwidth(tiers, i), t.latency_s)
        shard /= t.ranks
    if collective_name == "all-reduce" and tiers:
        t = tiers[-1]
        t_total += formula("all-reduce", algos[-1])(shard, t.ranks, _flow_bandwidth(tiers, last), t.latency_s)
    return t_total


def flat_time(collective_name: str, n: float, tiers, name: str | None = None) -> float:
    """`collective_name` with one algorithm over all ranks of `tiers`, at the slowest tier that has > 1 rank."""
    tiers = tuple(tiers)
    p = math.prod(t.ranks for t in tiers)
    used = [t for t in tiers if t.ranks > 1] or list(tiers[:1])
    if not used:
        return 0.0
    bw = min(t.bandwidth_Bps for t in used)
    alpha = max(t.latency_s for t in used)
    return formula(collective_name, name)(n, p, bw, alpha)


def collective_time(collective_name: str, n: float, tiers, algorithm_name: str | None = None,
                    algorithms=None) -> float:
    """Seconds of `collective_name` of n bytes over `tiers`: "hierarchical" composes per tier (with
    per-tier `algorithms`), any other name runs that algorithm flat over all ranks."""
    if algorithm_name == "hierarchical":
        return hierarchical_time(collective_name, n, tiers, algorithms)
    return flat_time(collective_name, n, tiers, algorithm_name)


def system_tiers(system, ranks_per_node: int, nodes: int, groups_per_node: int = 1) -> tuple[Tier, ...]:
    """The tiers a group of `ranks_per_node` x `nodes` ranks of `system` (a hardware.topology.System) spans.

    In the node: the device fabric (per device bandwidth and latency). Across nodes: the node's network
    bandwidth, shared by the node's ranks of this group and divided among `groups_per_node` groups that
    communicate at the same time (e.g. the data-parallel groups of different tensor/pipeline ranks).
    """
    inner = Tier(ranks_per_node, system.fabric_bandwidth_Bps, system.fabric_latency_s,
                 name=system.fabric.name if system.fabric is not None else system.fabric_type)
    if nodes <= 1:
        return (inner,)
    net = system.network_bandwidth_Bps(nodes) / groups_per_node
    return inner, Tier(nodes, net, system.network_latency_s, shared=True,
                       name=system.network.name if system.network is not None else "network")
