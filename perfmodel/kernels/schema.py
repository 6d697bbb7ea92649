"""Data schemas of the kernel model: a GPU's architecture facts and a software stack's behaviour.

Both are frozen pydantic models loaded from YAML (hardware_profiles/gpu_arch/, hardware_profiles/stacks/).
Quantities may be written in human units ("484 GB/s", "1582 MHz", "5 us") and are parsed to SI.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ..units import parse_quantity


def _q(family: str):
    return BeforeValidator(lambda v: parse_quantity(v, family))


Bandwidth = Annotated[float, _q("bandwidth"), Field(gt=0, allow_inf_nan=False)]
Bytes = Annotated[float, _q("bytes"), Field(gt=0, allow_inf_nan=False)]
Hertz = Annotated[float, _q("frequency"), Field(gt=0, allow_inf_nan=False)]
Seconds = Annotated[float, _q("time"), Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=2.0, allow_inf_nan=False)]

KERNEL_CLASSES = ("gemm", "gemm_tn", "conv_fwd", "conv_bwd_data", "conv_bwd_filter", "winograd", "winograd_bwd_data",
                  "winograd_bwd_filter", "fft", "rnn")
# a class missing from a stack's fractions takes this one (Winograd backward kernels: the forward's fraction)
CLASS_FALLBACK = {"winograd_bwd_data": "winograd", "winograd_bwd_filter": "winograd"}
CONV_ALGOS = ("implicit_gemm", "implicit_precomp_gemm", "winograd", "winograd_nonfused", "fft")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class GpuArch(_Frozen):
    """Architecture facts of one GPU model (datasheet numbers, with their source)."""

    kind: Literal["gpu_arch"] = "gpu_arch"
    name: str = Field(min_length=1)
    model: str = ""
    family: str = Field(min_length=1, description="maxwell, pascal, volta, ...")
    devices: tuple[str, ...] = Field(default=(), description="device profile names this arch describes")
    source: str = Field(min_length=1)
    notes: str = ""
    sm_count: int = Field(gt=0)
    boost_clock_Hz: Hertz = Field(alias="boost_clock")
    # FLOPs per clock per SM for each dtype's math (an FMA = 2); tensor-core dtypes listed in tensor_core_dtypes
    flops_per_clock_per_sm: dict[str, Annotated[float, Field(gt=0)]]
    tensor_core_dtypes: tuple[str, ...] = ()
    memory_bandwidth_Bps: Bandwidth = Field(alias="memory_bandwidth")
    l2_bytes: Bytes = Field(alias="l2_cache")
    registers_per_sm: int = Field(default=65536, gt=0)
    smem_words_per_clock_per_sm: int = Field(default=32, gt=0, description="shared-memory banks x 1 word")
    warps_to_saturate: int = Field(
        default=4, gt=0, description="resident warps that hide latency: one per warp scheduler, the register tile gives ILP")
    boost_above_rated: bool = Field(
        default=False, description="consumer card whose GPU Boost runs above the rated boost clock")
    clock_factor: Fraction = Field(
        default=1.0, description="sustained clock under load / rated boost clock (fitted per GPU where measured)")
    dram_fraction: Fraction | None = Field(
        default=None, description="achieved fraction of DRAM bandwidth (fitted per GPU); None: the stack's")

    @model_validator(mode="after")
    def _check(self):
        if "fp32" not in self.flops_per_clock_per_sm:
            raise ValueError("flops_per_clock_per_sm needs at least fp32")
        return self

    def sm_peak_flops(self, math_dtype: str) -> float:
        """Peak FLOP/s of one SM at the sustained clock for `math_dtype` (fp32 if the dtype has no own rate)."""
        rate = self.flops_per_clock_per_sm.get(math_dtype, self.flops_per_clock_per_sm["fp32"])
        return rate * self.boost_clock_Hz * self.clock_factor

    def peak_flops(self, math_dtype: str) -> float:
        return self.sm_peak_flops(math_dtype) * self.sm_count

    def dram_Bps(self, default_fraction: float) -> float:
        """Achieved DRAM bandwidth: the datasheet figure x this GPU's fraction (or the stack's default)."""
        return self.memory_bandwidth_Bps * (self.dram_fraction or default_fraction)


class GemmTile(_Frozen):
    """One CTA tile of the library's GEMM kernels: its shape, threads, per-thread register tile, CTAs per SM.

    Without an explicit `efficiency`, the inner loop's rate is bounded by shared memory: per k step a thread
    does thread_m * thread_n FMAs and loads thread_m + thread_n words (see gemm.tile_efficiency).
    """

    m: int = Field(gt=0)
    n: int = Field(gt=0)
    threads: int = Field(default=256, gt=0)
    thread_m: int = Field(default=8, gt=0)
    thread_n: int = Field(default=8, gt=0)
    ctas_per_sm: int = Field(default=1, gt=0, description="resident CTAs per SM (registers / launch bounds)")
    efficiency: Fraction | None = None


class Achievable(_Frozen):
    """Physical fractions: of one SM's peak per kernel class, of DRAM bandwidth, and fixed per-kernel costs."""

    compute: dict[str, Fraction] = Field(default_factory=lambda: {k: 0.8 for k in KERNEL_CLASSES})
    memory_bandwidth: Fraction = 0.8
    kernel_overhead_s: Seconds = Field(default=5e-6, alias="kernel_overhead")
    rnn_step_overhead_s: Seconds = Field(default=10e-6, alias="rnn_step_overhead")
    conv_overhead_s: Seconds | None = Field(
        default=None, alias="conv_overhead", description="fixed cost of each kernel a convolution call of the "
        "library runs (its host work and launch; a split reduction or a transform is a kernel too), in place of "
        "kernel_overhead; unset: kernel_overhead")
    cta_overhead_k: float = Field(
        default=0.0, ge=0, le=4096, description="a CTA's prologue and epilogue (pipeline fill, tile store) "
        "in equivalent k steps of its main loop")
    rnn_memory_bandwidth: Fraction = Field(
        default=0.8, description="fraction of DRAM bandwidth a recurrent step reaches streaming its weights "
        "(few CTAs per step: little memory-level parallelism)")
    thin_gemm_bandwidth: Fraction = Field(
        default=1.0, description="fraction of DRAM bandwidth the thin-GEMM kernel (SoftwareStack.thin_gemm_max_n) "
        "streams its operands at")
    by_dtype: dict[str, dict[str, Fraction]] = Field(
        default_factory=dict, description="per-dtype overrides of the compute fractions and of "
        "rnn_memory_bandwidth: a library runs other kernels for some dtypes (DeepBench's pseudo-FP16 on cuDNN 6: "
        "fp16 storage converted to fp32 math inside its own kernels); a class not listed takes the general value")
    source: str = "assumed, not fitted"

    @model_validator(mode="after")
    def _check_dtypes(self):
        allowed = set(KERNEL_CLASSES) | {"rnn_memory_bandwidth"}
        for dtype, over in self.by_dtype.items():
            bad = sorted(set(over) - allowed)
            if bad:
                raise ValueError(f"by_dtype.{dtype}: unknown keys {bad}; allowed: {sorted(allowed)}")
        return self

    def fraction(self, cls: str, dtype: str | None = None) -> float:
        """Achievable fraction of an SM's peak for kernel class `cls` (the dtype's own value where it has one)."""
        own = self.by_dtype.get(dtype or "", {})
        if cls in own:
            return own[cls]
        if cls not in self.compute and cls in CLASS_FALLBACK:
            return self.fraction(CLASS_FALLBACK[cls], dtype)
        return self.compute.get(cls, self.compute.get("gemm", 0.8))

    def rnn_bandwidth(self, dtype: str | None = None) -> float:
        """Fraction of DRAM bandwidth a recurrent step streams its weights at (the dtype's own where given)."""
        return self.by_dtype.get(dtype or "", {}).get("rnn_memory_bandwidth", self.rnn_memory_bandwidth)


class Overlap(_Frozen):
    """Which communication classes a software stack overlaps with compute by default, and how much compute that
    shares the device with in-flight communication slows down (perfmodel.parallel.overlap uses it)."""

    dp_buckets: bool = Field(default=True, description="data-parallel gradient buckets reduce during backward")
    fsdp_prefetch: bool = Field(default=True, description="FSDP / ZeRO-3 parameter all-gathers are prefetched")
    tp_comm: bool = Field(default=False, description="tensor-parallel all-gather / reduce-scatter pipelined with "
                          "the neighbouring GEMMs (Megatron/TE tp_comm_overlap; opt-in there)")
    pp_p2p: bool = Field(default=True, description="pipeline send/recv overlap the steady-state compute")
    compute_slowdown: float = Field(default=0.0, ge=0.0, lt=1.0, allow_inf_nan=False, description=(
        "fractional slowdown of compute while communication is in flight on the same device"))
    source: str = "assumed: no slowdown stated"


class CpuAttention(_Frozen):
    """How a CPU library runs scaled-dot-product attention as one fused kernel (PyTorch's cpu_flash_attention):
    query rows per block by query length, key/value rows per block, and whether the fused kernel takes dropout
    (when not, training attention with dropout runs the unfused math path). Used by perfmodel.engine.cpu_attention."""

    q_split: tuple[tuple[int, int], ...] = Field(
        min_length=1, description="(from query length, query rows per block) pairs; the largest length <= T applies")
    kv_split: int = Field(gt=0, description="key/value rows per block")
    dropout: bool = Field(default=False, description="the fused kernel runs with dropout > 0")
    source: str = Field(min_length=1)

    def q_block(self, t: int) -> int:
        """Query rows per block at query length `t` (never more than t)."""
        rows = max(((lo, q) for lo, q in self.q_split if lo <= t), default=min(self.q_split))[1]
        return max(1, min(rows, t))


class HostHeap(_Frozen):
    """How the C allocator's heap behaves under a training loop (glibc malloc, which PyTorch's CPU allocator calls):
    buffers below the mmap threshold come from the heap; freeing an mmapped buffer raises the threshold to its size
    and the trim threshold to trim_factor x that; once the heap's free top exceeds the trim threshold the whole free
    top is given back to the kernel, and the next step faults those pages in again (how far the top falls:
    engine.heap). Used by perfmodel.engine.heap."""

    mmap_threshold_min_bytes: float = Field(gt=0, description="the starting (smallest) dynamic mmap threshold")
    trim_factor: float = Field(gt=0, description="trim threshold / mmap threshold after the dynamic update")
    source: str = Field(min_length=1)


class LstmWorkspace(_Frozen):
    """The buffers a CPU build's fused LSTM allocates per layer-direction (oneDNN's RNN primitive under PyTorch's
    mkldnn_rnn_layer), in units of batch x steps x hidden x 4 bytes: a training workspace of `units` per call, of
    which `forward_units` are first written in forward (gates and hidden states) and `backward_units` in backward,
    and a backward scratch of `scratch_units` (the gates' gradients). Used by perfmodel.engine.heap: a buffer from
    the device's fresh-buffer size up is mapped and its written pages faulted in on every call; a smaller workspace
    is heap memory the layer keeps (a smaller scratch is reused from the heap)."""

    units: float = Field(gt=0)
    forward_units: float = Field(ge=0)
    backward_units: float = Field(ge=0)
    scratch_units: float = Field(ge=0)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _written_part(self):
        if self.forward_units + self.backward_units > self.units:
            raise ValueError(f"forward_units + backward_units ({self.forward_units + self.backward_units}) exceed "
                             f"units ({self.units})")
        return self


class SoftwareStack(_Frozen):
    """What the libraries do: GEMM tiles, convolution algorithms, fusion, and achievable fractions. A CPU stack
    (target cpu) names no GPU tiles; its fused attention is described by `cpu_attention`."""

    kind: Literal["software_stack"] = "software_stack"
    name: str = Field(min_length=1)
    target: Literal["gpu", "cpu"] = "gpu"
    libraries: str = Field(min_length=1, description="e.g. CUDA 8.0.88, cuDNN 6.0.21")
    source: str = Field(min_length=1)
    notes: str = ""
    gemm_tiles: tuple[GemmTile, ...] = ()
    cpu_attention: CpuAttention | None = None
    host_heap: HostHeap | None = None
    cpu_lstm_workspace: LstmWorkspace | None = None
    cpu_rnn_steps: dict[str, dict[Literal["forward", "backward"], dict[str, Annotated[float, Field(ge=0)]]]] = Field(
        default_factory=dict, description="per recurrent cell (rnn_tanh, rnn_relu, gru, lstm): the kernels a CPU "
        "library runs per time step and layer-direction besides the GEMMs, as {'<op>@<width>': count} per pass "
        "(ops.recurrent.STEP_OPS, STEP_WIDTHS); a cell not listed keeps the ops' fused gate kernel")
    tensor_core_tiles: tuple[GemmTile, ...] = ()
    conv_tiles: tuple[GemmTile, ...] = Field(
        default=(), description="implicit-GEMM convolution tiles (m along filters/channels, n along pixels); "
        "empty: the GEMM tiles")
    conv_algorithms_fwd: tuple[str, ...] = CONV_ALGOS
    conv_algorithms_bwd_data: tuple[str, ...] = CONV_ALGOS
    conv_algorithms_bwd_filter: tuple[str, ...] = ("implicit_gemm", "winograd_nonfused", "fft")
    winograd_fused_output_tile: int = Field(default=2, gt=0, description="F(m x m, 3x3) of the fused kernel")
    winograd_nonfused_output_tile: int = Field(default=4, gt=0)
    fft_max_filter: int = Field(default=32, gt=0)
    fft_tile: int = Field(default=32, gt=1, description="FFT size of the tiled FFT algorithm")
    conv_tile_choice: Literal["fastest", "cover_filters"] = Field(
        default="fastest", description="how the implicit-GEMM convolution tile is chosen: the fastest (wave "
        "counts considered, as cudnnFind on current libraries) or, cuDNN 5/6, the smallest tile whose height "
        "covers the filters (channels in backward-data), whatever the wave count")
    split_k: bool = Field(default=True, description="long-K GEMMs split K over CTAs when tiles are too few")
    thin_gemm_max_n: int = Field(default=0, ge=0, description=(
        "a GEMM whose narrower side (min(M, N)) is at most this runs the library's matrix-vector-like kernel, "
        "bound by streaming its operands at achievable.thin_gemm_bandwidth of DRAM; 0: no such kernel"))
    conv_bwd_filter_splits: tuple[int, ...] = Field(
        default=(), description="split-K factors the implicit-GEMM backward-filter kernel chooses from: the "
        "N*P*Q reduction is always cut into that many slices, whatever their length, and the fp32 partial sums "
        "of dW are summed through memory (cuDNN 5/6); empty: the general split-K choice (no split, or slices of "
        ">= 256 of K)")
    tensor_core_conv_algorithms: tuple[str, ...] = Field(
        default=("implicit_gemm", "implicit_precomp_gemm"), description="convolution algorithms whose kernels run "
        "on tensor cores for a tensor-core dtype; the others (Winograd, FFT) run on the CUDA cores in fp32 math")
    tensor_core_conv_layout: Literal["nchw", "nhwc"] | None = Field(
        default=None, description="the tensor layout the tensor-core convolution kernels compute in; when it is "
        "not activation_layout, a call converts its inputs, filter and output (one kernel each through DRAM)")
    activation_layout: Literal["nchw", "nhwc"] = Field(
        default="nchw", description="the layout the framework keeps 4-D activations in by default (PyTorch: "
        "contiguous NCHW; channels_last is NHWC); TrainingSetup.memory_format overrides it per run")
    rnn_persistent: bool = Field(default=False, description="recurrent weights kept on chip across steps")
    rnn_cell_kernels: int = Field(
        default=1, ge=1, le=64, description="elementwise kernels per time step and layer for the gate "
        "nonlinearities and state update: 1 when fused (cuDNN, PyTorch's LSTM/GRU), about 12 for an unfused cell")
    fused_attention: bool = False
    attention_block: int = Field(default=128, gt=0, description="query rows per CTA of the fused attention kernel")
    attention_fraction_fwd: Fraction = Field(
        default=0.73, description="fraction of peak the fused attention forward reaches in its main loop")
    attention_fraction_bwd: Fraction = Field(
        default=0.63, description="the same for the fused attention backward (recomputes the scores)")
    fused_optimizer: bool = False
    overlap: Overlap = Overlap()  # communication/compute overlap facts (perfmodel.parallel.overlap)
    achievable: Achievable = Achievable()

    @model_validator(mode="after")
    def _check(self):
        if self.target == "gpu" and not self.gemm_tiles:
            raise ValueError("gemm_tiles: a GPU software stack needs at least one GEMM tile")
        for algos in (self.conv_algorithms_fwd, self.conv_algorithms_bwd_data, self.conv_algorithms_bwd_filter,
                      self.tensor_core_conv_algorithms):
            bad = [a for a in algos if a not in CONV_ALGOS]
            if bad or not algos:
                raise ValueError(f"convolution algorithms must be a non-empty subset of {CONV_ALGOS}, got {algos}")
        return self

    def with_achievable(self, achievable: Achievable) -> "SoftwareStack":
        return self.model_copy(update={"achievable": achievable})
