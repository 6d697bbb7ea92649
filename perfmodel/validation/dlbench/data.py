"""DLBench 2016: the published table, the method's named constants (profiles, zoo networks, batch assumptions,
fit bounds) and the frozen result objects."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ...errors import InputError, NotFoundError
from ...paths import data_dir, repo_root


SUITE = "dlbench-2016"
CSV_NAME = "dlbench_2016.csv"
SOURCE_PAPER = ('S. Shi, Q. Wang, P. Xu, X. Chu, "Benchmarking State-of-the-Art Deep Learning Software Tools", '
                "IEEE CCBD 2016 / arXiv:1608.07249 (Sept. 2016 results)")
SCRIPTS_REPO = "hclhkbu/dlbench (the benchmark's published scripts)"

DESKTOP, SERVER, GPU = "desktop_cpu", "server_cpu", "gpu"
DEVICE_CLASSES = (DESKTOP, SERVER, GPU)
CLASS_LABEL = {DESKTOP: "desktop CPU (i7-3820)", SERVER: "server CPU (2x E5-2630 v3)",
               GPU: "GPU (GTX 980, GTX 1080, K80 die)"}

# published hardware name -> (profile name, device class)
HARDWARE_PROFILES: dict[str, tuple[str, str]] = {
    "i7-3820": ("i7-3820", DESKTOP),
    "2x E5-2630 v3": ("xeon-e5-2630v3-2s", SERVER),
    "GTX 980": ("gtx-980", GPU),
    "GTX 1080": ("gtx-1080", GPU),
    "Tesla K80 (one GK210)": ("k80", GPU),  # one die, as software sees it
}

# The GPU rows ran on CUDA 8.0 with cuDNN 5.1 (the paper's software table): every GPU profile is used with
# this software stack (hardware_profiles/stacks) instead of its default, a current PyTorch stack.
GPU_SOFTWARE_STACK = "cuda8-cudnn5"

# published network name -> zoo network
ZOO_NETWORKS: dict[str, str] = {
    "FCN-5": "fcn5",
    "FCN-8": "fcn8",
    "AlexNet": "alexnet_dlbench",  # the variant the benchmark's scripts ran (96-256-384-384-256, no LRN)
    "ResNet-50": "resnet50",
    "LSTM-32": "lstm32",
    "LSTM-64": "lstm64",
    "FCN (synthetic)": "fcn5",  # the paper's desktop FCN table: the same 26752-2048x3-26752 network
}

# published framework name -> canonical name (the desktop FCN table writes "Tensorflow")
FRAMEWORKS: dict[str, str] = {"CNTK": "CNTK", "TF": "TensorFlow", "Tensorflow": "TensorFlow",
                              "TensorFlow": "TensorFlow", "Torch": "Torch", "Caffe": "Caffe"}

# The fit uses the rows whose published network is exactly this (the main table's FCN-5 rows).
FIT_NETWORK = "FCN-5"
MAIN_METRIC = "time_per_minibatch"
OPTIMIZER = "sgd"  # the benchmark's scripts train with plain SGD
DTYPE = "fp32"
SENSITIVITY_SCALES = (0.5, 2.0)

# Thread-scaling fit (CPU rows only). Serial fraction within the schema's [0, 1]; the hyper-thread penalty
# from 0 (flat past the physical cores: extra threads never help in compute.thread_speedup) to PENALTY_MAX:
# compute.thread_speedup multiplies speed by max(0.05, 1 - penalty x extra / cores), so at twice the cores
# (the published maximum on both CPUs) PENALTY_MAX = 0.95 is the largest penalty that still acts linearly
# (at most 20x slower than at the physical cores).
SERIAL_BOUNDS = (0.0, 1.0)
PENALTY_MAX = 0.95
FIT_GRID = 11  # coarse grid points per fitted thread parameter before the local search
FIT_TOL = 1e-5  # local-search step at which the fit stops (in parameter units)

# Highest turbo clock / base clock of the two CPUs ([C1] Intel ARK i7-3820 3.6 / 3.8 GHz, [C2] Xeon
# E5-2630 v3 2.4 / 3.2 GHz, via shared/reference/hardware_datasheets.md). The profiles model the base
# clock only; this ratio is used for the plausibility flags, never for predictions.
TURBO_RATIO: dict[str, float] = {"i7-3820": 3.8 / 3.6, "xeon-e5-2630v3-2s": 3.2 / 2.4}


@dataclass(frozen=True)
class _Assumption:
    batch: int
    reason: str


_FCN_DESKTOP = _Assumption(64, (
    "Stated: the paper's desktop FCN table is at mini-batch 64 (the CSV rows with metric "
    "time_per_minibatch_b64; their 1-thread times agree with the FCN-5 rows: TensorFlow 7.06 vs 7.21 s, "
    "Torch 1.33 vs 1.23 s), and the benchmark's CPU script (synthetic/scripts/batch-cpus.sh) runs "
    "ffn26752 and ffn26752l6 at minibatch=64 for every thread count."))
_FCN_SERVER = _Assumption(64, (
    "Not in the table for the server; the benchmark's CPU script (batch-cpus.sh) runs ffn26752 and "
    "ffn26752l6 at minibatch=64 for every thread count, as on the desktop. Sanity check: at 64 the Torch "
    "1-thread FCN-5 row needs 94% of one core's base-clock peak; at 128 it would need more than the 3.2 GHz "
    "turbo clock allows."))
_FCN_GPU = _Assumption(256, (
    "Not in the table. The GPU script (synthetic/scripts/batch-bencmarks.sh) sweeps FCN-5/FCN-8 at "
    "256-4096 (batch-fc.sh: 32-1024). Sanity check, not a fit: at 512 the CNTK GTX 1080 rows (33/37 ms) "
    "would need 105% of the card's fp32 peak; at 64 they would need 13% of peak on 64x26752x2048 GEMMs "
    "that cuBLAS runs near peak. 256 is the smallest size of the GPU sweep and the largest power of "
    "two under the peak bound."))
_ALEX_CPU = _Assumption(16, "The CPU script (batch-cpus.sh) runs alexnet at minibatch=16 for every thread count.")
_ALEX_GPU = _Assumption(16, (
    "Not in the table. The GPU sweep (batch-bencmarks.sh) is 16-128. Sanity check: at 32 the Torch GTX 980 "
    "row (38 ms) would need 112% of the card's fp32 peak with direct convolution; 16 is also the CPU size."))
_RES_CPU = _Assumption(16, "The CPU script (batch-cpus.sh) runs resnet at minibatch=16 for every thread count.")
_RES_GPU = _Assumption(16, (
    "Not in the table. The GPU sweep (batch-bencmarks.sh) is 8-64. Sanity check: at 32 the model's "
    "footprint does not fit the GTX 980's 4 GiB (largest batch that fits: 26) yet all three frameworks "
    "have GTX 980 rows; at 64 the Torch GTX 980 row would need 147% of peak. 16 matches the CPU scripts."))
_LSTM_CPU = _Assumption(128, (
    "No CPU LSTM script is published. The LSTM scripts (batch_rnn_torch.sh, batch_rnn_tensorflow.sh) use "
    "128, 256 and 512 only; at 256 the CNTK 1-thread server LSTM-32 row (1.33 s) would need 131% of one "
    "Haswell core's peak even at the 3.2 GHz turbo clock, so the smallest scripted size, 128, is assumed."))
_LSTM_GPU = _Assumption(256, (
    "Not in the table. batch_rnn_tensorflow.sh runs its base configuration (sequence lengths 32, 64, 128) "
    "at minibatch=256; the Torch sweep is 128-512."))

# (published network, device class) -> mini-batch size with its reason
BATCH_ASSUMPTIONS: dict[tuple[str, str], _Assumption] = {}
for _net, _desk, _srv, _gpu in (("FCN-5", _FCN_DESKTOP, _FCN_SERVER, _FCN_GPU),
                                ("FCN-8", _FCN_DESKTOP, _FCN_SERVER, _FCN_GPU),
                                ("AlexNet", _ALEX_CPU, _ALEX_CPU, _ALEX_GPU), ("ResNet-50", _RES_CPU, _RES_CPU, _RES_GPU),
                                ("LSTM-32", _LSTM_CPU, _LSTM_CPU, _LSTM_GPU), ("LSTM-64", _LSTM_CPU, _LSTM_CPU, _LSTM_GPU)):
    BATCH_ASSUMPTIONS[(_net, DESKTOP)] = _desk
    BATCH_ASSUMPTIONS[(_net, SERVER)] = _srv
    BATCH_ASSUMPTIONS[(_net, GPU)] = _gpu

FCN_PARAMETER_NOTE = (
    "The paper's table gives about 55M (FCN-5) and 58M (FCN-8) parameters, but its scripts "
    "(26752-2048-2048-2048-26752, and six hidden layers for FCN-8) hold 117,997,696 and 130,586,752. "
    "The suite uses the scripts' sizes (zoo files fcn5/fcn8): they are what was timed, and the published "
    "times are consistent with them (e.g. the Torch 1-thread server FCN-5 row needs 94% of one core's peak "
    "at batch 64 with the script sizes; with 55M parameters it would need less than half). "
    "No layout with a 26752-wide input and output next to 2048-wide layers can hold 55M: the two 26752x2048 "
    "matrices alone hold 109.6M (one of them is 54.8M, perhaps what the table counted; a guess).")


# ----------------------------------------------------------------------------------------------
# result objects


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PublishedRow(_Frozen):
    """One row of the published CSV, unmodified, with its position in the file."""

    index: int  # 0-based data row number
    source: str
    network: str
    framework: str
    hardware: str
    threads: int | None
    num_gpus: int
    metric: str
    value: float
    unit: str


class BatchAssumption(_Frozen):
    network: str
    device_class: str
    batch: int
    reason: str


class FittedFactor(_Frozen):
    """What was fitted for one framework on one device class, from its FCN-5 rows only.

    `factor` = geometric mean over those rows of published / model time, the model being the device profile
    with the framework's fitted thread scaling on CPUs (its own profile on GPUs, or when nothing was fitted).
    On CPUs `serial_fraction` and `hyperthread_penalty` are the ThreadScaling the framework's rows are
    predicted with: fitted where `params` names them, else the device profile's.
    """

    framework: str
    device_class: str
    factor: float
    fitted: bool  # False: no FCN-5 rows, factor 1 and the device profile as it is
    rows: tuple[str, ...]  # labels of the rows it was fitted on
    ratios: tuple[float, ...]  # published / model (with the fitted profile) of each of those rows
    note: str = ""
    profile: str | None = None  # the CPU profile whose copy carries the fitted thread scaling (None: GPU class)
    params: tuple[str, ...] = ()  # fitted parameters: factor, serial_fraction, hyperthread_penalty
    threads: tuple[int, ...] = ()  # thread count of each fit row (CPU)
    serial_fraction: float | None = None
    hyperthread_penalty: float | None = None
    device_serial_fraction: float | None = None  # the profile's own values, for comparison
    device_hyperthread_penalty: float | None = None
    at_bound: tuple[str, ...] = ()  # fitted parameters that ended on a bound
    factor_only: float | None = None  # the factor-only fit of the same rows (device profile's thread scaling)
    ratios_device: tuple[float, ...] = ()  # published / model with the device profile, each fit row
    rms_log_residual: float = 0.0  # root mean square of log(published / predicted) over the fit rows

    @property
    def thread_params(self) -> tuple[float | None, float | None]:
        return self.serial_fraction, self.hyperthread_penalty


class DLBenchRow(_Frozen):
    """One published row with its prediction."""

    index: int
    label: str
    table: str  # "main" (Sept. 2016 results) or "desktop_fcn_b64" (the paper's desktop FCN table)
    network: str
    zoo_network: str
    framework: str
    framework_published: str
    hardware: str
    profile: str
    device_class: str
    threads: int | None
    physical_cores: int | None
    batch: int
    batch_stated: bool  # True when the table states the batch
    published_s: float
    model_s: float  # the model (no factor) with the profile this row is predicted with: on CPUs the device
    # profile with the framework's fitted thread scaling, elsewhere the device profile as it is
    factor: float
    predicted_s: float  # model_s x factor
    model_device_s: float = 0.0  # the model with the device profile as it is (hardware only)
    predicted_factor_only_s: float = 0.0  # the previous method: model_device_s x the factor-only fit
    serial_fraction: float | None = None  # thread scaling of the profile used (CPU rows)
    hyperthread_penalty: float | None = None
    signed_error_pct: float  # (predicted - published) / published x 100
    abs_error_pct: float
    fit_row: bool  # used to fit its framework's factor
    model_flops: float  # FLOPs of one training iteration at `batch`
    implied_peak_fraction: float  # model FLOPs / published time / peak (of the threads used)
    fits_memory: bool
    flags: tuple[str, ...] = ()
    # predicted / published = config_part x network_part, where fcn5 = published / model of the FCN-5 row
    # of the same framework, hardware and thread count: config_part = factor / fcn5 (how far the shared
    # factor is from what FCN-5 alone needs on this configuration), network_part = fcn5 / (published /
    # model) (how this network ran relative to FCN-5 on the same configuration, against the model).
    config_part: float | None = None
    network_part: float | None = None


class ErrorSummary(_Frozen):
    device_class: str
    subset: str  # held_out, held_out_unflagged, fit, all
    n: int
    median_abs_error_pct: float
    mean_abs_error_pct: float
    p90_abs_error_pct: float
    worst_abs_error_pct: float
    worst_row: str
    median_signed_error_pct: float


class SensitivityCase(_Frozen):
    """Errors when one batch assumption is scaled (factors refitted when it is an FCN-5 assumption)."""

    network: str
    device_class: str
    scale: float
    batch: int
    n_rows: int
    median_abs_error_pct: float
    median_signed_error_pct: float
    class_median_abs_error_pct: float  # held-out rows of the whole device class
    factors_changed: bool
    rows_not_fitting_memory: int


class ThreadCurve(_Frozen):
    """Model time vs threads for one network on one CPU (no framework factor: it does not change the shape).

    `framework` empty: the device profile as it is; else that framework's fitted copy of it.
    """

    profile: str
    network: str
    framework: str = ""
    serial_fraction: float = 0.0
    hyperthread_penalty: float = 0.0
    batch: int
    physical_cores: int
    threads: tuple[int, ...]
    model_s: tuple[float, ...]
    speedup_at_cores: float  # time(1) / time(cores)
    past_cores_ratio: float  # time(max threads) / time(cores); >= 1 means flat or slower


class PublishedScaling(_Frozen):
    """What the published rows of one (network, framework) on one CPU show about threads."""

    profile: str
    network: str
    framework: str
    threads: tuple[int, ...]
    published_s: tuple[float, ...]
    predicted_s: tuple[float, ...]
    published_speedup_to_cores: float | None  # time(1) / best time at <= cores
    predicted_speedup_to_cores: float | None
    published_past_cores_ratio: float | None  # time(max threads) / time(physical cores), when both are published
    predicted_past_cores_ratio: float | None
    fit_series: bool = False  # the FCN-5 rows that fit this framework's thread scaling
    before_s: tuple[float, ...] = ()  # the previous, factor-only method (device profile's thread scaling)
    before_speedup_to_cores: float | None = None
    before_past_cores_ratio: float | None = None


class LeaveOneOut(_Frozen):
    """One FCN-5 fit row predicted from a fit on the other FCN-5 rows of its group (overfitting check)."""

    framework: str
    profile: str
    row: str
    threads: int
    published_s: float
    params: tuple[str, ...]  # what the fit on the remaining rows could fit
    serial_fraction: float
    hyperthread_penalty: float
    predicted_s: float  # thread fit on the other rows
    predicted_factor_only_s: float  # factor-only fit on the other rows
    signed_error_pct: float
    factor_only_signed_error_pct: float


class ThreadBucket(_Frozen):
    """Held-out CPU rows of one thread-count range: error before (factor only) and after the thread fit."""

    device_class: str
    bucket: str  # "1 thread", "2 .. physical cores", "past the physical cores"
    n: int
    median_abs_before_pct: float
    median_abs_after_pct: float
    median_signed_before_pct: float
    median_signed_after_pct: float


class RatioComparison(_Frozen):
    """CPU time / GPU time for one network and framework: published vs predicted (same rows)."""

    network: str
    framework: str
    cpu_profile: str
    cpu_threads: int
    gpu_profile: str
    published_ratio: float
    predicted_ratio: float
    model_ratio: float  # without framework factors (hardware only)


class SerialFractionDiagnostic(_Frozen):
    """Amdahl serial fraction implied by one framework's published FCN-5 rows (diagnostic, not used)."""

    profile: str
    framework: str
    profile_serial_fraction: float
    threads: tuple[int, ...]
    published_speedup: tuple[float, ...]
    implied_serial_fraction: tuple[float, ...]  # negative: superlinear speed-up


class NetworkBias(_Frozen):
    """Median signed error of one network for one framework on one device class (error analysis only)."""

    device_class: str
    framework: str
    network: str
    n: int
    median_signed_error_pct: float
    median_network_part: float | None


class Claim(_Frozen):
    claim: str
    reproduced: str  # yes, partly, no
    evidence: str


# ----------------------------------------------------------------------------------------------
# loading


def default_csv_path() -> Path:
    """The committed copy (validation/published/), else the shared folder next to the checkout."""
    cands = []
    d = data_dir("validation")
    if d is not None:
        cands.append(d / "published" / CSV_NAME)
    root = repo_root() or Path(__file__).resolve().parents[3]
    cands += [root / "validation" / "published" / CSV_NAME, root.parent / "shared" / "published" / CSV_NAME]
    for c in cands:
        if c.is_file():
            return c
    raise NotFoundError(f"the published DLBench table '{CSV_NAME}' was not found; looked in: "
                        + ", ".join(str(c) for c in cands) + ". Pass its path explicitly.")


COLUMNS = ("source", "network", "framework", "hardware", "threads", "num_gpus", "metric", "value", "unit")


def _csv_text(path: Path) -> str:
    """The file's text; InputError for a missing, unreadable, binary, non-UTF-8 or empty file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the published table ({e.strerror or e})") from None
    if b"\x00" in raw:
        raise InputError(f"{path}: a binary file, not the published CSV table")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); expected the published CSV table") from None
    if not text.strip():
        raise InputError(f"{path}: empty file; expected the published CSV table with columns {', '.join(COLUMNS)}")
    return text


def _records(path: Path, text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader)]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: not the published table: "
                         + (f"columns {', '.join(missing)} missing" if len(missing) < len(COLUMNS) else "no known column")
                         + f" (expected {', '.join(COLUMNS)})")
    records = []
    for fields in reader:
        if not any(x.strip() for x in fields):
            continue
        # The published file leaves the `source` text of the desktop FCN table unquoted although it
        # contains commas; the other fields hold none, so the surplus fields belong to `source`.
        extra = len(fields) - len(header)
        if extra > 0 and header[0] == "source":
            fields = [",".join(fields[:extra + 1])] + fields[extra + 1:]
        records.append(dict(zip(header, fields)))
    if not records:
        raise InputError(f"{path}: the published table has no data rows")
    return records


def _row(i: int, r: dict[str, str]) -> PublishedRow:
    threads = int(r["threads"]) if (r.get("threads") or "").strip() else None
    row = PublishedRow(
        index=i, source=r["source"], network=r["network"].strip(), framework=r["framework"].strip(),
        hardware=r["hardware"].strip(), threads=threads, num_gpus=int(r["num_gpus"] or 0),
        metric=r["metric"].strip(), value=float(r["value"]), unit=r["unit"].strip())
    for what, v, known in (("network", row.network, ZOO_NETWORKS), ("framework", row.framework, FRAMEWORKS),
                           ("hardware", row.hardware, HARDWARE_PROFILES)):
        if v not in known:
            raise ValueError(f"unknown {what} '{v}' (known: {', '.join(known)})")
    if not (math.isfinite(row.value) and row.value > 0):
        raise ValueError(f"value must be a positive time, got {r['value']!r}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return row


def load_published(csv_path: str | Path | None = None) -> tuple[PublishedRow, ...]:
    """Parse the published CSV (as published: no value is changed); InputError naming the file and row otherwise."""
    path = Path(csv_path) if csv_path is not None else default_csv_path()
    rows = []
    for i, r in enumerate(_records(path, _csv_text(path))):
        try:
            rows.append(_row(i, r))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: data row {i + 1}: cannot parse ({e})") from None
    return tuple(rows)


# colours of the report's figures (the framework order is also the order of its tables)
FRAMEWORK_COLORS = {"CNTK": "#1f77b4", "TensorFlow": "#ff7f0e", "Torch": "#2ca02c", "Caffe": "#d62728"}
NETWORK_COLORS = {"FCN-5": "#1f77b4", "FCN-8": "#17becf", "AlexNet": "#ff7f0e", "ResNet-50": "#d62728",
                  "LSTM-32": "#2ca02c", "LSTM-64": "#9467bd", "FCN-5 [FCN table b64]": "#8c564b"}
