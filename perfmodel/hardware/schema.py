"""Hardware profile schemas: Device (CPU/GPU), Link, Storage, with an efficiency model per op family.

Files may write datasheet figures in human units ("900 GB/s", "15.7 TFLOPS", "5 us"); the
validators parse them to SI. Field names carry their unit in code (`memory_bandwidth_Bps`); files
use the short alias (`memory_bandwidth`).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from ..units import parse_quantity
from .traits import DeviceTraits


def _q(family: str):
    def parse(v, info=None):
        return parse_quantity(v, family)

    return BeforeValidator(parse)


def _in(lo: float, hi: float, unit: str, allow_zero: bool = False):
    """A plausible range: a profile outside it is a typo (a unit dropped or doubled), and a value near 0 or
    inf would give inf or zero times downstream."""

    def check(v: float) -> float:
        if v < 0 or (v == 0 and not allow_zero):
            raise ValueError(f"must be greater than {'or equal to ' if allow_zero else ''}0, got {v:g} {unit}")
        if (v < lo and not (allow_zero and v == 0)) or v > hi:
            raise ValueError(f"{v:g} {unit} is outside the plausible range {lo:g}..{hi:g} {unit} "
                             "(a unit missing or doubled?)")
        return v

    return AfterValidator(check)


Bandwidth = Annotated[float, _q("bandwidth"), Field(allow_inf_nan=False), _in(1e3, 1e16, "B/s")]
Bytes = Annotated[float, _q("bytes"), Field(allow_inf_nan=False), _in(1, 1e21, "B")]
NonNegBytes = Annotated[float, _q("bytes"), Field(allow_inf_nan=False), _in(1, 1e21, "B", allow_zero=True)]
FlopRate = Annotated[float, _q("flops"), Field(allow_inf_nan=False), _in(1e3, 1e20, "FLOP/s")]
Seconds = Annotated[float, _q("time"), Field(allow_inf_nan=False), _in(1e-12, 3600, "s", allow_zero=True)]
Hertz = Annotated[float, _q("frequency"), Field(allow_inf_nan=False), _in(1e3, 1e12, "Hz")]
Price = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]

DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class EfficiencyCurve(_Frozen):
    """Achieved fraction of peak as a function of work size per kernel.

    Either the saturating curve eff(s) = max * s / (s + half) (s: FLOPs per kernel for matrix/conv,
    bytes per kernel for memory), or measured `points` [[size, eff], ...] interpolated linearly in
    log(size) and held constant beyond the ends (what calibration writes).
    """

    max: float = Field(default=0.7, gt=0, le=1)
    half: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    points: tuple[tuple[float, float], ...] | None = None

    @field_validator("points")
    @classmethod
    def _points_ok(cls, v):
        if v is None:
            return v
        if len(v) < 1:
            raise ValueError("points needs at least one [size, efficiency] pair")
        for s, e in v:
            if not (s > 0 and 0 < e <= 1):
                raise ValueError(f"each point needs size > 0 and 0 < efficiency <= 1, got [{s}, {e}]")
        return tuple(sorted(v))

    def at(self, size: float) -> float:
        """Efficiency (0, 1] for one kernel of the given size."""
        if self.points:
            pts = self.points
            if size <= pts[0][0]:
                return pts[0][1]
            if size >= pts[-1][0]:
                return pts[-1][1]
            ls = math.log(size)
            for (s0, e0), (s1, e1) in zip(pts, pts[1:]):
                if size <= s1:
                    t = (ls - math.log(s0)) / (math.log(s1) - math.log(s0))
                    return e0 + t * (e1 - e0)
        if size <= 0:
            return self.max
        return self.max * size / (size + self.half)


class Efficiency(_Frozen):
    """Efficiency curves per op family; `lowp_matrix`/`lowp_conv` apply to tensor-core dtypes (tf32, fp16, bf16, fp8, int8) if given."""

    matrix: EfficiencyCurve = EfficiencyCurve(max=0.75, half=2e8)
    conv: EfficiencyCurve = EfficiencyCurve(max=0.65, half=5e8)
    memory: EfficiencyCurve = EfficiencyCurve(max=0.8, half=2e5)
    lowp_matrix: EfficiencyCurve | None = None
    lowp_conv: EfficiencyCurve | None = None
    # Nominal FLOP rate of one core (FLOPs as the cost rules count them) at which the memory-family
    # kernels of each op kind do their arithmetic: "<op>" for its forward, "<op>.backward" for its
    # backward, "default" for anything else (optimizer updates, bias adds, ...). Written by `perfmodel
    # calibrate` for CPUs, whose elementwise, normalisation and pooling kernels run far below the FMA
    # peak and differ by op (a vectorised relu vs a scalar tanh or a Mersenne-twister dropout mask).
    # None: that arithmetic runs at the fp32 peak (GPUs, datasheet profiles).
    elementwise: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = None
    # Multiplier on the efficiency of one stage of strided convolutions, keyed
    # "<op>.<stage>/strided" (op conv1d/conv2d/conv_transpose2d; stage forward, backward_data or
    # backward_weight), or "<op>.<stage>/strided-1x1" for 1-wide kernels (projection shortcuts; a
    # profile without it uses "/strided"). They run at a different rate per FLOP than the curve's mostly
    # stride-1 kernels (oneDNN's backward-data of a strided convolution, far slower still for 1x1 ones,
    # and forward of a transposed one on CPUs). Written by `perfmodel calibrate`; None or a missing key: 1.
    stage_factors: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = None
    # Curves by efficiency key (e.g. "conv/depthwise", "matmul/thin", "default"); lowp_curves for tf32/fp16/
    # bf16/fp8/int8. Looked up along a fallback chain (hardware/traits.py efficiency_curve).
    curves: dict[str, EfficiencyCurve] | None = None
    lowp_curves: dict[str, EfficiencyCurve] | None = None
    source: str = "default guesses; replace by `perfmodel calibrate` or a fitted profile"

    def curve(self, family: str, dtype: str) -> EfficiencyCurve:
        if dtype in ("tf32", "fp16", "bf16", "fp8", "int8"):
            low = getattr(self, f"lowp_{family}", None)
            if low is not None:
                return low
        return getattr(self, family)


class ThreadScaling(_Frozen):
    """CPU speed vs threads: Amdahl's law up to the physical cores; hyper-threads add nothing and cost a little.

    speedup(n) = n / (1 + serial_fraction * (n - 1)) for n <= physical cores; each thread beyond
    the physical cores multiplies compute speed by (1 - hyperthread_penalty / physical cores).
    """

    serial_fraction: float = Field(default=0.03, ge=0, le=1)
    hyperthread_penalty: float = Field(default=0.10, ge=0, lt=1)
    per_core_bandwidth_Bps: Bandwidth | None = Field(default=None, alias="per_core_bandwidth")
    source: str = "default guesses"


class Device(_Frozen):
    """One compute device: a GPU, an accelerator, or a CPU (all its sockets, as one device)."""

    kind: Literal["device"] = "device"
    name: str = Field(min_length=1)
    type: Literal["cpu", "gpu", "accelerator"]
    vendor: str = ""
    model: str = ""
    source: str = Field(min_length=1, description="datasheet or measurement the numbers come from")
    notes: str = ""
    peak_flops: dict[Literal["fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8"], FlopRate]
    memory_bandwidth_Bps: Bandwidth = Field(alias="memory_bandwidth")
    memory_bytes: Bytes = Field(alias="memory")
    kernel_overhead_s: Seconds = Field(default=5e-6, alias="kernel_overhead")
    runtime_reserved_bytes: NonNegBytes = Field(default=0.0, alias="runtime_reserved")
    efficiency: Efficiency = Efficiency()
    host_link: str | None = None  # name of the link to the host (GPUs), e.g. pcie3-x16
    # Kernel-level modelling (perfmodel.kernels): the architecture file (hardware_profiles/gpu_arch) and the
    # software stack (hardware_profiles/stacks) whose kernels run GEMM, convolution, RNN and attention work;
    # both set: those work items take their time from the kernel model, else from the efficiency curves
    gpu_arch: str | None = None
    software_stack: str | None = None
    price_per_hour: Price | None = None
    # CPU fields
    sockets: int = Field(default=1, gt=0, le=1024)
    cores: int | None = Field(default=None, gt=0, le=10**6, description="physical cores, all sockets")
    threads_per_core: int = Field(default=1, gt=0, le=64)
    clock_hz: Hertz | None = Field(default=None, alias="clock")
    simd: str = ""
    thread_scaling: ThreadScaling = ThreadScaling()
    traits: DeviceTraits = DeviceTraits()  # behaviour; unset traits default by `type` (hardware/traits.py)

    @model_validator(mode="after")
    def _check(self):
        if "fp32" not in self.peak_flops:
            raise ValueError("peak_flops must give at least fp32")
        if self.type == "cpu" and self.cores is None:
            raise ValueError("a cpu device needs 'cores' (physical cores over all sockets)")
        return self

    @property
    def is_cpu(self) -> bool:
        return self.type == "cpu"

    @property
    def hardware_threads(self) -> int:
        return (self.cores or 1) * self.threads_per_core

    def supports(self, dtype: str) -> bool:
        return dtype in self.peak_flops

    def peak(self, dtype: str) -> float:
        return self.peak_flops[dtype]  # type: ignore[index]


class Link(_Frozen):
    """A point-to-point or shared link: bandwidth per direction and one-message latency."""

    kind: Literal["link"] = "link"
    name: str = Field(min_length=1)
    type: str = ""  # pcie, nvlink, infiniband, ethernet, ...
    source: str = Field(min_length=1)
    bandwidth_Bps: Bandwidth = Field(alias="bandwidth", description="per direction")
    latency_s: Seconds = Field(default=5e-6, alias="latency")
    efficiency: float = Field(default=0.85, gt=0, le=1, description="achievable fraction of bandwidth")
    notes: str = ""

    @property
    def effective_bandwidth_Bps(self) -> float:
        return self.bandwidth_Bps * self.efficiency


class Storage(_Frozen):
    """A storage device (or a RAID0 of `disks` identical ones): sequential read bandwidth and access latency."""

    kind: Literal["storage"] = "storage"
    name: str = Field(min_length=1)
    type: str = ""  # hdd, sata-ssd, nvme, ram
    source: str = Field(min_length=1)
    read_bandwidth_Bps: Bandwidth = Field(alias="read_bandwidth")
    write_bandwidth_Bps: Bandwidth | None = Field(default=None, alias="write_bandwidth")
    latency_s: Seconds = Field(default=1e-4, alias="latency")
    capacity_bytes: Bytes | None = Field(default=None, alias="capacity")
    disks: int = Field(default=1, gt=0, le=10**4, description="RAID0 stripe width")
    raid_efficiency: float = Field(default=0.9, gt=0, le=1, description="fraction of N x bandwidth a RAID0 reaches")
    notes: str = ""

    @property
    def effective_read_Bps(self) -> float:
        if self.disks == 1:
            return self.read_bandwidth_Bps
        return self.read_bandwidth_Bps * self.disks * self.raid_efficiency

    def raid0(self, disks: int) -> "Storage":
        """This storage striped over `disks` identical devices."""
        return self.model_copy(update={"disks": disks, "name": f"{self.name}-raid0x{disks}"})
