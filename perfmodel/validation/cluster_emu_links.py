"""`perfmodel calibrate --links` for the cluster-emu suite: fit the gloo links of an emulated cluster (or, under
torchrun, of a real one) and write link profiles. Kept apart from the suite so the CLI loads it without the model."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..paths import repo_root
from ..store import append_jsonl
from .cluster_emu_fit import LinkFit, medians, save_link
from .cluster_emu_net import ClusterSpec, EmuLinkSpec, EmulatedCluster, unavailable_reason
from .cluster_emu_run import LINK_ROUNDS, LINK_SIZES, measure_links
from .storage import measurement_store

SUITE_NAME = "cluster-emu"
LINKS = {"emu-2g": 2e9, "emu-1g": 1e9, "emu-500m": 500e6}  # link profile name -> emulated node link rate (bit/s)


def emu_spec(link: str, nodes: int = 2) -> ClusterSpec:
    return ClusterSpec(links=tuple(EmuLinkSpec(rate_bps=LINKS[link]) for _ in range(nodes)))


def _base(run_id: str) -> dict[str, Any]:
    return {"schema": "perfmodel.measurement/1", "suite": SUITE_NAME, "run_id": run_id}


def measure_link_profile(link: str, base: dict, store: Path, say, save_to: Path | None = None) -> LinkFit:
    """Calibrate one emulated link speed (inside a fresh emulated cluster); record it; optionally save the YAML."""
    say(f"link {link}: gloo all-reduce and send/recv, 2 nodes, 4 KiB .. 64 MiB ...")
    with EmulatedCluster(emu_spec(link)) as cl:
        fit = measure_links(cl, link)
    append_jsonl(store, {**base, "kind": "link_fit", **fit.to_dict()})
    a, b = fit.fit("allreduce")
    say(f"  alpha {a * 1e6:.0f} us, B {b / 1e6:.1f} MB/s")
    if save_to is not None:
        say(f"  wrote {save_link(fit.link(), save_to)}")
        if fit.rpc:
            say(f"  wrote {save_link(fit.rpc_link(), save_to)}")
    return fit


def calibrate_links(out_dir: str | Path | None = None, say=lambda m: None) -> list[Path]:
    """`perfmodel calibrate --links`: under torchrun (RANK in the environment) fit this job's gloo links across
    its nodes; otherwise fit each emulated link speed (needs root). Writes link profiles into `out_dir`
    (default hardware_profiles/links/calibrated/); returns their paths (none on ranks other than 0)."""
    folder = Path(out_dir) if out_dir else (repo_root() or Path.cwd()) / "hardware_profiles" / "links" / "calibrated"
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        from ..torch.cluster_workers import links_under_torchrun  # imports torch

        res = links_under_torchrun(LINK_SIZES, LINK_ROUNDS)
        if res is None:
            return []
        fit = LinkFit(f"cluster-gloo-{len(res)}ranks", len(res), tuple(medians([r["allreduce"] for r in res])),
                      tuple(medians([r["sendrecv"] for r in res[:2]])), {"torchrun_world": len(res)},
                      _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        return [save_link(fit.link(), folder)]
    reason = unavailable_reason()
    if reason:
        raise InputError(f"calibrate --links: not under torchrun, and {reason}")
    base = _base(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    store = measurement_store(SUITE_NAME)
    for link in LINKS:
        measure_link_profile(link, base, store, say, folder)
    return [folder / f"{link}.yaml" for link in LINKS]
