"""A parallel plan (data x tensor x pipeline degrees, micro-batches, schedule) and its placement on a system.

Ranks are numbered rank = ((d * pp + s) * cp + c) * tp + t (tensor-parallel index t innermost, then the
context-parallel index c, then the pipeline stage s, then the data-parallel replica d; Megatron's tp-cp-dp-pp
order with the stage outside cp) and filled node by node, so tensor parallelism stays inside a node (over
NVLink / NVSwitch / PCIe), context parallelism next to it, pipeline stages spill across nodes only when
tp x cp x pp exceeds a node, and data parallelism spans nodes. Each dimension gets the link tier its group
actually crosses. Devices = dp x tp x pp x cp: the cp ranks of a replica share its samples (each holds 1/cp of
every sequence), so the global batch counts dp replicas, and gradients are averaged over the dp x cp ranks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..hardware.topology import System
from . import collectives as C
from ..errors import format_pydantic_error

SCHEDULES = ("1f1b", "gpipe")
ALLREDUCE_CHOICES = C.allreduce_choices()  # at import; the registry may grow: check with C.allreduce_choices()


class Plan(BaseModel):
    """Degrees of data (dp), tensor (tp) and pipeline (pp) parallelism; micro-batches and schedule for pp > 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dp: int = Field(default=1, gt=0)
    tp: int = Field(default=1, gt=0)
    pp: int = Field(default=1, gt=0)
    microbatches: int | None = Field(default=None, gt=0, description="per iteration and replica (pp > 1); default pp")
    schedule: Literal["1f1b", "gpipe"] = "1f1b"
    cp: int = Field(default=1, gt=0, description="context-parallel degree (the setup's context_parallel)")

    @property
    def devices(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def grad_ranks(self) -> int:
        """Ranks a gradient is averaged over: the data-parallel replicas times the context-parallel ranks."""
        return self.dp * self.cp

    @property
    def m(self) -> int:
        """Micro-batches actually used: 1 without a pipeline (a 1-stage pipeline is no pipeline)."""
        if self.pp == 1:
            return 1
        return self.microbatches or self.pp


def make_plan(plan: dict | Plan | None, devices: int, cp: int = 1) -> Plan:
    """Validate the plan dict; without one, all `devices` are data-parallel (over `cp` context-parallel ranks)."""
    if plan is None:
        if devices % cp:
            raise InputError(f"devices={devices} is not a multiple of context_parallel={cp}")
        return Plan(dp=devices // cp, cp=cp)
    if isinstance(plan, Plan):
        p = plan
    else:
        if not isinstance(plan, dict):
            raise InputError(f"plan must be a dict like {{'dp': 8, 'tp': 1, 'pp': 1, 'microbatches': 4}}, got {plan!r}")
        known = set(Plan.model_fields)
        bad = set(plan) - known
        if bad:
            raise InputError(f"plan: unknown key(s) {sorted(bad)}; known: {', '.join(sorted(known))}")
        try:
            p = Plan(**plan)
        except Exception as e:  # pydantic ValidationError

            msg = format_pydantic_error(e, prefix="plan.") if hasattr(e, "errors") else str(e)
            raise InputError(msg) from None
    if cp != 1 and p.cp not in (1, cp):
        raise InputError(f"plan cp={p.cp} but context_parallel={cp}; give one of them")
    if cp != 1:
        p = p.model_copy(update={"cp": cp})
    if devices != 1 and p.devices != devices:
        dims = " x ".join(f"{k}" for k in ("dp", "tp", "pp") + (("cp",) if p.cp > 1 else ()))
        vals = " x ".join(str(getattr(p, k)) for k in ("dp", "tp", "pp") + (("cp",) if p.cp > 1 else ()))
        raise InputError(f"plan {dims} = {vals} = {p.devices} devices, but devices={devices}; "
                         f"make them equal (or leave devices out)")
    return p


@dataclass(frozen=True)
class Tier:
    """A set of ranks that communicate, and the bandwidth/latency their collective runs at."""

    name: str  # e.g. 'nvlink2 (in node)'
    ranks: int
    bandwidth_Bps: float
    latency_s: float


@dataclass(frozen=True)
class Placement:
    plan: Plan
    devices: int
    nodes: int
    devices_per_node: int  # used per node
    tp_tier: Tier
    pp_tiers: tuple[Tier, ...]  # one per stage boundary
    dp_ranks_per_node: int
    dp_nodes: int
    dp_groups_per_node: int
    intra: Tier
    net_bandwidth_Bps: float  # the node's aggregate network bandwidth (0 with one node)
    net_latency_s: float
    cp_tier: Tier | None = None  # the context-parallel ring's slowest hop (cp > 1)


def place(plan: Plan, system: System, nodes: int | None = None) -> Placement:
    """Map the plan onto the system: nodes used, and the link tier of each parallel dimension."""
    n = plan.devices
    k = system.devices_per_node
    if nodes is not None:
        if nodes < 1:
            raise InputError(f"nodes must be >= 1, got {nodes}")
        if nodes > system.max_nodes:
            raise InputError(f"{nodes} nodes asked but '{system.name}' has {system.max_nodes}")
        if n % nodes:
            raise InputError(f"{n} devices cannot be spread evenly over {nodes} nodes")
        per = n // nodes
        if per > k:
            raise InputError(f"{n} devices on {nodes} nodes is {per} per node, but a node of '{system.name}' has {k}")
        used_nodes = nodes
    else:
        if n > system.max_devices:
            raise InputError(f"{n} devices asked but '{system.name}' has {system.max_devices} "
                             f"({system.max_nodes} node(s) x {k} devices)")
        used_nodes = math.ceil(n / k)
        per = min(n, k)
        if n % per:
            raise InputError(f"{n} devices do not fill whole nodes of {k}; use a multiple of {k} or set nodes")
    if used_nodes > 1 and system.network is None:
        raise InputError(f"'{system.name}' has no network between nodes")
    if plan.tp > per:
        raise InputError(f"tp={plan.tp} is more than the {per} devices per node; tensor parallelism must stay inside a node")
    if per % plan.tp:
        raise InputError(f"tp={plan.tp} does not divide the {per} devices used per node")
    intra_name = system.fabric.name if system.fabric is not None else system.fabric_type
    intra = Tier(f"{intra_name} (in node)", per, system.fabric_bandwidth_Bps, system.fabric_latency_s)
    net_bw = system.network_bandwidth_Bps(used_nodes)
    net_lat = system.network_latency_s
    net_name = f"{system.nics} x {system.network.name}" if system.network is not None else "none"
    tp_tier = Tier(intra.name, plan.tp, intra.bandwidth_Bps, intra.latency_s)
    tc = plan.tp * plan.cp  # ranks of one (replica, stage)
    # pipeline boundaries: a boundary crosses nodes if, for some replica, stages s and s+1 sit on different nodes
    pp_tiers = []
    for s in range(plan.pp - 1):
        cross = any(((d * plan.pp + s) * tc) // per != ((d * plan.pp + s + 1) * tc) // per
                    for d in range(plan.dp))
        if cross:
            # one stage's tp ranks send in parallel; each uses its share of the node's network
            groups_on_node = max(1, per // plan.tp)
            pp_tiers.append(Tier(f"{net_name} (across nodes)", 2, net_bw / groups_on_node, net_lat))
        else:
            pp_tiers.append(Tier(intra.name, 2, intra.bandwidth_Bps, intra.latency_s))
    cp_in_node = tc <= per and per % tc == 0
    cp_tier = None
    if plan.cp > 1:  # a ring crossing nodes: the tp ranks at a node's edge share its network
        cp_tier = Tier(intra.name, plan.cp, intra.bandwidth_Bps, intra.latency_s) if cp_in_node else \
            Tier(f"{net_name} (across nodes)", plan.cp, net_bw / plan.tp, net_lat)
    tpp = tc * plan.pp
    if tpp <= per and per % tpp == 0:  # whole replicas in a node: all their cp ranks too
        k_dp = min(plan.dp, per // tpp) * plan.cp
    else:  # one replica's (stage's) cp ranks in a node, or as many as fit
        k_dp = plan.cp if cp_in_node else max(1, min(plan.cp, per // plan.tp))
    m_dp = math.ceil(plan.grad_ranks / k_dp)
    return Placement(plan, n, used_nodes, per, tp_tier, tuple(pp_tiers), k_dp, m_dp, per // k_dp if k_dp else per,
                     intra, net_bw, net_lat, cp_tier)


def dp_allreduce_fn(pl: Placement, system: System, algorithm: str, ps_servers: int | None = None,
                    ps_colocated: bool = False) -> tuple[Callable[[float], float], dict[str, Any]]:
    """seconds(n_bytes) of one data-parallel gradient all-reduce, and a description of the tiers used."""
    if algorithm not in C.allreduce_choices():
        raise InputError(f"allreduce must be one of {', '.join(C.allreduce_choices())}, got {algorithm!r}")
    dp = pl.plan.grad_ranks
    k, m = pl.dp_ranks_per_node, pl.dp_nodes
    intra = pl.intra
    # this data-parallel group's share of the node's network (other groups on the node use the rest)
    net_share = pl.net_bandwidth_Bps / pl.dp_groups_per_node if pl.net_bandwidth_Bps else 0.0
    info: dict[str, Any] = {"algorithm": algorithm, "ranks": dp, "ranks_per_node": k, "nodes": m,
                            "intra_bandwidth_Bps": intra.bandwidth_Bps, "intra_latency_s": intra.latency_s,
                            "intra_link": intra.name}
    if m > 1:
        info.update(network_bandwidth_Bps=net_share, network_latency_s=pl.net_latency_s)
    if dp == 1:
        return (lambda n: 0.0), info
    if algorithm == "ps":
        return _ps_fn(pl, system, k, m, net_share, ps_servers, ps_colocated, info)
    if algorithm == "hierarchical":
        def f(n: float) -> float:
            return C.hierarchical_allreduce(n, k, m, intra.bandwidth_Bps, intra.latency_s, net_share, pl.net_latency_s)
        return f, info
    # flat algorithms run at the slowest tier they cross
    if m > 1:
        bw = min(intra.bandwidth_Bps, net_share) if k > 1 else net_share
        lat = max(intra.latency_s, pl.net_latency_s)
    else:
        bw, lat = intra.bandwidth_Bps, intra.latency_s
    info.update(bandwidth_Bps=bw, latency_s=lat)
    fn = C.ALLREDUCE[algorithm]
    return (lambda n: fn(n, dp, bw, lat)), info


def _ps_fn(pl, system, k, m, net_share, servers, colocated, info):
    """Parameter-server synchronisation: across nodes after an in-node reduce, or on the host inside one node."""
    intra = pl.intra
    if m > 1:
        s = servers or (m if colocated else 1)
        info.update(ps_workers=m, ps_servers=s, ps_colocated=colocated, ps_where="network")

        def f(n: float) -> float:
            local = 0.0
            if k > 1:  # reduce inside the node, and broadcast the new parameters back
                local = C.reduce_scatter(n, k, intra.bandwidth_Bps, intra.latency_s) + \
                    C.all_gather(n, k, intra.bandwidth_Bps, intra.latency_s)
            return local + C.parameter_server(n, m, s, net_share, pl.net_latency_s, bw_server=net_share,
                                              colocated=colocated)
        return f, info
    # one node: the server is the host CPU; every device pushes through its share of its PCIe group's uplink
    links = system.host_links
    groups = system.groups
    w_bw = min(l.effective_bandwidth_Bps / len(g) for l, g in zip(links, groups))
    s_bw = sum(l.effective_bandwidth_Bps for l in links)
    lat = max(l.latency_s for l in links)
    s = servers or 1
    info.update(ps_workers=k, ps_servers=s, ps_colocated=False, ps_where="host memory over PCIe",
                worker_bandwidth_Bps=w_bw, server_bandwidth_Bps=s_bw)
    return (lambda n: C.parameter_server(n, k, 1, w_bw, lat, bw_server=s_bw)), info
