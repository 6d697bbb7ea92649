"""Issue 14: `perfmodel sweep` takes plans and the large-model options of `plan` as axes (same flags, same parsers)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import perfmodel
from perfmodel.cli import app
from perfmodel.cli.plan_cmds import LARGE_OPTIONS

runner = CliRunner()
BASE = ["sweep", "gpt2_small", "-H", "dgx-a100-ib-hdr", "-n", "16", "--dtype", "bf16", "--optimizer", "adam"]


def invoke(*args):
    r = runner.invoke(app, [*BASE, *args])
    return r.exit_code, r.output


def test_sweep_rows_equal_predict_for_each_zero_stage_and_plan():
    plans = "dp=4,tp=1,pp=4,microbatches=8;dp=16"
    rc, out = invoke("--plan", plans, "--zero", "1,3", "--json")
    assert rc == 0, out
    rows = json.loads(out)["rows"]
    assert len(rows) == 4
    assert {(json.dumps(r["plan"], sort_keys=True), r["zero"]) for r in rows} == {
        (json.dumps(p, sort_keys=True), z) for p in ({"dp": 4, "tp": 1, "pp": 4, "microbatches": 8}, {"dp": 16})
        for z in (1, 3)}
    for r in rows:
        assert r["error"] is None, r["error"]
        p = perfmodel.predict("gpt2_small", "dgx-a100-ib-hdr", devices=16, dtype="bf16", optimizer="adam",
                              plan=r["plan"], zero=r["zero"], layers=False)
        assert r["iteration_time_s"] == pytest.approx(p.iteration_time_s, rel=1e-12)
        assert r["memory_total_bytes"] == pytest.approx(p.memory.total_bytes, rel=1e-12)
    # the stages differ (ZeRO-3 shards the parameters too): the axis reaches the model
    by = {(r["plan"].get("pp"), r["zero"]): r["memory_total_bytes"] for r in rows}
    assert by[(None, 3)] < by[(None, 1)]


def test_table_shows_the_plan_and_options_and_refused_rows_give_the_reason():
    rc, out = invoke("--plan", "dp=16;dp=4,tp=4", "--sequence-parallel", "true", "--tp-overlap", "false,true")
    assert rc == 0, out
    lines = out.splitlines()
    for col in ("plan", "sequence_parallel", "tp_overlap"):
        assert col in lines[0].split()
    refused = [l for l in lines if "tp_overlap=True pipelines" in l]  # tp=1 with tp_overlap: refused, with why
    assert len(refused) == 1 and " dp=16 " in refused[0] and refused[0].split()[-1] != "-", refused
    assert sum("dp=4,tp=4" in l for l in lines) == 2
    assert "4 scenarios (3 feasible)" in out


@pytest.mark.parametrize("args, flag", [
    (("--zero", "5"), "--zero"),
    (("--zero", "x"), "--zero"),
    (("--sharding", "full,bogus"), "--sharding"),
    (("--recompute", "some"), "--recompute"),
    (("--sequence-parallel", "maybe"), "--sequence-parallel"),
    (("--tp-overlap", "2"), "--tp-overlap"),
    (("--offload-activations", "yes,perhaps"), "--offload-activations"),
    (("--virtual-stages", "0"), "--virtual-stages"),
    (("--expert-parallel", "a"), "--expert-parallel"),
    (("--context-parallel", "1,,2"), "--context-parallel"),
    (("--plan", "dp16"), "--plan"),
    (("--plan", ";"), "--plan"),
])
def test_bad_values_name_the_flag(args, flag):
    rc, out = invoke(*args)
    assert rc == 2, out
    assert out.startswith(f"error: {flag}:"), out
    assert "Traceback" not in out


def test_plan_and_sweep_share_every_large_option():
    """One definition: every LARGE_OPTIONS flag is an option of both commands, with the same help."""
    import typer.main

    cmds = {c.name: c for c in typer.main.get_command(app).commands.values()}
    for name in ("plan", "sweep"):
        opts = {o: p.help for p in cmds[name].params for o in getattr(p, "opts", [])}
        for field, (flag, _, text) in LARGE_OPTIONS.items():
            assert opts.get(flag) == text, (name, flag)
    # the plan command rejects bad values with the same parser
    r = runner.invoke(app, ["plan", "gpt2_small", "-H", "dgx-a100-ib-hdr", "-n", "16", "--sharding", "bogus"])
    assert r.exit_code == 2 and r.output.startswith("error: --sharding:"), r.output


def test_the_large_models_doc_sweep_says_which_row_does_not_fit():
    """docs/large_models.md section 2: GPT-3 175B, two plans x ZeRO 1,3; only ZeRO-1 without a pipeline fails."""
    res = perfmodel.sweep("gpt3_175b", "dgx-a100-ib-hdr", devices=1024, batch=1536, scaling="strong", dtype="bf16",
                          optimizer="adam", plan=[dict(dp=16, tp=8, pp=8, microbatches=48), dict(dp=128, tp=8)],
                          zero=[1, 3], sequence_parallel=True, recompute="full")
    failing = [(r["plan"], r["zero"]) for r in res.rows if r["error"] is not None]
    assert failing == [({"dp": 128, "tp": 8}, 1)]
    assert res.rows[2]["error"].startswith("does not fit")
