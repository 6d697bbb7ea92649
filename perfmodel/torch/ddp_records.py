"""Records of the distributed measurements (torch-free): the fitted loopback link and a DDP training measurement.

perfmodel.torch.ddp produces them; perfmodel.validation.ddp_cpu reads them back from JSONL without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..hardware.schema import Link
from ..parallel.collectives import ring_allreduce

LINK_NAME = "local-gloo-loopback"


@dataclass(frozen=True)
class LinkCalibration:
    alpha_s: float
    bandwidth_Bps: float
    points: tuple[tuple[int, float], ...]  # (bytes, median seconds)
    threads: int
    machine: dict[str, Any]
    created_utc: str

    def link(self) -> Link:
        return Link(name=LINK_NAME, type="loopback", source=self.source, bandwidth=self.bandwidth_Bps,
                    latency=self.alpha_s, efficiency=1.0, notes=self.notes)

    @property
    def source(self) -> str:
        return (f"measured on {self.machine.get('cpu_model', '?')} by perfmodel.torch.ddp.calibrate_allreduce: gloo "
                f"all-reduce, 2 processes x {self.threads} thread over 127.0.0.1, torch "
                f"{self.machine.get('torch_version', '?')}, {self.created_utc}")

    @property
    def notes(self) -> str:
        pts = ", ".join(f"{n / 1024:.0f} KiB: {t * 1e6:.0f} us" for n, t in self.points)
        return ("alpha-beta fit of T(n) = n/B + 2 alpha (ring all-reduce, p = 2) by least squares on relative error "
                f"to the median all-reduce time per size ({pts}). efficiency 1.0: the fit already is the achieved "
                "rate. Valid for this machine only.")

    def residuals_pct(self) -> list[float]:
        return [100.0 * (ring_allreduce(n, 2, self.bandwidth_Bps, self.alpha_s) - t) / t for n, t in self.points]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["residuals_pct"] = self.residuals_pct()
        return d


@dataclass(frozen=True)
class DDPMeasurement:
    network: str
    batch: int  # per process
    world: int
    threads: int
    warmup: int
    steps: int
    params: int
    rank_step_times_s: tuple[tuple[float, ...], ...]
    step_times_s: tuple[float, ...]  # per step: the slowest rank
    median_s: float
    p10_s: float
    p90_s: float
    machine: dict[str, Any]
    created_utc: str
    load_avg_before: tuple[float, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(schema="perfmodel.measurement/1", kind="ddp_training_step", device="cpu",
                 dtype="fp32", optimizer="sgd", backend="gloo")
        return d

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> "DDPMeasurement":
        """The measurement back from its stored JSON record."""
        def value(k: str) -> Any:
            if k == "rank_step_times_s":
                return tuple(tuple(x) for x in r[k])
            if k in ("step_times_s", "load_avg_before") and r[k] is not None:
                return tuple(r[k])
            return r[k]

        return cls(**{k: value(k) for k in cls.__dataclass_fields__})
