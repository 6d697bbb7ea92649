"""Import of Hugging Face `transformers` models built from small configs (random weights, default options:
use_cache on, training mode as built): every one imports, parameters exact, GEMM/conv/attention FLOPs
equal FlopCounterMode's up to the bias additions it does not count, no standard module opaque.

FlopCounterMode counts 0 for Mixtral's expert GEMMs (transformers runs them as grouped GEMMs); there the
experts' FLOPs are checked against the formula (tokens x top_k x 2 x D x hidden x 3).
Skipped without transformers (the `hf` extra).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")

import import_corpus as C  # noqa: E402
from import_check import check_flops, check_import, flop_counter  # noqa: E402

from perfmodel.ops import op_cost  # noqa: E402
from perfmodel.torch import from_module  # noqa: E402

pytestmark = pytest.mark.torch
B = C.B


MODELS = C.hf_models()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hf_model_imports_exactly(name):
    torch.manual_seed(0)
    model, kwargs = MODELS[name]()
    g, rep = from_module(model, (), kwargs=kwargs, batch=B)
    assert rep.method == "export" and rep.trace_errors[0].startswith("fx:")
    assert rep.unmapped == (), rep.summary_lines()
    if name == "vit":  # the learned [CLS] token concatenated to the patches: a pad with a learned fill
        (pad,) = [l for l in g.layers if l.op == "pad"]
        assert pad.spec.params == 32 and pad.input_shapes == ((16, 32),) and pad.output_shape == (17, 32)
    check_import(g, rep, model)
    counted = flop_counter(model, (), kwargs)
    if name == "mixtral":
        moe = [l for l in g.layers if l.op == "moe"]
        assert [l.name for l in moe] == ["model.layers.0.mlp", "model.layers.1.mlp"]
        assert (moe[0].spec.experts, moe[0].spec.top_k, moe[0].spec.hidden, moe[0].spec.gated) == (4, 2, 48, True)
        routed = B * 16 * 2
        gemms = sum(w.flops for l in moe for w in op_cost(l, B, 4).forward if w.family == "matrix")
        experts = gemms - 2 * (2 * B * 16 * 32 * 4)  # less the routers' GEMMs
        assert experts == 2 * routed * 2 * 32 * 48 * 3
        counted += experts  # FlopCounterMode counts 0 for the grouped expert GEMMs
    check_flops(g, B, counted)


def test_layer_names_follow_the_module_path():
    model, kwargs = MODELS["bert"]()
    g, _ = from_module(model, (), kwargs=kwargs, batch=B)
    assert g["encoder.layer.1.attention.self.query"].op == "dense"
    assert g["encoder.layer.1.intermediate.dense"].spec.units == 64


def test_wav2vec2_in_training_mode_with_layerdrop():
    cfg = T.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                           num_conv_pos_embedding_groups=4, layerdrop=0.5)
    model = T.Wav2Vec2Model(cfg).train()
    g, rep = from_module(model, (torch.randn(B, 400),), batch=B)
    assert any("LayerDrop" in a for a in rep.approximations) and model.config.layerdrop == 0.5
    assert sum(l.op == "attention" or l.name.endswith("q_proj") for l in g.layers) == 2  # both layers kept
    assert rep.unmapped == () and rep.params_graph == rep.params_module
    # the weight-normed positional convolution's g (num_conv_pos_embeddings values), beyond conv1d's kernel
    assert g["encoder.pos_conv_embed.conv.conv1d.own_params"].spec.params == 16
    assert g["index_put_"].spec.params == 32  # SpecAugment's learned mask embedding written under the mask


def test_training_heads_with_labels_tied_weights_and_shifted_ids():
    """Losses from `labels`; an MLM decoder tied to the embeddings with a bias of its own; T5's decoder ids
    made by shifting the labels."""
    ids = torch.zeros(B, 16, dtype=torch.long)
    mlm = T.BertForMaskedLM(T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                         intermediate_size=64))
    g, rep = from_module(mlm, (), kwargs={"input_ids": ids, "labels": ids}, batch=B)
    assert rep.unmapped == () and rep.params_graph == rep.params_module and rep.kinds["softmax_cross_entropy"] == 1
    dec = g["cls.predictions.decoder"]
    assert dec.spec.share_params_with == "bert.embeddings.word_embeddings" and not dec.spec.bias
    assert g["cls.predictions.decoder.own_params"].spec.params == 100  # the decoder's own bias
    t5 = T.T5ForConditionalGeneration(T.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                                 num_heads=4, decoder_start_token_id=0))
    g, rep = from_module(t5, (), kwargs={"input_ids": ids, "labels": torch.zeros(B, 8, dtype=torch.long)}, batch=B)
    assert rep.unmapped == () and rep.params_graph == rep.params_module
    assert g["decoder.embed_tokens"].input_names == ("labels",)
