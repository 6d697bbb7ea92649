"""DLBench 2016: every row predicted with the fitted factors, and the analyses of the report (summaries, thread
curves, published scaling, leave-one-out, claims); result.py builds the result from them."""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Iterable, Sequence

from ..metrics import percentile
from .data import (
    BATCH_ASSUMPTIONS, Claim, DESKTOP, DEVICE_CLASSES, DLBenchRow, ErrorSummary,
    FIT_NETWORK, FRAMEWORK_COLORS, FittedFactor, GPU, LeaveOneOut, NetworkBias,
    PublishedRow, PublishedScaling, RatioComparison, SENSITIVITY_SCALES, SERVER, SensitivityCase,
    SerialFractionDiagnostic, TURBO_RATIO, ThreadBucket, ThreadCurve, ZOO_NETWORKS,
)
from .fit import _Case, _Model, _ModelPoint, _cached_thread_fit, _cases, _evaluate, _geomean, _row_ts

if TYPE_CHECKING:  # the result imports this module
    from .result import DLBenchResult


def _err(pred: float, pub: float) -> float:
    return (pred - pub) / pub * 100.0


def _build_rows(cases: Sequence[_Case], points: Sequence[_ModelPoint], factors, model: _Model) -> list[DLBenchRow]:
    rows = []
    fcn5_ratio = {}
    for c, p in zip(cases, points):
        if c.fit:
            t = c.row.threads if model.device(c.profile).is_cpu else None
            fcn5_ratio[(c.framework, c.profile, t)] = c.row.value / p.time_s
    for c, p in zip(cases, points):
        f = factors[(c.framework, c.device_class)]
        pred = p.time_s * f.factor
        dev = model.device(c.profile)
        implied = p.flops / c.row.value / model.peak_of_threads(c.profile, c.row.threads)
        flags = []
        if c.fit:
            flags.append("fit")
        if not f.fitted:
            flags.append("no_factor")
        if implied > TURBO_RATIO.get(c.profile, 1.0):
            flags.append("above_peak")
        elif implied > 1.0:
            flags.append("above_base_peak")
        if not p.fits:
            flags.append("does_not_fit_memory")
        e = _err(pred, c.row.value)
        fcn5 = fcn5_ratio.get((c.framework, c.profile, c.row.threads if dev.is_cpu else None))
        cpart = f.factor / fcn5 if fcn5 else None
        npart = fcn5 / (c.row.value / p.time_s) if fcn5 else None
        ts = _row_ts(c, f)
        dev_s = model(c.zoo, c.profile, c.batch, c.row.threads).time_s if ts is not None else p.time_s
        used = model.device(c.profile, ts).thread_scaling if dev.is_cpu else None
        rows.append(DLBenchRow(
            index=c.row.index, label=c.label, table=c.table, network=c.row.network, zoo_network=c.zoo,
            framework=c.framework, framework_published=c.row.framework, hardware=c.row.hardware, profile=c.profile,
            device_class=c.device_class, threads=c.row.threads if dev.is_cpu else None,
            physical_cores=dev.cores if dev.is_cpu else None, batch=c.batch, batch_stated=c.batch_stated,
            published_s=c.row.value, model_s=p.time_s, factor=f.factor, predicted_s=pred, signed_error_pct=e,
            abs_error_pct=abs(e), fit_row=c.fit, model_flops=p.flops, implied_peak_fraction=implied,
            fits_memory=p.fits, flags=tuple(flags), config_part=cpart, network_part=npart, model_device_s=dev_s,
            predicted_factor_only_s=dev_s * (f.factor_only if f.factor_only is not None else f.factor),
            serial_fraction=used.serial_fraction if used else None,
            hyperthread_penalty=used.hyperthread_penalty if used else None))
    return rows


def _summaries(rows: Sequence[DLBenchRow]) -> list[ErrorSummary]:
    out = []
    subsets = {
        "held_out": lambda r: not r.fit_row,
        "held_out_unflagged": lambda r: not r.fit_row and "above_peak" not in r.flags,  # impossible rows out
        "fit": lambda r: r.fit_row,
        "all": lambda r: True,
    }
    for cls in DEVICE_CLASSES + ("all",):
        for name, sel in subsets.items():
            rs = [r for r in rows if (cls == "all" or r.device_class == cls) and sel(r)]
            if not rs:
                continue
            errs = [r.abs_error_pct for r in rs]
            worst = max(rs, key=lambda r: r.abs_error_pct)
            out.append(ErrorSummary(
                device_class=cls, subset=name, n=len(rs), median_abs_error_pct=statistics.median(errs),
                mean_abs_error_pct=statistics.fmean(errs), p90_abs_error_pct=percentile(errs, 90),
                worst_abs_error_pct=worst.abs_error_pct, worst_row=worst.label,
                median_signed_error_pct=statistics.median(r.signed_error_pct for r in rs)))
    return out


def _fit_values(f: FittedFactor) -> tuple:
    """Every fitted number of one group (factor and thread scaling), for comparisons."""
    return (f.factor, f.serial_fraction, f.hyperthread_penalty, f.fitted, f.params)


def _sensitivity(rows_in: Sequence[PublishedRow], base_rows: Sequence[DLBenchRow], base_factors, model: _Model,
                 scales: Sequence[float] = SENSITIVITY_SCALES) -> list[SensitivityCase]:
    out = []
    keys = sorted({(r.network, r.device_class) for r in base_rows if not r.batch_stated},
                  key=lambda k: (DEVICE_CLASSES.index(k[1]), list(ZOO_NETWORKS).index(k[0])))
    for net, cls in keys:
        base = BATCH_ASSUMPTIONS[(net, cls)].batch
        for s in (1.0,) + tuple(scales):
            b = max(1, int(round(base * s)))
            cases = _cases(rows_in, overrides={(net, cls): b})
            points, factors = _evaluate(cases, model)
            rows = _build_rows(cases, points, factors, model)
            mine = [r for r in rows if r.network == net and r.device_class == cls and not r.batch_stated]
            held = [r for r in rows if r.device_class == cls and not r.fit_row]
            changed = any(_fit_values(factors[k]) != _fit_values(base_factors[k]) for k in factors)
            out.append(SensitivityCase(
                network=net, device_class=cls, scale=s, batch=b, n_rows=len(mine),
                median_abs_error_pct=statistics.median(r.abs_error_pct for r in mine),
                median_signed_error_pct=statistics.median(r.signed_error_pct for r in mine),
                class_median_abs_error_pct=statistics.median(r.abs_error_pct for r in held) if held else float("nan"),
                factors_changed=changed, rows_not_fitting_memory=sum(not r.fits_memory for r in mine)))
    return out


def _thread_curves(rows: Sequence[DLBenchRow], model: _Model, factors=None) -> list[ThreadCurve]:
    """Model time vs threads per network on each CPU: the device profile, then each framework's fitted copy."""
    out = []
    for profile in ("i7-3820", "xeon-e5-2630v3-2s"):
        dev = model.device(profile)
        cores, hw = dev.cores or 1, dev.hardware_threads
        variants: list[tuple[str, tuple[float, float] | None]] = [("", None)]
        for f in (factors or {}).values():
            if f.profile == profile and f.fitted and set(f.params) - {"factor"}:
                variants.append((f.framework, (f.serial_fraction, f.hyperthread_penalty)))
        for fw, ts in variants:
            nets = []
            for r in rows:
                if r.profile == profile and (not fw or r.framework == fw) and (r.zoo_network, r.batch) not in nets:
                    nets.append((r.zoo_network, r.batch))
            used = model.device(profile, ts).thread_scaling
            for net, b in nets:
                th = tuple(range(1, hw + 1))
                ms = tuple(model(net, profile, b, t, ts).time_s for t in th)
                out.append(ThreadCurve(profile=profile, network=net, framework=fw, serial_fraction=used.serial_fraction,
                                       hyperthread_penalty=used.hyperthread_penalty, batch=b, physical_cores=cores,
                                       threads=th, model_s=ms, speedup_at_cores=ms[0] / ms[cores - 1],
                                       past_cores_ratio=ms[-1] / ms[cores - 1]))
    return out


def _published_scaling(rows: Sequence[DLBenchRow]) -> list[PublishedScaling]:
    groups: dict[tuple[str, str, str, str], list[DLBenchRow]] = {}
    for r in rows:
        if r.threads is None:
            continue
        groups.setdefault((r.profile, r.network, r.framework, r.table), []).append(r)
    out = []
    for (profile, net, fw, table), rs in groups.items():
        rs.sort(key=lambda r: r.threads)
        cores = rs[0].physical_cores or 1
        th = tuple(r.threads for r in rs)
        pub = tuple(r.published_s for r in rs)
        pred = tuple(r.predicted_s for r in rs)

        def speed(vals):
            within = [v for t, v in zip(th, vals) if t <= cores]
            if th[0] != 1 or len(within) < 2:
                return None
            return vals[0] / min(within)

        def past(vals):
            at = [v for t, v in zip(th, vals) if t == cores]
            beyond = [v for t, v in zip(th, vals) if t > cores]
            if not at or not beyond:
                return None
            return beyond[-1] / at[0]

        before = tuple(r.predicted_factor_only_s for r in rs)
        name = net if table == "main" else f"{net} [FCN table b64]"
        out.append(PublishedScaling(profile=profile, network=name, framework=fw, threads=th, published_s=pub,
                                    predicted_s=pred, published_speedup_to_cores=speed(pub),
                                    predicted_speedup_to_cores=speed(pred), published_past_cores_ratio=past(pub),
                                    predicted_past_cores_ratio=past(pred), fit_series=all(r.fit_row for r in rs),
                                    before_s=before, before_speedup_to_cores=speed(before),
                                    before_past_cores_ratio=past(before)))
    return out


def _leave_one_out(cases: Sequence[_Case], model: _Model) -> list[LeaveOneOut]:
    """Each CPU FCN-5 fit row predicted by the same fit on the other FCN-5 rows of its group (fewer rows, so the
    fit falls back to fewer parameters as `fit_thread_scaling` describes)."""
    out = []
    groups: dict[tuple[str, str], list[_Case]] = {}
    for c in cases:
        if c.fit and model.device(c.profile).is_cpu:
            groups.setdefault((c.framework, c.profile), []).append(c)
    for (fw, profile), cs in groups.items():
        if len(cs) < 2:
            continue
        for i, c in enumerate(cs):
            rest = cs[:i] + cs[i + 1:]
            tf = _cached_thread_fit(model, profile, c.zoo, c.batch, tuple(r.row.threads or 0 for r in rest),
                                    tuple(r.row.value for r in rest))
            ts = (tf.serial_fraction, tf.hyperthread_penalty)
            f = _geomean(r.row.value / model(r.zoo, profile, r.batch, r.row.threads, ts).time_s for r in rest)
            f0 = _geomean(r.row.value / model(r.zoo, profile, r.batch, r.row.threads).time_s for r in rest)
            pred = f * model(c.zoo, profile, c.batch, c.row.threads, ts).time_s
            pred0 = f0 * model(c.zoo, profile, c.batch, c.row.threads).time_s
            out.append(LeaveOneOut(framework=fw, profile=profile, row=c.label, threads=c.row.threads or 0,
                                   published_s=c.row.value, params=("factor",) + tf.params,
                                   serial_fraction=tf.serial_fraction, hyperthread_penalty=tf.hyperthread_penalty,
                                   predicted_s=pred, predicted_factor_only_s=pred0,
                                   signed_error_pct=_err(pred, c.row.value),
                                   factor_only_signed_error_pct=_err(pred0, c.row.value)))
    return out


def _thread_buckets(rows: Sequence[DLBenchRow]) -> list[ThreadBucket]:
    out = []
    names = ("1 thread", "2 .. physical cores", "past the physical cores")
    for cls in (DESKTOP, SERVER):
        for i, name in enumerate(names):
            def pick(r):
                if r.threads == 1:
                    return 0
                return 1 if r.threads <= (r.physical_cores or 1) else 2
            rs = [r for r in rows if r.device_class == cls and not r.fit_row and r.threads is not None and pick(r) == i]
            if not rs:
                continue
            before = [_err(r.predicted_factor_only_s, r.published_s) for r in rs]
            out.append(ThreadBucket(device_class=cls, bucket=name, n=len(rs),
                                    median_abs_before_pct=statistics.median(abs(x) for x in before),
                                    median_abs_after_pct=statistics.median(r.abs_error_pct for r in rs),
                                    median_signed_before_pct=statistics.median(before),
                                    median_signed_after_pct=statistics.median(r.signed_error_pct for r in rs)))
    return out


def _ratios(rows: Sequence[DLBenchRow]) -> list[RatioComparison]:
    out = []
    main = [r for r in rows if r.table == "main"]
    for cpu_profile in ("i7-3820", "xeon-e5-2630v3-2s"):
        for net in dict.fromkeys(r.network for r in main):
            for fw in dict.fromkeys(r.framework for r in main):
                cpu = [r for r in main if r.profile == cpu_profile and r.network == net and r.framework == fw]
                gpus = [r for r in main if r.device_class == GPU and r.network == net and r.framework == fw]
                if not cpu or not gpus:
                    continue
                best = min(cpu, key=lambda r: r.published_s)  # the fastest published CPU configuration
                for g in gpus:
                    out.append(RatioComparison(
                        network=net, framework=fw, cpu_profile=cpu_profile, cpu_threads=best.threads or 0,
                        gpu_profile=g.profile, published_ratio=best.published_s / g.published_s,
                        predicted_ratio=best.predicted_s / g.predicted_s,
                        model_ratio=best.model_device_s / g.model_device_s))
    return out


def _miss_cause(r: DLBenchRow, rows: Sequence[DLBenchRow]) -> str:
    """A first explanation of a miss from the row's own evidence (the README discusses the causes further)."""
    if "above_peak" in r.flags:
        return (f"the published time implies {r.implied_peak_fraction:.0%} of the fp32 peak of the threads used at "
                f"the assumed batch {r.batch}, more than even the turbo clock allows: physically impossible, most "
                f"likely a transcription error in the table (or a much smaller batch)")
    parts = []
    if "above_base_peak" in r.flags:
        parts.append(f"the published time needs {r.implied_peak_fraction:.0%} of the base-clock peak: the run "
                     f"used turbo clocks, which the profile does not model")
    cfg = (f"{r.threads} thread{'s' if r.threads != 1 else ''}" if r.threads is not None else r.profile)
    if r.config_part is not None and r.network_part is not None:
        fcn5 = r.factor / r.config_part
        parts.append(f"predicted/published = {r.predicted_s / r.published_s:.2f} = {r.config_part:.2f} (the "
                     f"{r.framework} factor {r.factor:.2f} vs the {fcn5:.2f} FCN-5 alone needs at {cfg}"
                     + (": the residual of the framework's thread-scaling fit on that FCN-5 row" if r.threads is not None
                        else ": the GPUs' relative speed differs from the profiles'") + ")"
                     f" x {r.network_part:.2f} ({r.network} vs FCN-5 at the same {cfg}: {r.framework} ran "
                     f"{r.network} {'slower' if r.network_part < 1 else 'faster'} relative to its FCN-5 than the "
                     f"model's op costs say)")
    if r.threads is not None and r.physical_cores and r.threads > r.physical_cores:
        same = [x for x in rows if x.profile == r.profile and x.network == r.network and x.framework == r.framework
                and x.table == r.table and x.threads is not None and x.threads <= r.physical_cores]
        if same:
            best = min(same, key=lambda x: x.published_s)
            slow = r.published_s / best.published_s
            if slow > 1.3:
                parts.append(f"hyper-thread collapse: {slow:.1f}x slower at {r.threads} threads than at {best.threads}, "
                             f"the model with {r.framework}'s "
                             f"{'fitted' if r.framework != 'Caffe' else 'device profile'} penalty "
                             f"{r.hyperthread_penalty:.2f} gives {r.model_s / best.model_s:.2f}x")
    if not parts:
        net = [x.signed_error_pct for x in rows if x.network == r.network and x.device_class == r.device_class
               and x.table == r.table]
        parts.append(f"the median signed error of {r.network} on {r.device_class} is {statistics.median(net):+.0f}%")
    return "; ".join(parts)


def _serial_fractions(rows: Sequence[DLBenchRow], model: _Model) -> list[SerialFractionDiagnostic]:
    out = []
    fit = [r for r in rows if r.fit_row and r.threads is not None]
    for profile in dict.fromkeys(r.profile for r in fit):
        dev = model.device(profile)
        for fw in dict.fromkeys(r.framework for r in fit if r.profile == profile):
            rs = {r.threads: r.published_s for r in fit if r.profile == profile and r.framework == fw}
            if 1 not in rs:
                continue
            ns = tuple(n for n in sorted(rs) if 1 < n <= (dev.cores or 1))
            sp = tuple(rs[1] / rs[n] for n in ns)
            out.append(SerialFractionDiagnostic(
                profile=profile, framework=fw, profile_serial_fraction=dev.thread_scaling.serial_fraction, threads=ns,
                published_speedup=sp, implied_serial_fraction=tuple((n / x - 1) / (n - 1) for n, x in zip(ns, sp))))
    return out


def _network_bias(rows: Sequence[DLBenchRow]) -> list[NetworkBias]:
    out = []
    for cls in DEVICE_CLASSES:
        for fw in FRAMEWORK_COLORS:
            for net in dict.fromkeys(r.network for r in rows):
                rs = [r for r in rows if r.device_class == cls and r.framework == fw and r.network == net]
                if not rs:
                    continue
                nps = [r.network_part for r in rs if r.network_part is not None]
                out.append(NetworkBias(device_class=cls, framework=fw, network=net, n=len(rs),
                                       median_signed_error_pct=statistics.median(r.signed_error_pct for r in rs),
                                       median_network_part=statistics.median(nps) if nps else None))
    return out


def _med_log_err(pairs: Iterable[tuple[float, float]]) -> float:
    """Median over (predicted, published) pairs of the factor between them (1 = exact)."""
    xs = [abs(math.log(a / b)) for a, b in pairs]
    return math.exp(statistics.median(xs)) if xs else float("nan")


def _claim_scaling(curves, scaling) -> Claim:
    """Claim 1: adding threads up to the physical cores speeds training up."""
    cpus = ("i7-3820", "xeon-e5-2630v3-2s")
    mono = all(all(b <= a * (1 + 1e-12) for a, b in zip(c.model_s[:c.physical_cores], c.model_s[1:c.physical_cores]))
               for c in curves)
    held = [x for x in scaling if not x.fit_series]
    parts, good = [], True
    for prof in cpus:
        sel = [x for x in held if x.profile == prof and x.published_speedup_to_cores and x.predicted_speedup_to_cores
               and x.before_speedup_to_cores]
        if not sel:
            continue
        pub = statistics.median(x.published_speedup_to_cores for x in sel)
        bef = statistics.median(x.before_speedup_to_cores for x in sel)
        aft = statistics.median(x.predicted_speedup_to_cores for x in sel)
        e_b = _med_log_err((x.before_speedup_to_cores, x.published_speedup_to_cores) for x in sel)
        e_a = _med_log_err((x.predicted_speedup_to_cores, x.published_speedup_to_cores) for x in sel)
        good &= e_a < 1.5
        parts.append(f"{prof} ({len(sel)} held-out series): published median speed-up from 1 thread to the best at <= "
                     f"physical cores {pub:.1f}x; device profile {bef:.1f}x; with each framework's thread scaling "
                     f"fitted on its FCN-5 rows {aft:.1f}x (median factor off per series {e_b:.2f}x before, "
                     f"{e_a:.2f}x after)")
    return Claim(
        claim="Adding threads up to the physical core count speeds training up",
        reproduced=("yes" if good else "partly") if mono and parts else "no",
        evidence=(f"the model's time never rises with threads up to the physical cores, with the device profiles and "
                  f"with every fitted framework copy ({'yes' if mono else 'NO'}). " + "; ".join(parts) + ". The desktop's "
                  "main-table series have 1, 2 and 8 threads only, so there it is 1 -> 2 threads. The device "
                  "profiles' serial fractions (hardware) predict the direction but several times the server speed-up "
                  "the 2016 frameworks got; the FCN-5-fitted serial fractions carry the size over to the other networks "
                  "of the same framework, to within the factor shown."))


def _claim_past_cores(curves, scaling, factors) -> Claim:
    """Claim 2: hyper-threads do not help and can slow training down."""
    past_pub = [x for x in scaling if x.published_past_cores_ratio]
    flat = all(c.past_cores_ratio >= 1.0 - 1e-12 for c in curves)
    lo, hi = min(c.past_cores_ratio for c in curves), max(c.past_cores_ratio for c in curves)
    slower = [x for x in past_pub if x.published_past_cores_ratio > 1.0]
    worst = max(past_pub, key=lambda x: x.published_past_cores_ratio) if past_pub else None
    ev = (f"the model is flat or slower past the physical cores for every network on both CPUs, with the device "
          f"profiles and with every fitted framework copy ({'yes' if flat else 'NO'}): time at all hardware threads / "
          f"time at the physical cores {lo:.2f}-{hi:.2f}. ")
    if factors:
        pen = [f for f in factors.values() if f.fitted and "hyperthread_penalty" in f.params]
        if pen:
            ev += ("Hyper-thread penalties fitted on FCN-5 rows past the cores: "
                   + ", ".join(f"{f.framework} {f.profile} {f.hyperthread_penalty:.2f}"
                               + (" (bound)" if any(b.startswith("hyperthread") for b in f.at_bound) else "")
                               for f in pen) + " (device profiles: 0.10). ")
    if past_pub:
        ev += (f"Published series with rows at the core count and past it (server 16 vs 32 threads, desktop FCN "
               f"table 4 vs 8): {len(slower)} of {len(past_pub)} are slower past the cores (ratio "
               f"{min(x.published_past_cores_ratio for x in past_pub):.2f}-{worst.published_past_cores_ratio:.1f}, "
               f"worst {worst.network} / {worst.framework} on {worst.profile}). ")
        hp = [x for x in past_pub if not x.fit_series and x.predicted_past_cores_ratio and x.before_past_cores_ratio]
        torch_fcn5 = next((x.published_past_cores_ratio for x in past_pub if x.fit_series and x.framework == "Torch"
                           and x.profile == "xeon-e5-2630v3-2s"), float("nan"))
        if hp:
            e_b = _med_log_err((x.before_past_cores_ratio, x.published_past_cores_ratio) for x in hp)
            e_a = _med_log_err((x.predicted_past_cores_ratio, x.published_past_cores_ratio) for x in hp)
            ev += (f"On the {len(hp)} held-out series the time past the cores / time at the cores is off by a median "
                   f"factor {e_b:.2f}x with the device profiles and {e_a:.2f}x with the fitted penalties: the penalty "
                   f"fitted on a framework's FCN-5 collapse does not carry over to its other networks (e.g. Torch on "
                   f"the server: FCN-5 {torch_fcn5:.2f}x "
                   f"slower past the cores, its other networks "
                   + ", ".join(f"{x.network} {x.published_past_cores_ratio:.2f}x" for x in hp
                               if x.framework == "Torch" and x.profile == "xeon-e5-2630v3-2s")
                   + "), the model has no penalty that rises above 1 where a framework gained from hyper-threads, and "
                     "Caffe, without FCN-5 rows, keeps the profile's mild penalty.")
    return Claim(claim="Threads beyond the physical cores (hyper-threads) do not help and can slow training down",
                 reproduced="partly" if flat and slower else ("yes" if flat else "no"), evidence=ev)


def _claims_gpu_cpu(ratios) -> list[Claim]:
    """Claim 3: GPUs are tens of times faster than the CPU (one claim per CPU)."""
    out = []
    for prof in ("xeon-e5-2630v3-2s", "i7-3820"):
        rs = [r for r in ratios if r.cpu_profile == prof]
        if not rs:
            continue
        held = [r for r in rs if r.network != FIT_NETWORK]
        pub = statistics.median(r.published_ratio for r in held)
        pred = statistics.median(r.predicted_ratio for r in held)
        raw = statistics.median(r.model_ratio for r in held)
        logerr = statistics.median(abs(math.log(r.predicted_ratio / r.published_ratio)) for r in held)
        ok = "yes" if abs(math.log(pred / pub)) < math.log(1.5) else ("partly" if abs(math.log(pred / pub)) < math.log(3) else "no")
        out.append(Claim(
            claim=f"GPUs are tens of times faster than the CPU ({prof}, fastest published thread count)",
            reproduced=ok,
            evidence=(f"median CPU/GPU time ratio over the non-FCN-5 (network, framework, GPU) triples: published "
                      f"{pub:.1f}x, predicted {pred:.1f}x (model alone, without framework factors: {raw:.1f}x); "
                      f"median factor between predicted and published ratio {math.exp(logerr):.2f}x "
                      f"over {len(held)} triples.")))
    return out


def _claims(rows, curves, scaling, ratios, factors=None) -> list[Claim]:
    """The paper's claims, each with whether the model reproduces it and the evidence."""
    return [_claim_scaling(curves, scaling), _claim_past_cores(curves, scaling, factors)] + _claims_gpu_cpu(ratios)


def predict_published(published: Sequence[PublishedRow], model: _Model | None = None, thread_fit: bool = True
                      ) -> tuple[tuple[DLBenchRow, ...], dict[tuple[str, str], FittedFactor]]:
    """Predict published rows: fit factors (and CPU thread scaling) on their FCN-5 rows, then predict every row.

    `thread_fit=False`: the factor-only fit with the device profiles' thread scaling (the previous method).
    """
    model = model or _Model()
    cases = _cases(published)
    points, factors = _evaluate(cases, model, thread_fit)
    return tuple(_build_rows(cases, points, factors, model)), factors


def _pub(res: DLBenchResult, network: str, framework: str, profile: str, threads: int | None = None) -> DLBenchRow | None:
    for r in res.rows:
        if (r.table == "main" and r.network == network and r.framework == framework and r.profile == profile
                and r.threads == threads):
            return r
    return None


def _gpu_pair_ratio(res: DLBenchResult, a: str, b: str) -> tuple[float, float, int]:
    """Median over (network, framework) of time on GPU a / time on GPU b: published and model."""
    pub, mod = [], []
    for r in res.rows:
        if r.profile != a:
            continue
        o = _pub(res, r.network, r.framework, b)
        if o is not None:
            pub.append(r.published_s / o.published_s)
            mod.append(r.model_s / o.model_s)
    if not pub:
        return float("nan"), float("nan"), 0
    return statistics.median(pub), statistics.median(mod), len(pub)
