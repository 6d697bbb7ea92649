"""Expert parallelism in predict (perfmodel/parallel/experts.py hooked into the one engine path): all-to-all
time, parameters and gradient synchronisation per rank against hand-computed values, the single-device path,
the rules, the CLI and --json."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import perfmodel
from perfmodel.cli import app
from perfmodel.hardware.loader import load_hardware
from perfmodel.hardware.topology import resolve_system
from perfmodel.parallel import collectives as C

SWITCH_PARAMS, SWITCH_EXPERTS = 619_339_008, 452_984_832  # tests/test_zoo.py: HF google/switch-base-8
KW = dict(dtype="bf16", optimizer="adam", layers=False)


def _switch(**kw):
    return perfmodel.predict("switch_base_8", kw.pop("hw", "dgx-h100"), **{**KW, **kw})


def _system(hw, devices):
    return resolve_system(load_hardware(hw), devices=devices)


def test_expert_parallel_1_is_the_path_without_it():
    for hw, n in (("h100-sxm", 1), ("dgx-h100", 8)):
        a, b = _switch(hw=hw, devices=n, batch=2), _switch(hw=hw, devices=n, batch=2, expert_parallel=1)
        assert a.iteration_time_s == b.iteration_time_s and a.breakdown == b.breakdown
        assert a.memory.total_bytes == b.memory.total_bytes


def test_all_to_all_time_of_switch_base_8_on_one_node_by_hand():
    p = _switch(devices=8, batch=4, expert_parallel=8)
    s = _system("dgx-h100", 8)
    bw, lat = s.fabric_bandwidth_Bps, s.fabric_latency_s

    def a2a(tokens):  # one rank's buffer: tokens x top-1 x capacity 1.25 x 768 x 2 bytes, to 7 peers over NVLink
        n = 4 * tokens * 1 * 1.25 * 768 * 2
        return 7 / 8 * n / bw + 7 * lat

    # 6 encoder moe layers (512 tokens) and 6 decoder ones (114), dispatch + combine in forward and in backward
    hand = 6 * 4 * a2a(512) + 6 * 4 * a2a(114)
    assert p.parallel["expert_comm_s"] == pytest.approx(hand, rel=1e-12)
    assert p.parallel["setup"]["expert_parallel"] == 8
    info = p.parallel["experts"]
    assert info["ep_group"] == {"ranks_per_node": 8, "nodes": 1} and info["expert_sync_ratio"] == 0.0
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-12)
    # the all-to-alls are exposed communication, on top of what the same plan without experts split exposes
    q = _switch(devices=8, batch=4)
    assert p.breakdown["communication"] >= hand > 0 and q.parallel["expert_comm_s"] == 0.0


def test_parameters_and_weight_memory_per_rank():
    one, ep8 = _switch(devices=8, batch=2), _switch(devices=8, batch=2, expert_parallel=8)
    per_rank = SWITCH_PARAMS - SWITCH_EXPERTS + SWITCH_EXPERTS // 8  # routers and other layers whole, 1 expert each
    assert ep8.parallel["experts"]["expert_params_per_rank"] == SWITCH_EXPERTS // 8
    # weights, gradients and optimizer state are per parameter: they scale with the rank's parameter count
    for k in ("weights_bytes", "gradients_bytes", "optimizer_bytes"):
        assert getattr(ep8.memory, k) / getattr(one.memory, k) == pytest.approx(per_rank / SWITCH_PARAMS, rel=1e-12)
    assert ep8.memory.activations_bytes == one.memory.activations_bytes


def test_expert_gradients_all_reduce_over_the_replicas_of_each_expert():
    # 16 GPUs on 2 DGX H100 nodes, ep = 8: an expert lives on one GPU of each node, its gradients all-reduce over
    # 2 ranks across the network; the other gradients all-reduce over all 16 (flat ring at the network share)
    p = _switch(hw="dgx-h100-ib-ndr", devices=16, batch=2, expert_parallel=8)
    s = _system("dgx-h100-ib-ndr", 16)
    net, lat = s.network_bandwidth_Bps(2), max(s.network_latency_s, s.fabric_latency_s)
    n = SWITCH_EXPERTS // 8 * 4.0  # the rank's expert gradients, fp32
    edp = C.ring_allreduce(n, 2, net / 8, s.network_latency_s)  # 8 groups per node share the node's NICs
    dp = C.ring_allreduce(n, 16, min(s.fabric_bandwidth_Bps, net), lat)
    info = p.parallel["experts"]
    assert info["expert_data_parallel"] == {"ranks_per_node": 1, "nodes": 2}
    assert info["expert_sync_ratio"] == pytest.approx(edp / dp, rel=1e-9)
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-12)


def test_expert_parallel_with_a_pipeline_and_recomputation_adds_up():
    base = _switch(devices=8, batch=4, expert_parallel=4, plan={"dp": 4, "pp": 2, "microbatches": 2})
    rc = _switch(devices=8, batch=4, expert_parallel=4, plan={"dp": 4, "pp": 2, "microbatches": 2}, recompute="full")
    for p in (base, rc):
        assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-12)
        assert p.parallel["expert_comm_s"] > 0
    assert rc.parallel["expert_comm_s"] > base.parallel["expert_comm_s"]  # recomputed forwards all-to-all again


def test_tensor_parallelism_warns_that_moe_layers_stay_whole():
    p = _switch(devices=8, batch=4, plan={"dp": 4, "tp": 2}, expert_parallel=4)
    assert any("expert tensor parallelism is not modelled" in w for w in p.warnings)
    assert not any("expert tensor" in w for w in _switch(devices=8, batch=4, expert_parallel=8).warnings)


@pytest.mark.parametrize("kw, match", [
    (dict(devices=8, expert_parallel=3), "expert_parallel=3 must divide the data-parallel degree dp=8"),
    (dict(devices=8, expert_parallel=16), "expert_parallel=16 must divide"),
    (dict(devices=8, expert_parallel=2, sharding="hybrid"), "expert_parallel=2 with sharding='hybrid'"),
    (dict(devices=8, expert_parallel=0), "expert_parallel"),
])
def test_bad_expert_parallel_is_a_clear_input_error(kw, match):
    with pytest.raises(perfmodel.InputError, match=match):
        _switch(batch=2, **kw)


def test_cli_predict_mixtral_with_expert_parallel_and_json():
    runner = CliRunner()
    args = ["predict", "mixtral_8x7b", "--hardware", "dgx-h100", "--devices", "8", "--batch", "1", "--dtype", "bf16",
            "--expert-parallel", "8"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.output, r.exception)
    assert "expert comm" in r.output and "not modelled" not in r.output
    r = runner.invoke(app, args + ["--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    d = json.loads(r.output)
    assert d["parallel"]["setup"]["expert_parallel"] == 8
    assert d["parallel"]["expert_comm_s"] > 0 and d["parallel"]["experts"]["ep_group"]["ranks_per_node"] == 8
    assert sum(d["breakdown"].values()) == pytest.approx(d["iteration_time_s"], rel=1e-9)
