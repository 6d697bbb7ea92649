"""Alpha-beta link fits from collective timings (torch-free), and the link profile they give.

All-reduce over p ranks (ring): T(n) = 2(p-1)/p * n/B + 2(p-1) alpha. Send/recv round trip of n bytes:
T(n) = 2 (alpha + n/B). Both are linear in n, T = c0 + c1 n, fitted by least squares on the relative error
(each point weighted by 1/T) so that small and large messages count alike.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from ..calibration.links import PATTERNS, fit_alpha_beta, fit_line  # noqa: F401  (re-exported)
from ..hardware.schema import Link
from ..store import atomic_write_text
from .cluster_emu_net import BURST_BYTES

SHAPED_MIN_BYTES = 16 * BURST_BYTES  # messages this large go at the shaped rate (the burst is <= 1/16 of them)

def medians(per_rank: Sequence[dict[str, list[float]]]) -> list[tuple[int, float]]:
    """(bytes, median over repetitions of the slowest rank's time) per size."""
    out = []
    for key in per_rank[0]:
        reps = zip(*(r[key] for r in per_rank))
        out.append((int(key), statistics.median(max(x) for x in reps)))
    return sorted(out)


@dataclass(frozen=True)
class LinkFit:
    """One link calibration: fitted alpha/B per pattern and the points they came from."""

    name: str
    ranks: int
    allreduce: tuple[tuple[int, float], ...]
    sendrecv: tuple[tuple[int, float], ...]
    topology: dict[str, Any]
    created_utc: str
    rpc: tuple[tuple[int, float], ...] = ()  # torch.distributed.rpc round trips (TensorPipe TCP), when measured

    def fit(self, pattern: str = "allreduce") -> tuple[float, float]:
        """(alpha, B) of the all-reduce, the gloo send/recv round trip or the rpc round trip ("rpc").

        Two regimes, because tbf lets a burst of BURST_BYTES through unshaped: B from the line through the
        messages of at least SHAPED_MIN_BYTES (shaped at the link's rate), alpha from the fastest message below
        the burst (unshaped: its time is the latency). One line through all sizes read 113 MB/s off a 1 Gbit/s link
        whose 64 MiB all-reduce ran at 88 MB/s."""
        pts = {"allreduce": self.allreduce, "sendrecv": self.sendrecv, "rpc": self.rpc}[pattern]
        kind = "allreduce" if pattern == "allreduce" else "sendrecv"  # an rpc is a round trip like send/recv
        ranks = self.ranks if pattern == "allreduce" else 2
        big = [x for x in pts if x[0] >= SHAPED_MIN_BYTES]
        if len(big) < 2:
            return fit_alpha_beta(pts, kind, ranks)
        _, bw = fit_alpha_beta(big, kind, ranks)
        k0, _ = PATTERNS[kind](ranks)
        lat = min((t for n, t in pts if n < BURST_BYTES), default=0.0)
        return lat / k0, bw

    def rpc_link(self) -> Link:
        """The link as parameter-server traffic sees it: the rpc round-trip fit (point-to-point, per direction)."""
        alpha, bw = self.fit("rpc")
        pts = ", ".join(f"{n / 1024:.0f} KiB: {t * 1e3:.2f} ms" for n, t in self.rpc)
        return Link(name=f"{self.name}-rpc", type="ethernet", bandwidth=bw, latency=alpha, efficiency=1.0,
                    source=f"perfmodel cluster-emu: torch.distributed.rpc round trips (TensorPipe TCP), {self.created_utc}, "
                           f"topology {self.topology}",
                    notes=f"alpha-beta fit of rpc round trips T = 2 (alpha + n/B) (B from messages >= 1 MiB, alpha "
                          f"from the fastest message under tbf's burst) to median times ({pts})")

    def link(self) -> Link:
        """The link profile: the all-reduce fit (what data-parallel training runs)."""
        alpha, bw = self.fit("allreduce")
        a2, b2 = self.fit("sendrecv")
        pts = ", ".join(f"{n / 1024:.0f} KiB: {t * 1e3:.2f} ms" for n, t in self.allreduce)
        return Link(name=self.name, type="ethernet", bandwidth=bw, latency=alpha, efficiency=1.0,
                    source=f"perfmodel calibrate --links: gloo all-reduce over {self.ranks} ranks, {self.created_utc}, "
                           f"topology {self.topology}",
                    notes=f"alpha-beta fit of ring all-reduce (B from messages >= 1 MiB, alpha from the fastest message "
                          f"under tbf's burst) to median times ({pts}); "
                          f"send/recv round trips give alpha {a2 * 1e6:.0f} us, B {b2 / 1e6:.1f} MB/s.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for p in ("allreduce", "sendrecv", "rpc")[:3 if self.rpc else 2]:
            a, b = self.fit(p)
            d[f"{p}_alpha_s"], d[f"{p}_bandwidth_Bps"] = a, b
        return d

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> "LinkFit":
        return cls(r["name"], int(r["ranks"]), tuple((int(n), float(t)) for n, t in r["allreduce"]),
                   tuple((int(n), float(t)) for n, t in r["sendrecv"]), dict(r["topology"]), r["created_utc"],
                   tuple((int(n), float(t)) for n, t in r.get("rpc", ())))


def save_link(link: Link, folder: str | Path) -> Path:
    """Write `link` as hardware_profiles-style YAML `<folder>/<name>.yaml`."""
    import yaml

    p = Path(folder) / f"{link.name}.yaml"
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {"kind": "link", "name": link.name, "type": link.type, "source": link.source, "notes": link.notes,
            "bandwidth": float(link.bandwidth_Bps), "latency": float(link.latency_s), "efficiency": 1.0}
    atomic_write_text(p, yaml.safe_dump(data, sort_keys=False, width=110))
    return p
