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

from import_check import check_flops, check_import, flop_counter  # noqa: E402

from perfmodel.ops import op_cost  # noqa: E402
from perfmodel.torch import from_module  # noqa: E402

pytestmark = pytest.mark.torch
B = 3


def _ids(n):
    return torch.zeros(B, n, dtype=torch.long)


def _text(**kw):
    return dict(vocab_size=100, max_position_embeddings=64, **kw)


MODELS = {
    "bert": lambda: (T.BertModel(T.BertConfig(**_text(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                        intermediate_size=64))), {"input_ids": _ids(16)}),
    "gpt2": lambda: (T.GPT2LMHeadModel(T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
                     {"input_ids": _ids(16)}),
    "vit": lambda: (T.ViTModel(T.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=64)),
                    {"pixel_values": torch.randn(B, 3, 32, 32)}),
    "resnet": lambda: (T.ResNetModel(T.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1])),
                       {"pixel_values": torch.randn(B, 3, 32, 32)}),
    "convnext": lambda: (T.ConvNextModel(T.ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2)),
                         {"pixel_values": torch.randn(B, 3, 32, 32)}),
    "t5": lambda: (T.T5Model(T.T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)),
                   {"input_ids": _ids(16), "decoder_input_ids": _ids(8)}),
    "llama": lambda: (T.LlamaForCausalLM(T.LlamaConfig(**_text(hidden_size=32, intermediate_size=64,
                                                               num_hidden_layers=2, num_attention_heads=4,
                                                               num_key_value_heads=2, bos_token_id=1,
                                                               eos_token_id=2))), {"input_ids": _ids(16)}),
    "whisper": lambda: (T.WhisperModel(T.WhisperConfig(
        vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=8, max_source_positions=16,
        max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)),
        {"input_features": torch.randn(B, 8, 32), "decoder_input_ids": _ids(4)}),
    "mixtral": lambda: (T.MixtralForCausalLM(T.MixtralConfig(**_text(
        hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        num_local_experts=4, num_experts_per_tok=2, bos_token_id=1, eos_token_id=2))), {"input_ids": _ids(16)}),
}
@pytest.mark.parametrize("name", sorted(MODELS))
def test_hf_model_imports_exactly(name):
    torch.manual_seed(0)
    model, kwargs = MODELS[name]()
    g, rep = from_module(model, (), kwargs=kwargs, batch=B)
    assert rep.method == "export" and rep.trace_errors[0].startswith("fx:")
    # ViT: the cat of the learned [CLS] token with the patches stays custom (it carries the token's parameters)
    assert len(rep.unmapped) == (1 if name == "vit" else 0), rep.summary_lines()
    check_import(g, rep, model)
    counted = flop_counter(model, (), kwargs)
    if name == "mixtral":
        moe = [l for l in g.layers if l.op == "moe"]
        assert len(moe) == 2
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
    assert rep.opaque_standard == ()
    # the weight-normed positional convolution's g vector (num_conv_pos_embeddings values) has no place in
    # conv1d's parameter formula: the one documented difference
    assert rep.params_module - rep.params_graph == 16
