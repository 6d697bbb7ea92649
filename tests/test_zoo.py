"""The built-in network zoo (networks/*.yaml): every file loads, shapes and parameter counts match
the reference implementations (torchvision, Hugging Face, the papers' scripts), and files survive a
save/load round trip."""

from __future__ import annotations

import math

import pytest

from perfmodel.graph import builtin_networks, load_network, save_network
from perfmodel.graph.spec import LOSS_OPS
from perfmodel.ops import op_cost

ZOO = sorted(builtin_networks())

EXPECTED = {
    "fcn5", "fcn8", "autoencoder", "rbm", "vae", "dcgan", "deconvnet", "alexnet", "alexnet_dlbench", "vgg16",
    "resnet50", "googlenet", "lstm32", "lstm64", "bert_base", "gpt2_small", "gpt3_175b", "mobilenet_v2",
    "mixtral_8x7b", "switch_base_8",
}


def params(g, *, prefix: str = "") -> int:
    """Trainable parameters of a graph (layers sharing another's parameters count none)."""
    return sum(op_cost(l, 1, 4).params for l in g.layers if l.name.startswith(prefix))


def forward_macs(g, kinds=("conv2d", "conv_transpose2d", "dense")) -> float:
    """Forward multiply-adds per sample of the matrix-like layers (FLOPs / 2 at batch 1)."""
    return sum(op_cost(l, 1, 4).flops("forward") for l in g.layers if l.op in kinds) / 2


def dense_params(sizes: list[int]) -> int:
    """Hand arithmetic: parameters of a chain of dense layers with biases."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


# ---------------------------------------------------------------- every file


def test_zoo_has_the_expected_networks():
    assert EXPECTED <= set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_loads_by_builtin_name_with_loss_and_provenance(name):
    g = load_network(name)
    assert g.origin == name
    assert g.description.strip() and g.source.strip(), "every zoo file names what it follows"
    assert g.has_loss, "a training step needs a loss"
    # every graph output that is not a loss is a deliberate side output (RBM's negative phase)
    for out in g.outputs:
        assert out.op in LOSS_OPS or (name == "rbm" and out.name == "h1"), out.name
    assert all(len(l.output_shape) > 0 for l in g.layers)


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("flat", [False, True])
def test_save_and_load_back_gives_an_equal_graph(name, suffix, flat, tmp_path):
    g = load_network(name)
    p = save_network(g, tmp_path / f"{name}{suffix}", flat=flat)
    g2 = load_network(p)
    assert g2 == g
    assert g2.description == g.description and g2.source == g.source


# ---------------------------------------------------------------- parameter counts


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet50", 25_557_032),  # torchvision resnet50
        ("mobilenet_v2", 3_504_872),  # torchvision mobilenet_v2
        ("vgg16", 138_357_544),  # torchvision vgg16
        ("alexnet", 61_100_840),  # torchvision alexnet
        ("googlenet", 6_624_904),  # torchvision googlenet(aux_logits=False)
        ("gpt2_small", 124_439_808),  # HF GPT2LMHeadModel, tied head
        ("vae", 652_824),  # pytorch/examples vae
        ("dcgan", 3_576_704 + 2_765_568),  # pytorch/examples dcgan: netG + netD
        ("gpt3_175b", 174_604_259_328),  # 12*L*d^2 + 13*L*d + (V + n_ctx)*d + 2*d
        ("mixtral_8x7b", 46_702_792_704),  # HF MixtralForCausalLM (Mixtral-8x7B-v0.1 config); paper: 46.7B
        ("switch_base_8", 619_339_008),  # HF SwitchTransformersForConditionalGeneration (google/switch-base-8)
    ],
)
def test_known_parameter_counts(name, expected):
    assert params(load_network(name)) == expected


def test_fcn_counts_equal_hand_arithmetic():
    assert params(load_network("fcn5")) == dense_params([26752, 2048, 2048, 2048, 26752]) == 117_997_696
    assert params(load_network("fcn8")) == dense_params([26752] + [2048] * 6 + [26752]) == 130_586_752


def test_autoencoder_and_rbm_counts():
    assert params(load_network("autoencoder")) == dense_params([784, 1000, 500, 250, 30, 250, 500, 1000, 784])
    g = load_network("rbm")
    # the two sharing denses (transposed weights) add nothing; the visible bias is not modelled
    assert params(g) == 784 * 500 + 500
    assert g["v1_pre"].spec.share_params_with == "h0_pre" and g["h1_pre"].spec.share_params_with == "h0_pre"


def test_alexnet_dlbench_count():
    convs = [(3, 96, 11), (96, 256, 5), (256, 384, 3), (384, 384, 3), (384, 256, 3)]
    expected = sum(i * o * k * k + o for i, o, k in convs) + dense_params([256 * 6 * 6, 4096, 4096, 1000])
    assert params(load_network("alexnet_dlbench")) == expected == 62_378_344


def test_bert_base_encoder_and_pooler_count():
    g = load_network("bert_base")
    head = params(g, prefix="classifier")
    assert head == 768 * 2 + 2
    # BertModel (embeddings + 12 layers + pooler) holds exactly 109,482,240
    assert params(g) - head == 109_482_240
    assert g["cls_token"].output_shape == (768,)
    assert g["input_ids"].output_shape == (128,)


def test_dcgan_generator_and_discriminator_counts_and_sharing():
    g = load_network("dcgan")
    assert params(g, prefix="G") == 3_576_704
    assert params(g, prefix="D_fake.") == 2_765_568
    assert params(g, prefix="D_real.") == 0
    shared = [l for l in g.layers if l.name.startswith("D_real.") and l.spec.has_params]
    assert len(shared) == 8
    assert all(l.spec.share_params_with == "D_fake." + l.name.split(".", 1)[1] for l in shared)
    assert g["fake"].output_shape == (3, 64, 64)
    assert g["D_fake.logit"].output_shape == g["D_real.logit"].output_shape == (1,)


def test_gpt_heads_are_tied_to_the_token_embedding():
    for name, width in (("gpt2_small", 768), ("gpt3_175b", 12288)):
        g = load_network(name)
        assert g["lm_head"].spec.share_params_with == "wte"
        assert op_cost(g["lm_head"], 1, 4).params == 0
        assert op_cost(g["wte"], 1, 4).params == 50257 * width


def test_lstm_counts_and_shapes():
    for steps in (32, 64):
        g = load_network(f"lstm{steps}")
        assert g["embedding"].output_shape == (steps, 256)
        assert g["lstm"].output_shape == (steps, 256)
        assert g["softmax_w"].output_shape == (steps, 10000)
        # embedding + 2-layer LSTM (PyTorch: two biases per gate) + output projection
        lstm = sum(4 * (i * 256 + 256 * 256 + 2 * 256) for i in (256, 256))
        assert params(g) == 10000 * 256 + lstm + 256 * 10000 + 10000 == 6_182_672


# ---------------------------------------------------------------- work and structure


def test_resnet50_forward_multiply_adds_about_4_1e9():
    macs = forward_macs(load_network("resnet50"))
    assert 4.0e9 <= macs <= 4.2e9


def test_mobilenet_v2_multiply_adds_and_depthwise_convolutions():
    g = load_network("mobilenet_v2")
    assert 2.95e8 <= forward_macs(g) <= 3.05e8  # torchvision: 0.30 G multiply-adds
    dw = [l for l in g.layers if l.op == "conv2d" and l.spec.groups > 1]
    assert len(dw) == 17 and all(l.spec.groups == l.input_shapes[0][0] == l.output_shape[0] for l in dw)
    keys = {w.efficiency_key for l in dw for w in op_cost(l, 1, 4).forward if w.family == "conv"}
    assert keys == {"conv/depthwise", "conv/depthwise/strided"}
    assert sum(1 for l in g.layers if l.op == "add") == 10  # identity shortcuts: 1 + 2 + 3 + 2 + 2


def test_vgg16_forward_multiply_adds_about_15_5e9():
    assert 15.3e9 <= forward_macs(load_network("vgg16")) <= 15.6e9


def test_sequence_lengths_and_output_shapes():
    assert load_network("gpt2_small")["lm_head"].output_shape == (1024, 50257)
    assert load_network("gpt3_175b")["lm_head"].output_shape == (2048, 50257)
    assert load_network("resnet50")["avgpool"].output_shape == (2048,)
    assert load_network("googlenet")["inception5b.concat"].output_shape == (1024, 7, 7)
    assert load_network("deconvnet")["classifier"].output_shape == (21, 224, 224)


def test_inception_branches_read_the_module_input():
    g = load_network("googlenet")
    src = "inception4a"
    for branch in ("branch1.conv", "branch2_reduce.conv", "branch3_reduce.conv", "branch4_pool"):
        assert g[f"{src}.{branch}"].input_names == ("maxpool3",)
    assert g[f"{src}.concat"].output_shape == (512, 14, 14)


def test_resnet50_shortcuts():
    g = load_network("resnet50")
    assert g["layer2.b0.downsample.conv"].input_names == ("layer1.b.1.relu",)
    assert g["layer2.b0.add"].input_names == ("layer2.b0.body.c3.bn", "layer2.b0.downsample.bn")
    assert g["layer3.b.0.add"].input_names == ("layer3.b.0.body.c3.bn", "layer3.b0.relu")
    assert sum(1 for l in g.layers if l.op == "add") == 16


@pytest.mark.parametrize(
    "name, block, uses",
    [
        ("resnet50", "bottleneck_body", 16), ("vgg16", "conv_relu", 13), ("googlenet", "inception", 9),
        ("bert_base", "encoder_layer", 12), ("gpt2_small", "decoder_layer", 12), ("gpt3_175b", "decoder_layer", 96),
    ],
)
def test_repeated_structures_are_written_once_as_blocks(name, block, uses):
    g = load_network(name)
    assert block in g.file.blocks
    # the file is short; the expansion is not
    assert len(g.file.layers) < 25 < len(g)
    per_use = {"bottleneck_body": "c1.conv", "conv_relu": "conv", "inception": "concat",
               "encoder_layer": "attention", "decoder_layer": "attn"}[block]
    assert sum(1 for l in g.layers if l.name.endswith("." + per_use)) == uses


def test_transformer_settings():
    bert = load_network("bert_base")
    att = bert["layer.11.attention"].spec
    assert (att.heads, att.causal) == (12, False)
    assert math.isclose(bert["layer.0.output_norm"].spec.eps, 1e-12)
    assert bert["layer.0.intermediate"].output_shape == (128, 3072)
    gpt = load_network("gpt3_175b")
    att = gpt["h.95.attn"].spec
    assert (att.heads, att.causal) == (96, True)
    assert gpt["h.0.mlp_fc"].output_shape == (2048, 49152)


def _active(g) -> int:
    """Parameters a token uses: every layer's, a moe layer's router and top_k / experts of its experts."""
    total = 0
    for l in g.layers:
        p = op_cost(l, 1, 4).params
        if l.op == "moe":
            d, s = l.input_shapes[0][-1], l.spec
            router = d * s.experts
            p = router + (p - router) * s.top_k // s.experts
        total += p
    return total


def test_mixtral_8x7b_by_hand_total_and_active_parameters():
    g = load_network("mixtral_8x7b")
    d, kv, ffn, vocab, layers = 4096, 1024, 14336, 32000, 32
    attention = 2 * d * d + 2 * d * kv  # q, o; k, v of 8 heads x 128 (grouped-query)
    expert = 3 * d * ffn  # SwiGLU: gate, up, down
    per_layer = attention + 2 * d + d * 8 + 8 * expert  # + 2 RMSNorm scales + router
    total = layers * per_layer + 2 * vocab * d + d  # + embedding, untied head, final norm
    assert params(g) == total == 46_702_792_704  # the paper's 46.7B
    assert _active(g) == total - layers * 6 * expert == 12_879_925_248  # the paper's 12.9B active
    moe = g["layers.31.block_sparse_moe"].spec
    assert (moe.experts, moe.top_k, moe.hidden, moe.gated, moe.capacity_factor) == (8, 2, 14336, True, None)
    assert g["layers.0.scores"].output_shape == (32, 4096, 4096)
    assert g["lm_head"].output_shape == (4096, 32000)


def test_switch_base_8_is_t5_base_with_experts_every_other_layer():
    g = load_network("switch_base_8")
    moes = [l for l in g.layers if l.op == "moe"]
    assert len(moes) == 12  # 6 in the encoder, 6 in the decoder
    assert {(l.spec.experts, l.spec.top_k, l.spec.hidden, l.spec.capacity_factor) for l in moes} == {(8, 1, 3072, 1.25)}
    expert = 2 * 768 * 3072
    assert params(g) == 619_339_008
    # one expert per token: the active parameters are T5-base's 222,903,552 plus the 12 routers (768 x 8)
    assert _active(g) == params(g) - 12 * 7 * expert == 222_903_552 + 12 * 768 * 8
    assert g["decoder.5.sparse_cross.scores"].output_shape == (12, 114, 512)
    assert g["decoder.0.dense_cross.k"].input_names == ("encoder_final_norm",)
    assert g["lm_head"].spec.share_params_with == "shared"
