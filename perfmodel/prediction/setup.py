"""TrainingSetup: every option of a training prediction, once, with its default, unit and check.

predict(), sweep() and plan_search() all take these names; the CLI builds one from its flags. Options
of the large-model issue that are not modelled yet raise a clear error when set to a non-default
value (never silently ignored).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InputError, format_pydantic_error
from ..kernels.data import MEMORY_FORMATS
from ..ops import DTYPE_BYTES
from ..optimizers import OPTIMIZER_NAMES
from ..parallel.collectives import allreduce_choices
from ..parallel.plan import Plan
from ..parallel.sync_modes import SYNC_MODES
from ..parallel.plan import make_plan

DEFAULT_BATCH = 32

# option -> the default it must keep, for options named but not yet modelled (none left: expert_parallel is
# modelled by perfmodel/parallel/experts.py)
NOT_MODELLED: dict[str, Any] = {}
ZERO_MODELLED = (0, 1, 2, 3)
RECOMPUTE_MODELLED = ("none", "selective", "full")


class TrainingSetup(BaseModel):
    """Every prediction option with its default and check (units in the descriptions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch: int | None = Field(default=None, gt=0, le=10**8, description="samples per replica per iteration (weak scaling) "
                                                               "or the global batch (strong); default 32")
    dtype: str = Field(default="fp32", description="compute dtype: fp32, tf32, fp16, bf16, fp8, int8")
    threads: int | None = Field(default=None, gt=0, le=65536, description="CPU threads per process (default: physical cores)")
    optimizer: str = Field(default="sgd", description="sgd, momentum, adam or adamw")
    devices: int = Field(default=1, gt=0, le=10**6, description="devices used")
    nodes: int | None = Field(default=None, gt=0, le=10**6, description="nodes the devices are spread over (cluster profiles)")
    plan: Plan | None = Field(default=None, description="dp x tp x pp degrees, micro-batches, schedule")
    sync: Literal["sync", "async", "mixed"] = "sync"
    allreduce: str = Field(default="ring", description="gradient all-reduce: a registered algorithm (ring, tree, "
                                                        "halving-doubling, ...), hierarchical or ps")
    overlap: bool = Field(default=True, description="communication overlaps compute as the device's software stack "
                          "does (gradient buckets with backward, FSDP prefetch, pipeline sends); False: nothing overlaps")
    tp_overlap: bool = Field(default=False, description="Megatron/TE tensor-parallel communication overlap: the "
                             "sequence-parallel all-gathers / reduce-scatters pipelined with their GEMMs")
    bucket_bytes: float | None = Field(default=None, gt=0, description="gradient bucket size in bytes (DDP: 25 MiB)")
    straggler_cv: float = Field(default=0.0, ge=0, le=10, description="coefficient of variation of per-device step time")
    slow_worker_factor: float = Field(default=1.0, ge=1, le=1000, description="one data-parallel worker computes this "
                                      "many times slower (a deterministic straggler; sync waits, async adds rates)")
    dataset_size: float | None = Field(default=None, gt=0, description="dataset size in bytes (enables the IO model)")
    storage: str | None = Field(default=None, description="storage profile the dataset is read from")
    prefetch: bool = Field(default=True, description="input loading overlaps compute")
    grad_accumulation: int = Field(default=1, gt=0, le=10**6, description="micro-steps per gradient synchronisation")
    input_bytes_per_sample: float | None = Field(default=None, gt=0, description="bytes of one sample on storage")
    scaling: Literal["weak", "strong"] = "weak"
    ps_servers: int | None = Field(default=None, gt=0, le=10**6, description="parameter-server shards")
    ps_colocated: bool = Field(default=False, description="parameter-server shards run on the worker nodes")
    p2p: bool | None = Field(default=None, description="force GPUDirect peer-to-peer over PCIe on or off")
    memory_format: Literal[MEMORY_FORMATS] = Field(
        default="contiguous", description="activation layout: contiguous (PyTorch's default, NCHW) or channels_last "
        "(NHWC: tensor-core convolutions skip cuDNN's layout conversions)")
    raid0: int | None = Field(default=None, gt=0, le=10**4, description="stripe the storage over this many disks")
    # large-model options (issue 14 names)
    zero: int = Field(default=0, ge=0, le=3, description="ZeRO stage: 1 shards the optimizer state over dp, 2 also gradients, 3 also parameters")
    sharding: Literal["none", "full", "hybrid"] = Field(
        default="none", description="FSDP: full = ZeRO-3 over dp; hybrid = ZeRO-3 over the dp ranks of a node, "
                                    "replicated across nodes")
    sequence_parallel: bool = Field(default=False, description="Megatron sequence parallelism over the tp ranks")
    context_parallel: int = Field(default=1, gt=0, le=10**6, description="context-parallel (ring attention) ranks per "
                                  "replica: devices = dp x tp x pp x context_parallel; needs attention layers")
    virtual_stages: int = Field(default=1, gt=0, description="interleaved 1F1B model chunks per stage")
    recompute: Literal["none", "selective", "full"] = Field(
        default="none", description="full: every repeated block but the last recomputes its forward in backward; "
                                   "selective: the attention core (scores, softmax, dropout, probs x V) only")
    offload_activations: bool = Field(default=False, description="copy kept activations to host memory over the "
                                                                  "device's host link (PCIe), overlapped with compute")
    expert_parallel: int = Field(default=1, gt=0, le=10**6, description="expert-parallel ranks sharing each moe "
                                 "layer's experts, carved out of the dp replicas (parallel/experts.py)")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        if v not in DTYPE_BYTES:
            raise ValueError(f"must be one of {', '.join(DTYPE_BYTES)}")
        return v

    @field_validator("allreduce")
    @classmethod
    def _allreduce(cls, v: str) -> str:  # the registry of parallel/collectives.py (a new algorithm is one function)
        if v not in allreduce_choices():
            raise ValueError(f"must be one of {', '.join(allreduce_choices())}")
        return v

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        if v not in OPTIMIZER_NAMES:
            raise ValueError(f"must be one of {', '.join(OPTIMIZER_NAMES)}")
        return v

    @field_validator("bucket_bytes", "straggler_cv", "slow_worker_factor", "dataset_size", "input_bytes_per_sample")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @field_validator("batch", "threads", "devices", "nodes", "grad_accumulation", "ps_servers", "raid0",
                     "context_parallel", "virtual_stages", "zero", mode="before")
    @classmethod
    def _whole_number(cls, v: Any) -> Any:  # (INPUT) True is not a batch of 1, '32' is not 32
        if isinstance(v, (bool, str)):
            raise ValueError(f"expected an integer, got {v!r}")
        return v

    @field_validator("plan", mode="before")
    @classmethod
    def _plan(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, (dict, Plan)):
            raise ValueError("must be a dict like {'dp': 8, 'tp': 1, 'pp': 1, 'microbatches': 4}")
        return v

    @property
    def batch_or_default(self) -> int:
        return DEFAULT_BATCH if self.batch is None else self.batch

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults (what a user would have written)."""
        return {k: getattr(self, k) for k in self.model_fields_set if getattr(self, k) != DEFAULTS[k]}

    def check_modelled(self) -> None:
        """Raise InputError for an option set to a value the model cannot represent yet."""
        for k, d in NOT_MODELLED.items():
            if getattr(self, k) != d:
                raise InputError(f"{k}={getattr(self, k)!r} is not modelled yet (only {k}={d!r} is)")
        if self.zero not in ZERO_MODELLED:
            raise InputError(f"zero={self.zero} is not modelled yet (zero=0 to 3 are)")
        if self.recompute not in RECOMPUTE_MODELLED:
            raise InputError(f"recompute={self.recompute!r} is not modelled yet ({', '.join(RECOMPUTE_MODELLED)} are)")


SETUP_FIELDS: tuple[str, ...] = tuple(TrainingSetup.model_fields)
DEFAULTS: dict[str, Any] = {k: f.default for k, f in TrainingSetup.model_fields.items()}
assert set(SYNC_MODES) == set(TrainingSetup.model_fields["sync"].annotation.__args__)  # noqa: S101


INFERENCE_ONLY_DTYPES = ("int8",)  # `perfmodel serve` takes them; training does not


def training_device(hw: Any) -> Any:
    """The compute device of a device, node or cluster profile (None when it names none)."""
    from ..hardware.loader import load_hardware

    if getattr(hw, "kind", "device") == "device":
        return hw
    node = hw if getattr(hw, "kind", None) == "node" else getattr(hw, "node", None)
    if isinstance(node, str):
        node = load_hardware(node)
    dev = getattr(node, "device", None)
    return load_hardware(dev) if isinstance(dev, str) else dev


def check_training_options(hw: Any, *, dtypes: Any = (), threads: Any = None) -> None:
    """Raise InputError for a training dtype that is inference-only or that `hw`'s device lacks, and for
    `threads` on a device that does not run on CPU threads (a GPU)."""
    from ..hardware.traits import device_traits

    dev = training_device(hw)
    if dev is None:
        return
    name = getattr(dev, "name", "?")
    supported = [d for d in DTYPE_BYTES if d not in INFERENCE_ONLY_DTYPES and dev.supports(d)]
    for d in ([dtypes] if isinstance(dtypes, str) else dtypes or ()):
        if d in INFERENCE_ONLY_DTYPES:
            raise InputError(f"dtype {d} is an inference dtype (use `perfmodel serve`); training on '{name}' "
                             f"supports {', '.join(supported)}")
    if threads is not None and not device_traits(dev).uses_threads:
        raise InputError(f"--threads/threads applies to CPUs only; '{name}' is a {dev.type} that does not run "
                         f"on CPU threads (drop the option)")


def make_setup(**options: Any) -> TrainingSetup:
    """A TrainingSetup from keyword options; unknown names and bad values raise InputError naming the field.

    `dataset=NAME` (a preset of prices/dataset_presets.yaml, e.g. 'imagenet') sets input_bytes_per_sample (the
    sample's size on disk) and dataset_size (samples x that size) unless those are given."""
    if options.get("dataset") is not None:  # a preset: dataset size and on-disk sample size unless given
        from ..dataflow import dataset_preset

        samples, sample_bytes = dataset_preset(str(options["dataset"]))
        options = {**options, "input_bytes_per_sample": options.get("input_bytes_per_sample") or sample_bytes}
        options["dataset_size"] = options.get("dataset_size") or samples * options["input_bytes_per_sample"]
    options.pop("dataset", None)
    unknown = set(options) - set(SETUP_FIELDS)
    if unknown:
        raise InputError(f"unknown option(s) {sorted(unknown)}; known: {', '.join(SETUP_FIELDS)}")
    if isinstance(options.get("plan"), dict):
        options = {**options, "plan": make_plan(options["plan"], 1)}
    try:
        return TrainingSetup(**options)
    except ValidationError as e:
        raise InputError(format_pydantic_error(e)) from None
