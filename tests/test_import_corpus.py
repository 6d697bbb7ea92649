"""Import of plain torch.nn models (tests/import_corpus.py): every model imports as built, parameters are
exact, GEMM/conv/attention FLOPs equal FlopCounterMode's, no standard module stays opaque.

Where FlopCounterMode does not count: aten.lstm counts 0 (aten.gru is counted: it decomposes into GEMMs on
CPU), so LSTM layers are checked by hand.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import import_corpus as C  # noqa: E402
from import_check import check_flops, check_import, flop_counter  # noqa: E402

from perfmodel.ops import op_cost  # noqa: E402
from perfmodel.torch import from_module  # noqa: E402

pytestmark = pytest.mark.torch

EXPECT = {  # name: (tracer, kinds that must be present)
    "transformer_lm": ("fx", {"attention", "embedding", "dense", "layernorm", "dropout"}),
    "transformer_lm_batch_first": ("fx", {"attention"}),
    "seq2seq": ("fx", {"attention", "matmul", "softmax"}),
    "lstm_lm": ("fx", {"lstm"}),
    "gru_lm": ("fx", {"gru"}),
    "bilstm_classifier": ("fx", {"lstm", "slice", "concat"}),
    "depthwise_cnn": ("fx", {"conv2d", "elementwise", "global_avgpool"}),
    "unet": ("fx", {"conv_transpose2d", "concat", "maxpool2d"}),
    "vae": ("fx", {"dense", "elementwise", "add", "mul"}),
    "dcgan_generator": ("fx", {"conv_transpose2d", "batchnorm", "tanh"}),
    "dcgan_discriminator": ("fx", {"conv2d", "leaky_relu"}),
    "moe": ("fx", {"moe"}),
}


@pytest.mark.parametrize("name", sorted(C.CORPUS))
def test_corpus_model_imports_exactly(name):
    torch.manual_seed(0)
    model, args = C.CORPUS[name]()
    g, rep = from_module(model, args, batch=C.B)
    method, kinds = EXPECT[name]
    assert rep.method == method
    assert kinds <= set(rep.kinds), rep.kinds
    assert rep.unmapped == (), rep.summary_lines()
    check_import(g, rep, model)
    # FlopCounterMode counts aten.gru (it decomposes into GEMMs on CPU) but 0 for aten.lstm: LSTMs are checked
    # by hand below, the rest of their model against it
    check_flops(g, C.B, flop_counter(model, args, {}), skip=("lstm",))


def _lstm_flops(g, batch):
    return sum(w.flops for l in g.layers if l.op == "lstm" for w in op_cost(l, batch, 4).forward
               if w.family == "matrix")


def test_lstm_flops_by_hand():
    # 4 gates x 2 x (input + hidden) x hidden per step, per layer and direction
    g, _ = from_module(*C.lstm_lm(), batch=C.B)
    assert _lstm_flops(g, C.B) == 35 * C.B * (2 * 4 * 32 * (24 + 32) + 2 * 4 * 32 * (32 + 32)) == 3_225_600
    g, _ = from_module(*C.bilstm_classifier(), batch=C.B)
    assert _lstm_flops(g, C.B) == 20 * C.B * 2 * (2 * 4 * 16 * (24 + 16) + 2 * 4 * 16 * (32 + 16)) == 1_351_680


def test_sequence_first_lstm_is_one_layer_with_the_right_shape():
    model, args = C.lstm_lm()
    g, rep = from_module(model, args, batch=C.B)
    (lstm,) = [l for l in g.layers if l.op == "lstm"]
    assert lstm.name == "rnn" and lstm.input_shapes == ((35, 24),) and lstm.output_shape == (35, 32)
    assert (lstm.spec.layers, lstm.spec.hidden) == (2, 32)
    assert g["decoder"].output_shape == (35, 60)


def test_transformer_encoder_layers_are_named_by_module_path():
    model, args = C.transformer_lm()
    g, rep = from_module(model, args, batch=C.B)
    att = [l for l in g.layers if l.op == "attention"]
    assert [l.name for l in att] == ["encoder.layers.0.self_attn", "encoder.layers.1.self_attn"]
    assert "encoder.layers.1.linear2" in g and g["encoder.layers.1.linear2"].op == "dense"
    assert all(l.input_shapes == ((20, 32),) for l in att)


def test_moe_block_is_one_moe_layer_with_router_and_experts():
    model, args = C.moe()
    g, rep = from_module(model, args, batch=C.B)
    moe = g["moe"]
    assert (moe.op, moe.spec.experts, moe.spec.top_k, moe.spec.hidden, moe.spec.gated) == ("moe", 4, 2, 48, False)
    assert moe.spec.bias and not moe.spec.router_bias


def test_cross_attention_decomposes_with_per_head_scores():
    model, args = C.seq2seq()
    g, _ = from_module(model, args, batch=C.B)
    scores = g["decoder.layers.0.multihead_attn.scores"]
    assert scores.output_shape == (4, 7, 12)  # heads x target x source
    assert g["decoder.layers.0.self_attn"].spec.causal
