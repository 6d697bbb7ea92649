"""Plain torch.nn models of the import test corpus (small sizes; each factory returns (model, example inputs)).

Used by tests/test_import_corpus.py and by the README's import example (`tests.import_corpus:dcgan_generator`).
"""

from __future__ import annotations

import torch
from torch import nn

B = 3  # example batch: no other leading dim equals it


class TransformerLM(nn.Module):
    """Token embedding + nn.TransformerEncoder (batch_first=False, the default) + LM head, with an optional mask."""

    def __init__(self, vocab=50, d=32, heads=4, layers=2, seq_first=True):
        super().__init__()
        self.seq_first = seq_first
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, heads, 64, dropout=0.1, batch_first=not seq_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, ids, mask=None):
        h = self.embed(ids)
        if self.seq_first:
            h = h.transpose(0, 1)
        h = self.encoder(h, mask=mask)
        if self.seq_first:
            h = h.transpose(0, 1)
        return self.head(h)


class Seq2Seq(nn.Module):
    """nn.TransformerDecoder over nn.TransformerEncoder memory (cross-attention), batch_first."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, heads, 64, batch_first=True), 1,
                                             enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(d, heads, 64, batch_first=True), 1)

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        return self.decoder(tgt, self.encoder(src), tgt_mask=mask, tgt_is_causal=True)


class RNNLM(nn.Module):
    """The word-language-model layout: ids [T, B], a sequence-first LSTM or GRU, a decoder."""

    def __init__(self, cell="lstm", vocab=60, d=24, hidden=32, layers=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(d, hidden, layers, dropout=0.2)
        self.drop = nn.Dropout(0.2)
        self.decoder = nn.Linear(hidden, vocab)

    def forward(self, ids):
        out, _ = self.rnn(self.drop(self.embed(ids)))
        return self.decoder(self.drop(out))


class BiLSTMClassifier(nn.Module):
    """Bidirectional 2-layer LSTM (batch_first) over embeddings; classifies from both final states."""

    def __init__(self, vocab=60, d=24, hidden=16, classes=5):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.lstm = nn.LSTM(d, hidden, 2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, ids):
        _, (h, _) = self.lstm(self.embed(ids))
        return self.fc(torch.cat((h[-2], h[-1]), dim=1))


def _dw_block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                         nn.ReLU6(inplace=True), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


class DepthwiseCNN(nn.Module):
    """MobileNet-style depthwise-separable CNN with ReLU6."""

    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                                      _dw_block(16, 32, 1), _dw_block(32, 64, 2), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class UNet(nn.Module):
    """Two-level UNet: conv blocks, max pooling, transposed-conv upsampling and skip concatenations."""

    def __init__(self, c=8, classes=2):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.down1, self.down2, self.mid = block(3, c), block(c, 2 * c), block(2 * c, 4 * c)
        self.pool = nn.MaxPool2d(2)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2), block(4 * c, 2 * c)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2), block(2 * c, c)
        self.out = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        m = self.mid(self.pool(d2))
        u2 = self.dec2(torch.cat([self.up2(m), d2], dim=1))
        u1 = self.dec1(torch.cat([self.up1(u2), d1], dim=1))
        return self.out(u1)


class VAE(nn.Module):
    """MLP VAE: encoder to (mu, logvar), reparameterisation, decoder; returns (recon, mu, logvar)."""

    def __init__(self, d=64, hidden=32, z=8):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
        self.mu, self.logvar = nn.Linear(hidden, z), nn.Linear(hidden, z)
        self.dec = nn.Sequential(nn.Linear(z, hidden), nn.ReLU(), nn.Linear(hidden, d), nn.Sigmoid())

    def forward(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        zs = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.dec(zs), mu, logvar


class DCGANGenerator(nn.Module):
    """DCGAN generator: a latent [nz, 1, 1] up to a 3x32x32 image with transposed convolutions."""

    def __init__(self, nz=16, ngf=8):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator: strided convolutions with LeakyReLU to one logit."""

    def __init__(self, ndf=8):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 8, 1, 0, bias=False))

    def forward(self, x):
        return self.main(x).view(-1, 1)


class MoEFFN(nn.Module):
    """A token-choice mixture-of-experts block (top-2 of 4 experts, the router a Linear) in a residual MLP."""

    def __init__(self, d=32, hidden=48, experts=4, top_k=2):
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
                                     for _ in range(experts))

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weights, idx = torch.topk(torch.softmax(self.gate(x), dim=-1), self.top_k, dim=-1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.where(idx == e)
            if rows.numel():
                out.index_add_(0, rows, expert(x[rows]) * weights[rows, slot, None])
        return out.reshape(shape)


class MoEModel(nn.Module):
    def __init__(self, d=32):
        super().__init__()
        self.norm, self.moe, self.head = nn.LayerNorm(d), MoEFFN(d), nn.Linear(d, 10)

    def forward(self, x):
        return self.head(x + self.moe(self.norm(x)))


def transformer_lm():
    return TransformerLM(), (torch.zeros(B, 20, dtype=torch.long),)


def transformer_lm_batch_first():
    return TransformerLM(seq_first=False), (torch.zeros(B, 20, dtype=torch.long),)


def seq2seq():
    return Seq2Seq(), (torch.randn(B, 12, 32), torch.randn(B, 7, 32))


def lstm_lm():
    return RNNLM("lstm"), (torch.zeros(35, B, dtype=torch.long),)


def gru_lm():
    return RNNLM("gru"), (torch.zeros(35, B, dtype=torch.long),)


def bilstm_classifier():
    return BiLSTMClassifier(), (torch.zeros(B, 20, dtype=torch.long),)


def depthwise_cnn():
    return DepthwiseCNN(), (torch.randn(B, 3, 32, 32),)


def unet():
    return UNet(), (torch.randn(B, 3, 32, 32),)


def vae():
    return VAE(), (torch.randn(B, 64),)


def dcgan_generator():
    """The README's import example: `perfmodel import tests.import_corpus:dcgan_generator --input-shape 16x1x1`."""
    return DCGANGenerator()


def dcgan_discriminator():
    return DCGANDiscriminator(), (torch.randn(B, 3, 32, 32),)


def moe():
    return MoEModel(), (torch.randn(B, 10, 32),)


CORPUS = {
    "transformer_lm": transformer_lm, "transformer_lm_batch_first": transformer_lm_batch_first,
    "seq2seq": seq2seq, "lstm_lm": lstm_lm, "gru_lm": gru_lm, "bilstm_classifier": bilstm_classifier,
    "depthwise_cnn": depthwise_cnn, "unet": unet, "vae": vae,
    "dcgan_generator": lambda: (DCGANGenerator(), (torch.randn(B, 16, 1, 1),)),
    "dcgan_discriminator": dcgan_discriminator, "moe": moe,
}


# --- Hugging Face transformers models from small configs (random weights; need the `hf` extra) -----------


def _ids(n):
    return torch.zeros(B, n, dtype=torch.long)


def _text(**kw):
    return dict(vocab_size=100, max_position_embeddings=64, **kw)


def hf_models() -> dict:
    """name -> factory returning (model, keyword inputs) of each transformers model of the corpus."""
    import transformers as T

    return {
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


def hf_bert():
    """The README's keyword-input example: `--input input_ids=16:int64 --input attention_mask=16:int64`."""
    return hf_models()["bert"]()[0]
