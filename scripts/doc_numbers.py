#!/usr/bin/env python
"""The numbers quoted in README.md and docs/ are computed here from the code; check them or rewrite them.

    python scripts/doc_numbers.py           # check: list every doc number that differs; exit 1 if any
    python scripts/doc_numbers.py --write   # rewrite them in place

Each number is a span of a doc file located by a regular expression (one group, `v`) that must match
exactly once, so a reworded doc fails loudly instead of going unchecked. `$ ` sessions in ```text blocks
(the README tour) are re-run and their shown lines replaced by the actual lines of the same shape.
tests/test_doc_numbers.py runs the check.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # doc sessions import tests.import_corpus

import docblocks as D  # noqa: E402

ROOT = D.ROOT
API = "docs/python_api.md"
EPOCHS, IMAGENET = 90, 1_281_167


@dataclass(frozen=True)
class Span:
    """A number (or a few) in a doc: `pattern` has one group named v, whose text `value` must equal."""

    key: str
    file: str
    pattern: str


# ---- values -----------------------------------------------------------------------------------------------

def sig(x: float, digits: int = 3) -> str:
    """A float with `digits` significant digits, plain or as 1.23e13 (no '+' or leading zeros in the exponent)."""
    if x == 0:
        return "0.0"
    s = f"{x:.{digits}g}"
    if "e" in s:
        m, e = s.split("e")
        return f"{m}e{int(e)}"
    return s if "." in s else s + ".0"


def _value(v: Any) -> str:
    if isinstance(v, bool) or v is None or isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        return sig(v, 4 if v >= 100 else 3) if v < 1e5 else sig(v)
    return repr(v)


def dict_comment(d: dict[str, Any], width: int = 108) -> str:
    """A dict as `# {...}` comment lines wrapped at `width` (continuation lines start with `#  `)."""
    items = [f"{k!r}: {_value(v)}" for k, v in d.items()]
    lines, cur = [], "# {"
    for i, it in enumerate(items):
        piece = it + ("}" if i == len(items) - 1 else ",")
        if len(cur) + len(piece) + 1 > width and cur not in ("# {", "#  "):
            lines.append(cur)
            cur = "#  "
        cur += ("" if cur in ("# {", "#  ") else " ") + piece
    lines.append(cur)
    return "\n".join(lines) + "\n"


def sweep_values() -> dict[str, str]:
    """The sweep example of python_api.md."""
    import perfmodel

    res = perfmodel.sweep("resnet50", hardware=["v100-sxm2", "a100-sxm4-40gb"], devices=[1, 8, 64],
                          batch=[32, 64], dtype=["fp16", "bf16"])
    return {"sweep.counts": f"({len(res)}, {len(res.ok)}, {len(res.errors)})",
            "sweep.row0": dict_comment(res.rows[0]),
            "sweep.error0": '"' + res.errors[0]["error"] + '"'}


def fit_values() -> dict[str, str]:
    """The memory-planning example and table of python_api.md."""
    import perfmodel

    out: dict[str, str] = {}
    labels = {None: "none", "blocks": "blocks", "sqrt": "sqrt"}
    for rc in (None, "blocks", "sqrt"):
        r = perfmodel.fit("gpt2_small", "v100-sxm2", dtype="fp16", optimizer="adam", recompute=rc)
        m = r.memory
        out[f"fit.table.{labels[rc]}"] = (f"{r.batch} | {m.activations_bytes / 1e9:.2f} GB | "
                                          f"{r.iteration_time_s * 1e3:.0f} ms | {r.throughput:.1f}")
        if rc is None:
            out["fit.batch"] = (f"{r.batch}: batch {r.batch} fits in the {m.capacity_bytes / 2**30:.0f} GiB, "
                                f"batch {r.batch + 1} does not")
            out["fit.activations"] = f"{m.activations_bytes / 1e9:.1f} GB of the {m.total_bytes / 1e9:.1f} GB total"
        if rc == "blocks":
            out["fit.blocks"] = (f"({r.batch}, {r.recompute_time_s:.3f}, {r.iteration_time_s:.3f}): "
                                 f"{r.recompute_time_s / r.iteration_time_s:.0%} of the step recomputes")
    return out


def _compare_line(r) -> str:
    cost = f"${r.cost:.0f}"
    line = (f"# {r.hardware:15} {r.time_to_train_s / 3600:4.1f} h {cost:>5}  "
            f"deadline {'met' if r.meets_deadline else 'missed':8}budget {'ok' if r.meets_budget else 'over':6}")
    if r.price_source.startswith("example table"):
        line += "(price: example table)"
    return line.rstrip() + "\n"


def cost_values() -> dict[str, str]:
    """Time to train and the compare example of python_api.md."""
    import perfmodel
    from perfmodel.planning import compare, time_to_train

    p = perfmodel.predict("resnet50", "v100-sxm2", batch=64, dtype="fp16", devices=8, layers=False)
    est = time_to_train(p, epochs=EPOCHS, dataset_samples=IMAGENET, price_per_device_hour=2.48)
    c = compare("resnet50", ["v100-sxm2", "a100-sxm4-40gb", "h100-sxm", "t4"], devices=8, batch=64,
                dtype="fp16", epochs=EPOCHS, dataset_samples=IMAGENET, deadline_s=8 * 3600, budget=100,
                price_per_hour={"v100-sxm2": 2.48, "t4": 0.53})
    best = c.best()
    return {"tte": f"({est.iterations_per_epoch}, {est.hours:.2f}, {est.device_hours:.1f}, {est.cost:.1f})",
            "compare.rows": "".join(_compare_line(r) for r in c.rows),
            "compare.best": repr(best.hardware if best else None)}


def serve_values() -> dict[str, str]:
    """The serving example of python_api.md."""
    import perfmodel

    r = perfmodel.serve("bert_base", "a100-sxm4-40gb", [1, 8, 32, 128], dtype="fp16")
    pts = [(p.batch, round(p.latency_s * 1e3, 2), round(p.throughput)) for p in r.points]
    return {"serve.points": repr(pts), "serve.max_batch": str(r.max_batch)}


def api_gpu_cpu_values() -> dict[str, str]:
    """The memory-format and CPU page-fault examples of python_api.md."""
    import perfmodel

    kw = dict(batch=256, dtype="bf16")
    nchw = perfmodel.predict("resnet50", "a100-sxm4-80gb", **kw).iteration_time_s
    nhwc = perfmodel.predict("resnet50", "a100-sxm4-80gb", memory_format="channels_last", **kw).iteration_time_s
    p = perfmodel.predict("resnet50", "amd-epyc-2c-kvm", batch=16)
    faults = p.assumptions["heap_refault_s"]
    return {"api.memory_format": f"({nchw * 1e3:.1f}, {nhwc * 1e3:.1f})",
            "api.heap_refault": f"({faults:.3f}, {p.iteration_time_s:.2f}): {100 * faults / p.iteration_time_s:.0f}%"}


def plan_values() -> dict[str, str]:
    """The plan-search example of python_api.md (GPT-3 175B on 1,024 A100-80GB)."""
    import perfmodel

    res = perfmodel.plan_search("gpt3_175b", "dgx-a100-ib-hdr", devices=1024, global_batch=1536,
                                device="a100-sxm4-80gb")
    b = res.plans[0]
    return {"plan.best": repr((b.dp, b.tp, b.pp, b.microbatch, b.microbatches, b.recompute, b.dtype, b.schedule)),
            "plan.time": f"({b.iteration_time_s:.2f}, {b.mfu:.3f})"}


LARGE = "docs/large_models.md"


def printed_comment(file: str, first_line: str) -> str:
    """What the python block of `file` holding `first_line` prints, as `# ` lines: the block runs
    without its trailing `# ` lines, after `import perfmodel`, with its stdout captured."""
    import contextlib
    import io

    block = next(b for b in D.blocks(ROOT / file) if b.lang == "python" and first_line in b.text)
    lines = block.text.splitlines()
    while lines and lines[-1].startswith("# "):
        lines.pop()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile("import perfmodel\n" + "\n".join(lines), block.where, "exec"), {"__name__": "__doc__"})
    return "".join(f"# {line}".rstrip() + "\n" for line in buf.getvalue().splitlines())


def large_model_values() -> dict[str, str]:
    """docs/large_models.md: the recomputation / ZeRO-1 and FSDP / 3D comparisons."""
    import perfmodel

    out: dict[str, str] = {}
    out["large.table"] = printed_comment(LARGE, "plan = dict(dp=8, tp=8, pp=16, microbatches=192)")
    out["large.fsdp"] = printed_comment(LARGE, "fsdp = dict(plan=dict(dp=128")
    out["large.fsdp_search"] = printed_comment(LARGE, "res = perfmodel.plan_search(\"gpt3_175b\"")
    out["large.fsdp_pp"] = printed_comment(LARGE, "piped = dict(plan=dict(dp=16")
    out["large.moe_sharded"] = printed_comment(LARGE, "kw = dict(devices=64, batch=1, expert_parallel=8")
    out["readme.large"] = printed_comment("README.md", "plans = {\"3D: TP8 x PP8 x DP16\"")
    mem = {z: perfmodel.predict("gpt3_175b", "dgx-a100-ib-hdr", devices=1024, batch=1536, scaling="strong",
                                plan=dict(dp=8, tp=8, pp=16, microbatches=192), dtype="bf16", optimizer="adam",
                                recompute="full", zero=z, layers=False).memory.total_bytes for z in (0, 1)}
    out["large.zero_gb"] = f"{(mem[0] - mem[1]) / 1e9:.0f} GB"
    return out


def readme_values() -> dict[str, str]:
    """Network sizes quoted in the README."""
    import perfmodel

    params = [perfmodel.network_summary(perfmodel.load_network(n)).params / 1e6 for n in ("fcn5", "fcn8")]
    return {"readme.fcn_params": f"{params[0]:.1f}M and\n{params[1]:.1f}M parameters"}


def _report(suite: str) -> dict[str, Any]:
    import json

    return json.loads((ROOT / "validation" / "reports" / suite / "results.json").read_text(encoding="utf-8"))


def validation_values() -> dict[str, str]:
    """The README's validation figures, from the committed reports (validation/reports/*/results.json)."""
    s = _report("cpu-full")["summary"]
    w = s["worst"]
    out = {"cpu-full.median": f"{s['median_abs_pct']:.1f}%", "cpu-full.mean": f"{s['mean_abs_pct']:.1f}%",
           "cpu-full.p90": f"{s['p90_abs_pct']:.1f}%",
           "cpu-full.worst": (f"{abs(w[0]['error_pct']):.1f}% (`{w[0]['case']}`, then "
                              + ", ".join(f"`{x['case']}` {abs(x['error_pct']):.1f}%" for x in w[1:3]) + ")"),
           "cpu-full.within": f"{s['within_10pct']} / {s['within_25pct']} of {s['n']}",
           "cpu-full.signed": f"{s['mean_signed_pct']:+.0f}%", "cpu-full.n": str(s["n"])}
    d = _report("ddp-cpu")
    for c in d["cases"]:
        out[f"ddp-cpu.{c['case']['name']}"] = (f"{c['measured_median_s'] * 1e3:.1f} | {c['predicted_s'] * 1e3:.1f} | "
                                               f"{c['error_pct']:+.1f}%")
    ds = d["summary"]
    n, ok = ds["cases"], ds["within_target"]
    within = f"all {n}" if ok == n else f"{ok} of {n}"
    out["ddp-cpu.summary"] = (f"Median absolute error {ds['median_abs_error_pct']:.1f}%, worst "
                              f"{ds['worst_abs_error_pct']:.1f}%; {within} cases within the {ds['target_pct']:.0f}% target")
    return out


CPU_RANDOM_SEEDS = (325857, 748460, 396065, 147203, 358504, 801950, 784805, 527880, 535196, 762659, 457087, 146832, 21193, 20198, 458203, 390123, 712881, 233397)


def cpu_random_values() -> dict[str, str]:
    """The README's cpu-random table, from validation/reports/cpu-random-<seed>/results.json."""
    out = {}
    for seed in CPU_RANDOM_SEEDS:
        s = _report(f"cpu-random-{seed}")["summary"]
        out[f"cpu-random.{seed}"] = (f"{s['n']} | {s['median_abs_pct']:.1f}% | {s['p90_abs_pct']:.1f}% | "
                                     f"{s['max_abs_pct']:.1f}% | {s['mean_signed_pct']:.1f}%")
    return out


# README speed row (its first cell) -> the start of the benchmarks/RESULTS.md row it quotes
SPEED = {"GPT-3 175B on 1,024 A100s (TP8 x PP16 x DP8), `predict(..., layers=False)` asked again": "GPT-3 175B on 1,024",
         "same, first call in a fresh process (parses the network file)": "same, first call",
         "ResNet-50 on a V100 (batch 32), asked again": "ResNet-50 on a V100",
         "sweep of 10,000 scenarios, one process": "sweep of 10,000 scenarios",
         "plan search, GPT-3 175B on 16,384 A100 80 GB, global batch 1,536": "plan search, GPT-3 175B on 16,384"}


def speed_values() -> dict[str, str]:
    """The README's speed table, from benchmarks/RESULTS.md (the first time in each row's measured cell)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in (ROOT / "benchmarks/RESULTS.md").read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    out = {}
    for label, start in SPEED.items():
        row = next((r for r in rows if r[0].startswith(start)), None)
        m = re.match(r"[\d.,]+ (?:ms|us|s)\b", row[-1]) if row else None
        out[f"speed.{start}"] = m.group(0) if m else "(not in benchmarks/RESULTS.md)"
    return out


DEEPBENCH = {"gemm": "GEMM", "conv_fwd": "convolution forward", "conv_bwd_data": "convolution backward-data",
             "conv_bwd_filter": "convolution backward-filter", "rnn": "RNN (vanilla, LSTM, GRU)",
             "allreduce": "all-reduce", "all": "all rows"}


def deepbench_values() -> dict[str, str]:
    """The README's deepbench-dev table, from validation/reports/deepbench-dev/report.json."""
    import json

    d = json.loads((ROOT / "validation/reports/deepbench-dev/report.json").read_text(encoding="utf-8"))
    out = {}
    for key in DEEPBENCH:
        ins = d["in_sample"]["all"] if key == "all" else d["in_sample"]["per_class"][key]
        held = d["leave_one_gpu_out"]["all"] if key == "all" else d["leave_one_gpu_out"]["per_class"][key]
        out[f"deepbench.{key}"] = f"{ins['n']} | {ins['median'] * 100:.1f}% | {held['median'] * 100:.1f}%"
    return out


VALUES: tuple[Callable[[], dict[str, str]], ...] = (sweep_values, fit_values, cost_values, serve_values,
                                                    api_gpu_cpu_values, plan_values, large_model_values, readme_values,
                                                    validation_values, deepbench_values, cpu_random_values,
                                                    speed_values)
DDP_CASES = ("mlp-b64", "mlp-b256", "cnn-vgg-small-b24", "cnn-resnet-small-b32", "autoencoder-b128", "lstm-b64")

SPANS = (
    Span("sweep.counts", API, r"len\(res\), len\(res\.ok\), len\(res\.errors\) +# (?P<v>\([\d, ]+\))"),
    Span("sweep.row0", API, r"res\.rows\[0\]\n(?P<v>(?:# .*\n)+)"),
    Span("sweep.error0", API, r"res\.errors\[0\]\[\"error\"\] +# (?P<v>\".*\")\n"),
    Span("fit.batch", API, r"r\.batch +# (?P<v>\d+: batch \d+ fits in the [\d.]+ GiB, batch \d+ does not)"),
    Span("fit.activations", API, r"r\.memory\.activations_bytes +# (?P<v>[\d.]+ GB of the [\d.]+ GB total)"),
    Span("fit.blocks", API, r"r\.recompute_time_s, r\.iteration_time_s +# (?P<v>\([\d., ]+\): \d+% of the step "
                            r"recomputes)"),
    Span("fit.table.none", API, r"\n\| none \| (?P<v>[^\n]*?) \|\n"),
    Span("fit.table.blocks", API, r"\n\| `blocks` \(.*?\) \| (?P<v>[^\n]*?) \|\n"),
    Span("fit.table.sqrt", API, r"\n\| `sqrt` \(.*?\) \| (?P<v>[^\n]*?) \|\n"),
    Span("tte", API, r"est\.device_hours, est\.cost +# (?P<v>\([\d., ]+\))"),
    Span("compare.rows", API, r"r\.meets_deadline, r\.meets_budget\)\n(?P<v>(?:# .*\n)+)"),
    Span("compare.best", API, r"c\.best\(\)\.hardware +# (?P<v>'[^']*'|None)"),
    Span("api.memory_format", API, r"round\(nhwc\.iteration_time_s \* 1e3, 1\) +# (?P<v>\([\d., ]+\))"),
    Span("api.heap_refault", API, r"p\.assumptions\[\"heap_refault_s\"\], p\.iteration_time_s +# (?P<v>\([\d., ]+\): \d+%)"),
    Span("serve.points", API, r"for p in r\.points\]\n# (?P<v>\[.*\])\n"),
    Span("serve.max_batch", API, r"r\.max_batch +# (?P<v>\d+)"),
    Span("plan.best", API, r"best\.dtype, best\.schedule\n# (?P<v>\(.*\))\n"),
    Span("plan.time", API, r"best\.iteration_time_s, best\.mfu +# (?P<v>\([\d., ]+\))"),
    Span("large.table", LARGE, r"p\.memory\.fits\)\n(?P<v>(?:# .*\n)+)"),
    Span("large.fsdp", LARGE, r"'does not fit'\}\"\)\n(?P<v>(?:# .*\n)+)"),
    Span("large.fsdp_search", LARGE, r"r\.memory_bytes / 1e9:\.1f\} GB\"\)\n(?P<v>(?:# .*\n)+)"),
    Span("large.fsdp_pp", LARGE, r"total \{m\.total_bytes / 1e9:4\.1f\} GB\"\)\n(?P<v>(?:# .*\n)+)"),
    Span("large.moe_sharded", LARGE, r"fits=\{m\.fits\}\"\)\n(?P<v>(?:# .*\n)+)"),
    Span("readme.large", "README.md", r"GB per GPU\"\)\n(?P<v>(?:# .*\n)+)"),
    Span("large.zero_gb", LARGE, r"frees about (?P<v>\d+ GB) per GPU"),
    Span("readme.fcn_params", "README.md", r"FCN-5/8 use the benchmark scripts' sizes \((?P<v>[\d.]+M and\s+[\d.]+M "
                                           r"parameters)\)"),
    Span("cpu-full.median", "README.md", r"\n\| median absolute error \| (?P<v>[\d.]+%) \|\n"),
    Span("cpu-full.mean", "README.md", r"\n\| mean absolute error \| (?P<v>[\d.]+%) \|\n"),
    Span("cpu-full.p90", "README.md", r"\n\| 90th percentile absolute error \| (?P<v>[\d.]+%) \|\n"),
    Span("cpu-full.worst", "README.md", r"\n\| worst case \| (?P<v>[^|\n]+\)) \|\n"),
    Span("cpu-full.signed", "README.md", r"\(bias (?P<v>[+-]\d+%); positive"),
    Span("cpu-full.n", "README.md", r"\n(?P<v>\d+) cases \(MLP, autoencoder, residual CNN"),
    Span("cpu-full.within", "README.md", r"\n\| cases within 10% / 25% \| (?P<v>\d+ / \d+ of \d+) \|\n"),
    *(Span(f"ddp-cpu.{c}", "README.md", rf"\n\| {re.escape(c)} \| (?P<v>[^\n]*?) \|\n") for c in DDP_CASES),
    *(Span(f"deepbench.{k}", "README.md", rf"\n\| {re.escape(v)} \| (?P<v>[^\n]*?) \|\n") for k, v in DEEPBENCH.items()),
    *(Span(f"cpu-random.{seed}", "README.md", rf"\n\| {seed} \| (?P<v>[^\n]*?) \|\n") for seed in CPU_RANDOM_SEEDS),
    *(Span(f"speed.{start}", "README.md", rf"\n\| {re.escape(label)} \| (?P<v>[^|\n]*?) \|\n")
      for label, start in SPEED.items()),
    Span("ddp-cpu.summary", "README.md", r"\n(?P<v>Median absolute error [\d.]+%, worst [\d.]+%; [^\n]*? cases within "
                                         r"the \d+% target)"),
)


# ---- check and rewrite ------------------------------------------------------------------------------------------

def compute_values() -> dict[str, str]:
    """Every generated value, by key."""
    out: dict[str, str] = {}
    for f in VALUES:
        out.update(f())
    return out


def span_problems(values: dict[str, str], write: bool) -> list[str]:
    """Doc spans whose text differs from the value (rewritten when `write`), or that do not match once."""
    problems: list[str] = []
    texts: dict[str, str] = {}
    for s in SPANS:
        text = texts.setdefault(s.file, (ROOT / s.file).read_text(encoding="utf-8"))
        hits = list(re.finditer(s.pattern, text))
        if len(hits) != 1:
            problems.append(f"{s.file}: [{s.key}] the pattern matches {len(hits)} times, not once (doc reworded? "
                            "update SPANS in scripts/doc_numbers.py)")
            continue
        m, want = hits[0], values[s.key]
        if m.group("v") != want:
            line = text.count("\n", 0, m.start("v")) + 1
            problems.append(f"{s.file}:{line}: [{s.key}] doc {m.group('v')!r}, code {want!r}")
            texts[s.file] = text[:m.start("v")] + want + text[m.end("v"):]
    if write:
        for f, text in texts.items():
            (ROOT / f).write_text(text, encoding="utf-8")
    return problems


def session_problems(write: bool) -> list[str]:
    """`$ ` sessions whose shown output differs from what the command prints now (lines rewritten when `write`).
    The commands run in a temporary folder, so the files they write never land in the checkout."""
    import os
    import tempfile

    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            return _session_problems(write)
        finally:
            os.chdir(here)


def _session_problems(write: bool) -> list[str]:
    problems: list[str] = []
    for path in D.doc_files():
        text = path.read_text(encoding="utf-8")
        new = text
        for b in D.blocks(path):
            if b.lang != "text" or b.skip or D.missing(b.needs):
                continue
            for cmd in D.commands(b):
                if cmd.argv[0] != "perfmodel":
                    continue
                code, out = D.run_cli(cmd.argv)
                for shown, actual in D.compare_output(cmd.shown, out):
                    problems.append(f"{cmd.where}: doc {shown!r}, code {actual!r}")
                    if actual is not None:
                        new = new.replace(shown + "\n", _trim(actual, shown) + "\n", 1)
        if write and new != text:
            path.write_text(new, encoding="utf-8")
    return problems


def _trim(actual: str, shown: str) -> str:
    """The actual line cut like the shown one: a shown `...` ending keeps as many words as the shown prefix."""
    if not shown.endswith("..."):
        return actual
    words = len(shown[:-3].split())
    m = re.match(r"\s*(?:\S+\s+){%d}" % max(0, words - 1) + r"\S+", actual)
    head = m.group(0) if m else actual
    return head + (" ..." if shown.endswith(" ...") else "...")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the doc numbers in place")
    args = ap.parse_args(argv)
    problems = span_problems(compute_values(), args.write) + session_problems(args.write)
    for p in problems:
        print(p)
    if not problems:
        print(f"{len(SPANS)} doc spans and every `$ ` session match the code")
        return 0
    print(f"{len(problems)} doc number(s) {'rewritten' if args.write else 'differ from the code'}"
          + ("" if args.write else "; run python scripts/doc_numbers.py --write"))
    return 0 if args.write else 1


if __name__ == "__main__":
    sys.exit(main())
