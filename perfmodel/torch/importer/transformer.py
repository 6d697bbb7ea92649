"""Plain forwards of nn.TransformerEncoder/Decoder and their layers, for fx.

Their own forwards check masks and tensor properties to choose the fused inference path (nested
tensors, `_canonical_mask`, `_detect_is_causal_mask`): fx cannot trace that control flow. These
functions compute the same training-mode result with the same submodules, so fx traces through them
and every attention, linear map, norm and dropout maps to its kind.
"""

from __future__ import annotations

from torch import nn


def _enc_stack(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
    out = src
    for mod in self.layers:
        out = mod(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
    return self.norm(out) if self.norm is not None else out


def _enc_layer(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
    x = src
    if self.norm_first:
        x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
        return x + self._ff_block(self.norm2(x))
    x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
    return self.norm2(x + self._ff_block(x))


def _dec_stack(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
               memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
    out = tgt
    for mod in self.layers:
        out = mod(out, memory, tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                  memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=bool(tgt_is_causal),
                  memory_is_causal=memory_is_causal)
    return self.norm(out) if self.norm is not None else out


def _dec_layer(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
               memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
    x = tgt
    if self.norm_first:
        x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
        x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
        return x + self._ff_block(self.norm3(x))
    x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
    x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
    return self.norm3(x + self._ff_block(x))


PLAIN_FORWARDS = {nn.TransformerEncoder: _enc_stack, nn.TransformerEncoderLayer: _enc_layer,
                  nn.TransformerDecoder: _dec_stack, nn.TransformerDecoderLayer: _dec_layer}
