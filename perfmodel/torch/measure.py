"""Measure real training steps with PyTorch, and store the measurements as append-only JSONL.

    from perfmodel.torch.measure import measure_training, append_jsonl, read_jsonl
    m = measure_training("resnet50", batch=8, threads=2, steps=10)
    m.median_s, m.p10_s, m.p90_s, m.machine.cpu_model
    append_jsonl(default_measurements_path(), m)

One timed step is: optimizer.zero_grad(set_to_none=True), forward (under torch.autocast for bf16 and
fp16), the loss, backward, optimizer.step(), and on CUDA torch.cuda.synchronize() - timed with
time.perf_counter from before zero_grad to after the synchronisation. `warmup` untimed steps come
first (allocator, oneDNN/cuDNN algorithm selection, lazy initialisation); every timed step is kept.

Per-layer times (`per_layer=True`) come from extra instrumented steps run AFTER the timed steps, so
the step times above never include instrumentation overhead:
- for a graph (a GraphModule from `to_module`): every layer is bracketed in forward by
  perf_counter reads; in backward, identity autograd functions on the layer's output and inputs read
  perf_counter when the gradient reaches the layer's output (start) and when the gradients of its
  inputs are ready; tensor post-accumulate-grad hooks mark when its parameter gradients are ready.
  backward_s = (last of those) - start.
- for any other nn.Module: forward pre/post hooks and full backward pre/post hooks on every leaf
  module (nn.Module.register_full_backward_pre_hook / register_full_backward_hook).
Both read perf_counter on the host; on CUDA every mark synchronises the device first (which
serialises the GPU and slows the instrumented steps; their per-layer numbers are still the
device time of each layer). With branches (residual or inception blocks) autograd may interleave
work of another branch between a layer's marks, which is then counted in that layer's backward.

The records (Measurement, MachineInfo, LayerTiming) and their JSONL storage are perfmodel.torch.records
(torch-free, re-exported here).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

try:
    import resource
except ImportError:  # not on Windows: no page-fault note there
    resource = None

import torch
from torch import nn

from .. import __version__
from ..errors import InputError
from ..graph.io import load_network
from ..graph.layer_graph import LayerGraph
from ..kernels.data import MEMORY_FORMATS
from ..machine import cpu_model_name as _cpu_model
from .records import (  # noqa: F401  (re-exported: the records and their storage)
    DTYPES, OPTIMIZERS, SCHEMA, JsonlError, LayerTiming, MachineInfo, Measurement, append_jsonl,
    default_measurements_dir, default_measurements_path, load_measurements, physical_cores, read_jsonl,
    summarize_times,
)
from .to_module import GraphModule, make_batch, to_module
from .worker import timed_steps

__all__ = [
    "JsonlError", "LayerTiming", "MachineInfo", "Measurement", "append_jsonl", "default_measurements_dir",
    "default_measurements_path", "load_measurements", "machine_info", "measure_training", "read_jsonl",
    "summarize_times",
]

LEARNING_RATE = 1e-3  # small, so that a few steps stay finite; the step time does not depend on it
MOMENTUM = 0.9


# ----------------------------------------------------------------------------------------------------------
# machine


def machine_info(threads: int | None = None) -> MachineInfo:
    """CPU model, physical cores, logical CPUs, torch threads, GPU (if any), library versions; no host name."""
    gpu_name, gpu_count, cuda = None, 0, None
    if torch.cuda.is_available():
        gpu_count = torch.cuda.device_count()
        gpu_name = torch.cuda.get_device_name(0)
        cuda = torch.version.cuda
    return MachineInfo(
        cpu_model=_cpu_model(), physical_cores=physical_cores(), logical_cpus=os.cpu_count() or 1,
        threads=threads if threads is not None else torch.get_num_threads(), gpu_name=gpu_name, gpu_count=gpu_count,
        cuda_version=cuda, torch_version=torch.__version__, python_version=platform.python_version(),
        os=f"{platform.system()} {platform.release()}", arch=platform.machine(),
    )


# ----------------------------------------------------------------------------------------------------------
# per-layer instrumentation


class _Mark(torch.autograd.Function):
    """Identity whose backward calls `cb()` (reads the clock when the gradient passes through)."""

    @staticmethod
    def forward(ctx, x, cb):
        ctx.cb = cb
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        ctx.cb()
        return g, None


class _Probe:
    """Common part of the per-layer clocks: synchronised time, handle removal, medians per layer."""

    sync: Callable[[], None]
    ops: dict[str, str]
    fwd: dict[str, list[float]]
    bwd: dict[str, list[float]]
    _handles: list

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def close(self) -> None:
        for h in self._handles:
            h.remove()

    def timings(self) -> tuple[LayerTiming, ...]:
        return tuple(
            LayerTiming(name=n, op=self.ops[n], forward_s=statistics.median(ts),
                        backward_s=statistics.median(self.bwd[n]) if self.bwd.get(n) else None)
            for n, ts in self.fwd.items()
        )


class _GraphProbe(_Probe):
    """Per-layer forward/backward clocks for a GraphModule (attached as module.layer_probe)."""

    def __init__(self, module, sync: Callable[[], None]):
        self.sync = sync
        self.ops: dict[str, str] = {}
        self.fwd: dict[str, list[float]] = {}
        self.bwd: dict[str, list[float]] = {}
        self._t0: dict[str, float] = {}
        self._bstart: dict[str, float] = {}
        self._bend: dict[str, float] = {}
        self._handles = []
        owner: dict[int, str] = {}
        for attr, layer in module.layer_names.items():
            for p in getattr(module, attr).parameters():
                owner.setdefault(id(p), layer)
        for p in module.parameters():
            if p.requires_grad and id(p) in owner:
                name = owner[id(p)]
                self._handles.append(p.register_post_accumulate_grad_hook(lambda _p, n=name: self._end(n)))


    def _start(self, name: str) -> None:
        self._bstart.setdefault(name, self.now())

    def _end(self, name: str) -> None:
        self._bend[name] = max(self._bend.get(name, 0.0), self.now())

    def enter(self, name: str, op: str, args: list):
        self.ops[name] = op
        out = []
        for a in args:
            if isinstance(a, torch.Tensor) and a.requires_grad:
                a = _Mark.apply(a, lambda n=name: self._end(n))
            out.append(a)
        self._t0[name] = self.now()
        return out

    def exit(self, name: str, op: str, y):
        self.fwd.setdefault(name, []).append(self.now() - self._t0.pop(name))
        if isinstance(y, torch.Tensor) and y.requires_grad:
            y = _Mark.apply(y, lambda n=name: self._start(n))
        return y

    def end_step(self) -> None:
        for name, t0 in self._bstart.items():
            if name in self._bend and self._bend[name] >= t0:
                self.bwd.setdefault(name, []).append(self._bend[name] - t0)
        self._bstart.clear()
        self._bend.clear()



class _HookProbe(_Probe):
    """Per-module forward/backward clocks from module hooks on every leaf module of a plain nn.Module."""

    def __init__(self, module: nn.Module, sync: Callable[[], None]):
        self.sync = sync
        self.ops: dict[str, str] = {}
        self.fwd: dict[str, list[float]] = {}
        self.bwd: dict[str, list[float]] = {}
        self._t0: dict[str, float] = {}
        self._b0: dict[str, float] = {}
        self._handles = []
        for name, m in module.named_modules():
            if name and not any(True for _ in m.children()):
                self.ops[name] = type(m).__name__
                self._handles += [
                    m.register_forward_pre_hook(lambda _m, _a, n=name: self._t0.__setitem__(n, self.now())),
                    m.register_forward_hook(lambda _m, _a, _o, n=name: self.fwd.setdefault(n, []).append(
                        self.now() - self._t0[n])),
                    m.register_full_backward_pre_hook(lambda _m, _g, n=name: self._b0.__setitem__(n, self.now())),
                    m.register_full_backward_hook(lambda _m, _gi, _go, n=name: self.bwd.setdefault(n, []).append(
                        self.now() - self._b0.get(n, self.now()))),
                ]


    def end_step(self) -> None:
        self._b0.clear()



# ----------------------------------------------------------------------------------------------------------
# measuring


def _optimizer(name: str, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=LEARNING_RATE)
    if name == "momentum":
        return torch.optim.SGD(params, lr=LEARNING_RATE, momentum=MOMENTUM)
    if name == "adam":
        return torch.optim.Adam(params, lr=LEARNING_RATE)
    return torch.optim.AdamW(params, lr=LEARNING_RATE)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    prev = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise InputError(f"threads must be >= 1, got {n}")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev


def _resolve(module_or_graph, batch: int, device: str, seed: int, inputs):
    """-> (module, forward(module) -> loss, name, notes)."""
    notes: list[str] = []
    if isinstance(module_or_graph, (str, Path)):
        module_or_graph = load_network(module_or_graph)
    if isinstance(module_or_graph, LayerGraph):
        graph = module_or_graph
        torch.manual_seed(seed)
        module = to_module(graph)
    elif isinstance(module_or_graph, GraphModule):
        module, graph = module_or_graph, module_or_graph.graph_spec
    elif isinstance(module_or_graph, nn.Module):
        module, graph = module_or_graph, None
    else:
        raise InputError(f"measure_training: expected a LayerGraph, a network name or an nn.Module, "
                         f"got {type(module_or_graph).__name__}")
    module = module.to(device)
    module.train()
    if graph is not None:
        x, y = make_batch(graph, batch, seed=seed, device=device) if inputs is None else inputs
        if graph.has_loss:
            return module, (lambda m: m(x, y)), graph.name, notes
        notes.append("the graph has no loss layer: the loss is the sum of the means of its outputs")
        return module, (lambda m: sum(v.float().mean() for v in m(x).values())), graph.name, notes
    if inputs is None:
        raise InputError("measure_training: a plain nn.Module needs `inputs` (a tuple of forward arguments, "
                         "batch first, or a callable batch -> tuple)")
    args = inputs(batch) if callable(inputs) else inputs
    args = args if isinstance(args, tuple) else (args,)
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)

    def fwd(m):
        out = m(*args)
        if isinstance(out, torch.Tensor) and out.dim() == 0:
            return out
        outs = out.values() if isinstance(out, dict) else (out if isinstance(out, (tuple, list)) else [out])
        leaves = [t for t in outs if isinstance(t, torch.Tensor) and t.is_floating_point()]
        return sum(t.float().mean() for t in leaves)

    notes.append("plain nn.Module: the loss is its output if scalar, else the sum of the means of its float outputs")
    return module, fwd, type(module).__name__, notes


def measure_training(module_or_graph, batch: int, *, device: str = "cpu", dtype: str = "fp32",
                     threads: int | None = None, warmup: int = 3, steps: int = 10, optimizer: str = "sgd",
                     per_layer: bool = False, inputs=None, seed: int = 0,
                     memory_format: str = "contiguous") -> Measurement:
    """Time `steps` real training steps after `warmup` untimed ones; see the module docstring.

    module_or_graph: a LayerGraph, a network name or file (built with to_module), a GraphModule, or any
    nn.Module (then `inputs` gives its forward arguments: a tuple, or a callable batch -> tuple).
    device: 'cpu', 'cuda' or 'cuda:N'. dtype: fp32, tf32 (CUDA matmul/cuDNN TF32; plain fp32 on CPU),
    fp16 or bf16 (torch.autocast on the device; parameters stay fp32). threads: torch intra-op threads
    (restored afterwards). optimizer: sgd, momentum (SGD with 0.9), adam, adamw. memory_format: contiguous, or
    channels_last (the module's 4-D parameters in NHWC; convolutions then return NHWC activations).
    """
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    if steps < 1 or warmup < 0:
        raise InputError(f"need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    if dtype not in DTYPES:
        raise InputError(f"dtype '{dtype}' cannot be measured; choose one of {', '.join(DTYPES)}")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer '{optimizer}'; choose one of {', '.join(OPTIMIZERS)}")
    if memory_format not in MEMORY_FORMATS:
        raise InputError(f"unknown memory format '{memory_format}'; choose one of {', '.join(MEMORY_FORMATS)}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' asked for but torch sees no CUDA device")
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    with _threads(threads):
        module, forward, name, notes = _resolve(module_or_graph, batch, device, seed, inputs)
        if memory_format == "channels_last":  # NHWC weights: each convolution's output follows them
            module = module.to(memory_format=torch.channels_last)
            notes.append("memory_format=channels_last")
        opt = _optimizer(optimizer, module.parameters())
        amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype)
        if dtype == "tf32" and dev.type != "cuda":
            notes.append("tf32 on a CPU runs as fp32")
        autocast = (lambda: torch.autocast(dev.type, dtype=amp)) if amp is not None else contextlib.nullcontext

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = forward(module)
            loss.backward()
            opt.step()
            sync()

        with _tf32(dtype == "tf32" and dev.type == "cuda"):
            for _ in range(warmup):
                step()
            faults0 = _minor_faults()
            times = timed_steps(step, steps)
            if faults0 is not None:  # page faults of the timed steps (the allocator's trims and fresh maps)
                notes.append(f"{FAULTS_NOTE}={(_minor_faults() - faults0) / steps:.0f}")
            layers: tuple[LayerTiming, ...] = ()
            method = ""
            if per_layer:
                layers, method = _per_layer(module, step, steps, sync)
        used_threads = torch.get_num_threads()
    stats = summarize_times(times)
    return Measurement(
        network=name, batch=batch, device=str(dev), dtype=dtype, optimizer=optimizer, threads=used_threads,
        warmup=warmup, steps=steps, params=sum(p.numel() for p in {id(p): p for p in module.parameters()}.values()),
        step_times_s=tuple(times), **stats, samples_per_s=batch / stats["median_s"], per_layer=layers,
        per_layer_method=method, machine=machine_info(used_threads),
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), perfmodel_version=__version__,
        notes=tuple(notes),
    )


FAULTS_NOTE = "minor_page_faults_per_step"  # a note of every CPU measurement taken where getrusage exists


def _minor_faults() -> int | None:
    """Minor page faults of this process so far (getrusage), or None where the platform has no resource module."""
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _per_layer(module: nn.Module, step: Callable[[], None], steps: int, sync) -> tuple[tuple[LayerTiming, ...], str]:
    if isinstance(module, GraphModule):
        probe: Any = _GraphProbe(module, sync)
        module.layer_probe = probe
        method = ("graph layer marks: perf_counter around each layer's forward; identity autograd marks on its "
                  "output and inputs plus post-accumulate-grad hooks on its parameters for backward")
    else:
        probe = _HookProbe(module, sync)
        method = "module hooks: forward pre/post hooks and full backward pre/post hooks on leaf modules"
    try:
        with warnings.catch_warnings():
            # full backward hooks warn when a module's inputs need no gradient (the first layer); harmless here
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(steps):
                step()
                probe.end_step()
    finally:
        probe.close()
        if isinstance(module, GraphModule):
            module.layer_probe = None
    if dev_is_cuda(module):
        method += "; the device is synchronised at every mark"
    return probe.timings(), method


def dev_is_cuda(module: nn.Module) -> bool:
    p = next(module.parameters(), None)
    return p is not None and p.is_cuda
