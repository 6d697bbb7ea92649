"""DLBench 2016: the model side and the fit (one factor per framework and device class; on CPUs the framework's
thread scaling), on the FCN-5 rows only."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ...errors import InputError
from ...graph.io import load_network
from ...hardware.loader import load_hardware
from ...hardware.schema import ThreadScaling
from ...prediction import predict
from .data import (
    BATCH_ASSUMPTIONS, DTYPE, FIT_GRID, FIT_NETWORK, FIT_TOL, FRAMEWORKS, FittedFactor, GPU, GPU_SOFTWARE_STACK,
    HARDWARE_PROFILES, MAIN_METRIC, OPTIMIZER, PENALTY_MAX, PublishedRow, SERIAL_BOUNDS, SUITE, ZOO_NETWORKS,
)


# ----------------------------------------------------------------------------------------------
# the model side


@dataclass(frozen=True)
class _ModelPoint:
    time_s: float
    flops: float
    fits: bool


class _Model:
    """Cached predictions by (zoo network, profile, batch, threads, thread scaling).

    `ts` = (serial_fraction, hyperthread_penalty) replaces the CPU profile's thread scaling with a copy of
    the profile (`Device.model_copy`); None: the profile as it is. Every time comes from perfmodel.predict.
    """

    def __init__(self) -> None:
        self._load_network, self._load_hardware = load_network, load_hardware
        self._graphs: dict[str, Any] = {}
        self._devices: dict[tuple, Any] = {}
        self._cache: dict[tuple, _ModelPoint] = {}

    def device(self, profile: str, ts: tuple[float, float] | None = None):
        key = (profile, ts)
        if key not in self._devices:
            if ts is None:
                dev = self._load_hardware(profile, kind="device")
                if dev.software_stack:  # the 2016 libraries, not the profile's current default
                    dev = dev.model_copy(update={"software_stack": GPU_SOFTWARE_STACK})
                self._devices[key] = dev
            else:
                self._devices[key] = thread_scaled(self.device(profile), *ts)
        return self._devices[key]

    def graph(self, name: str):
        if name not in self._graphs:
            self._graphs[name] = self._load_network(name)
        return self._graphs[name]

    def __call__(self, network: str, profile: str, batch: int, threads: int | None,
                 ts: tuple[float, float] | None = None) -> _ModelPoint:
        base = self.device(profile)
        t = threads if base.is_cpu else None
        if not base.is_cpu:
            ts = None
        elif ts is not None and t is not None and t <= (base.cores or 1):
            # ThreadScaling: the hyper-thread penalty acts only past the physical cores, so up to them one
            # prediction serves every penalty (a cache key, not a model change)
            ts = (ts[0], base.thread_scaling.hyperthread_penalty)
        key = (network, profile, batch, t, ts)
        if key not in self._cache:
            p = predict(self.graph(network), self.device(profile, ts), batch=batch, dtype=DTYPE, threads=t,
                        optimizer=OPTIMIZER, layers=False)
            self._cache[key] = _ModelPoint(p.iteration_time_s, p.flops["total"], p.memory.fits)
        return self._cache[key]

    def peak_of_threads(self, profile: str, threads: int | None) -> float:
        dev = self.device(profile)
        peak = dev.peak(DTYPE)
        if dev.is_cpu:
            cores = dev.cores or 1
            peak = peak / cores * min(threads or cores, cores)
        return peak


def thread_scaled(device, serial_fraction: float, hyperthread_penalty: float, source: str = ""):
    """A copy of a CPU profile with another serial fraction and hyper-thread penalty (validated ThreadScaling)."""
    ts = ThreadScaling.model_validate({
        **device.thread_scaling.model_dump(), "serial_fraction": serial_fraction,
        "hyperthread_penalty": hyperthread_penalty,
        "source": source or f"fitted on the {SUITE} {FIT_NETWORK} rows of one framework (perfmodel.validation.dlbench)"})
    return device.model_copy(update={"thread_scaling": ts})


# ----------------------------------------------------------------------------------------------
# mapping rows to model inputs


@dataclass(frozen=True)
class _Case:
    row: PublishedRow
    table: str
    zoo: str
    framework: str
    profile: str
    device_class: str
    batch: int
    batch_stated: bool

    @property
    def label(self) -> str:
        thr = f", {self.row.threads} thr" if self.row.threads is not None and self.device_class != GPU else ""
        tab = " [FCN table b64]" if self.table != "main" else ""
        return f"{self.row.network} / {self.row.framework} / {self.row.hardware}{thr}{tab}"

    @property
    def fit(self) -> bool:
        return self.table == "main" and self.row.network == FIT_NETWORK


def _stated_batch(metric: str) -> int | None:
    m = re.search(r"_b(\d+)$", metric)
    return int(m.group(1)) if m else None


def _cases(rows: Sequence[PublishedRow], overrides: dict[tuple[str, str], int] | None = None) -> list[_Case]:
    out = []
    for r in rows:
        if r.hardware not in HARDWARE_PROFILES:
            raise InputError(f"row {r.index + 1}: unknown hardware '{r.hardware}' (known: {', '.join(HARDWARE_PROFILES)})")
        if r.network not in ZOO_NETWORKS:
            raise InputError(f"row {r.index + 1}: unknown network '{r.network}' (known: {', '.join(ZOO_NETWORKS)})")
        if r.framework not in FRAMEWORKS:
            raise InputError(f"row {r.index + 1}: unknown framework '{r.framework}' (known: {', '.join(FRAMEWORKS)})")
        profile, cls = HARDWARE_PROFILES[r.hardware]
        stated = _stated_batch(r.metric)
        if stated is not None:
            batch, is_stated, table = stated, True, "desktop_fcn_b64" if r.metric != MAIN_METRIC else "main"
        else:
            if (r.network, cls) not in BATCH_ASSUMPTIONS:
                raise InputError(f"row {r.index + 1}: no batch assumption for {r.network} on {cls}")
            batch = BATCH_ASSUMPTIONS[(r.network, cls)].batch
            is_stated, table = False, "main"
            if overrides and (r.network, cls) in overrides:
                batch = overrides[(r.network, cls)]
        if r.metric != MAIN_METRIC and stated is None:
            raise InputError(f"row {r.index + 1}: unknown metric '{r.metric}'")
        out.append(_Case(r, table, ZOO_NETWORKS[r.network], FRAMEWORKS[r.framework], profile, cls, batch, is_stated))
    return out


def _geomean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def _minimize_1d(f, lo: float, hi: float, n: int) -> float:
    """argmin of f on [lo, hi]: the best of an n-point grid, refined by golden section between its neighbours."""
    xs = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    vals = [f(x) for x in xs]
    k = min(range(n), key=lambda i: (vals[i], i))
    a, b = xs[max(0, k - 1)], xs[min(n - 1, k + 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > FIT_TOL:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    best = (a + b) / 2
    return best if f(best) <= vals[k] else xs[k]


def _minimize_2d(f, box: tuple[tuple[float, float], tuple[float, float]], n: int) -> tuple[float, float]:
    """argmin of f(x, y) on a box: the best of an n x n grid, then a compass search (8 directions, halving steps)."""
    (x0, x1), (y0, y1) = box
    grid = [(x0 + (x1 - x0) * i / (n - 1), y0 + (y1 - y0) * j / (n - 1)) for i in range(n) for j in range(n)]
    best = min(grid, key=lambda q: f(*q))
    fb = f(*best)
    hx, hy = (x1 - x0) / (n - 1) / 2, (y1 - y0) / (n - 1) / 2
    while hx > FIT_TOL or hy > FIT_TOL:
        moved = False
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)):
            q = (min(x1, max(x0, best[0] + dx * hx)), min(y1, max(y0, best[1] + dy * hy)))
            fq = f(*q)
            if fq < fb - 1e-15:
                best, fb, moved = q, fq, True
                break
        if not moved:
            hx, hy = hx / 2, hy / 2
    return best


@dataclass(frozen=True)
class ThreadFit:
    """Result of `fit_thread_scaling`: the thread scaling to predict with and which parameters were fitted."""

    serial_fraction: float
    hyperthread_penalty: float
    params: tuple[str, ...]  # of serial_fraction, hyperthread_penalty (the factor is always fitted)
    at_bound: tuple[str, ...]


def fit_thread_scaling(threads: Sequence[int], published: Sequence[float], time_fn, cores: int,
                       default: tuple[float, float]) -> ThreadFit:
    """Fit a framework's Amdahl serial fraction and hyper-thread penalty on its rows of one network on one CPU.

    Least squares on log time: sum_i (log published_i - log F - log time_fn(threads_i, s, p))^2 with the
    factor F profiled out (log F = mean residual), so it is the variance of the log ratios that is minimised.
    Parameters fitted, never more than the distinct thread counts: the factor always; the serial fraction s
    when there are at least two distinct thread counts up to `cores`; the penalty p when there is a row past
    `cores` and one at or below it. Others keep `default` (the device profile's). One thread count: the
    factor only. Bounds: s in SERIAL_BOUNDS, p in [0, PENALTY_MAX].
    """
    if len(threads) != len(published) or not threads:
        raise ValueError("threads and published must be non-empty and of the same length")
    logt = [math.log(t) for t in published]
    below = {n for n in threads if n <= cores}
    above = {n for n in threads if n > cores}
    fit_s, fit_p = len(below) >= 2, bool(above) and bool(below)
    s0, p0 = default

    def obj(s: float, p: float) -> float:
        r = [lt - math.log(time_fn(n, s, p)) for n, lt in zip(threads, logt)]
        m = sum(r) / len(r)
        return sum((x - m) ** 2 for x in r)

    if fit_s and fit_p:
        s, p = _minimize_2d(obj, (SERIAL_BOUNDS, (0.0, PENALTY_MAX)), FIT_GRID)
    elif fit_s:
        s, p = _minimize_1d(lambda x: obj(x, p0), *SERIAL_BOUNDS, 2 * FIT_GRID - 1), p0
    elif fit_p:
        s, p = s0, _minimize_1d(lambda x: obj(s0, x), 0.0, PENALTY_MAX, 2 * FIT_GRID - 1)
    else:
        s, p = s0, p0
    params = tuple(n for n, on in (("serial_fraction", fit_s), ("hyperthread_penalty", fit_p)) if on)
    eps = 10 * FIT_TOL
    at = []
    if fit_s and (s <= SERIAL_BOUNDS[0] + eps or s >= SERIAL_BOUNDS[1] - eps):
        at.append(f"serial_fraction={s:.0f}")
    if fit_p and (p <= eps or p >= PENALTY_MAX - eps):
        at.append(f"hyperthread_penalty={p:.2f}")
    return ThreadFit(s, p, params, tuple(at))


# Thread fits by everything they depend on (profile contents, network, batch, rows): refitting the same FCN-5
# rows (the sensitivity runs, a second run in one process) reuses the fit. Bounded; keys hold no objects.
_FIT_CACHE: dict[tuple, ThreadFit] = {}


def _cached_thread_fit(model: _Model, profile: str, zoo: str, batch: int, threads: tuple[int, ...],
                       published: tuple[float, ...]) -> ThreadFit:
    dev = model.device(profile)
    key = (profile, dev.model_dump_json(), zoo, batch, threads, published, SERIAL_BOUNDS, PENALTY_MAX, FIT_GRID,
           FIT_TOL)
    if key not in _FIT_CACHE:
        if len(_FIT_CACHE) > 256:
            _FIT_CACHE.clear()
        default = (dev.thread_scaling.serial_fraction, dev.thread_scaling.hyperthread_penalty)
        _FIT_CACHE[key] = fit_thread_scaling(
            threads, published, lambda n, s, p: model(zoo, profile, batch, n, (s, p)).time_s, dev.cores or 1, default)
    return _FIT_CACHE[key]


def fit_factors(cases: Sequence[_Case], model: _Model, thread_fit: bool = True) -> dict[tuple[str, str], FittedFactor]:
    """Per (framework, device class), from its FCN-5 rows only: the factor and, on CPUs, the thread scaling.

    `thread_fit=False`: the factor only, with the device profile's thread scaling (the previous method).
    """
    groups: dict[tuple[str, str], list[_Case]] = {}
    present = sorted({(c.framework, c.device_class) for c in cases})
    for c in cases:
        if c.fit:
            groups.setdefault((c.framework, c.device_class), []).append(c)
    out = {}
    for key in present:
        fw, cls = key
        profiles = sorted({c.profile for c in cases if (c.framework, c.device_class) == key})
        cpu = model.device(profiles[0]).is_cpu
        prof = profiles[0] if cpu and len(profiles) == 1 else None
        dts = model.device(prof).thread_scaling if prof else None
        dflt = dict(profile=prof, serial_fraction=dts.serial_fraction if dts else None,
                    hyperthread_penalty=dts.hyperthread_penalty if dts else None,
                    device_serial_fraction=dts.serial_fraction if dts else None,
                    device_hyperthread_penalty=dts.hyperthread_penalty if dts else None)
        if key not in groups:
            out[key] = FittedFactor(
                framework=fw, device_class=cls, factor=1.0, fitted=False, rows=(), ratios=(), factor_only=1.0,
                note=f"no {FIT_NETWORK} rows for {fw} on this device class: factor 1 (model alone)"
                     + (", device profile's thread scaling" if cpu else ""), **dflt)
            continue
        cs = groups[key]
        if len({(c.profile, c.zoo, c.batch) for c in cs}) != 1 and cpu:
            raise InputError(f"the {FIT_NETWORK} rows of {fw} on {cls} mix profiles, networks or batches")
        dev_ratios = tuple(c.row.value / model(c.zoo, c.profile, c.batch, c.row.threads).time_s for c in cs)
        factor_only = _geomean(dev_ratios)
        th = tuple(c.row.threads or 0 for c in cs) if cpu else ()
        if cpu and thread_fit:
            c0 = cs[0]
            tf = _cached_thread_fit(model, c0.profile, c0.zoo, c0.batch, th, tuple(c.row.value for c in cs))
            ratios = tuple(c.row.value / model(c.zoo, c.profile, c.batch, c.row.threads,
                                               (tf.serial_fraction, tf.hyperthread_penalty)).time_s for c in cs)
            extra = dict(serial_fraction=tf.serial_fraction, hyperthread_penalty=tf.hyperthread_penalty,
                         params=("factor",) + tf.params, at_bound=tf.at_bound)
        else:
            ratios, extra = dev_ratios, dict(params=("factor",))
        f = _geomean(ratios)
        rms = math.sqrt(sum(math.log(x / f) ** 2 for x in ratios) / len(ratios))
        out[key] = FittedFactor(framework=fw, device_class=cls, factor=f, fitted=True, rows=tuple(c.label for c in cs),
                                ratios=ratios, threads=th, factor_only=factor_only, ratios_device=dev_ratios,
                                rms_log_residual=rms, **{**dflt, **extra})
    return out


def _row_ts(c: _Case, f: FittedFactor) -> tuple[float, float] | None:
    """The thread scaling a row is predicted with: its framework's fitted one, or None (the profile as it is)."""
    if f.fitted and set(f.params) - {"factor"}:
        return (f.serial_fraction, f.hyperthread_penalty)  # type: ignore[return-value]
    return None


def _evaluate(cases: Sequence[_Case], model: _Model, thread_fit: bool = True):
    factors = fit_factors(cases, model, thread_fit)
    points = [model(c.zoo, c.profile, c.batch, c.row.threads, _row_ts(c, factors[(c.framework, c.device_class)]))
              for c in cases]
    return points, factors
