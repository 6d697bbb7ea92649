"""Op specifications: one frozen pydantic model per op kind, discriminated on `op`.

Shapes are per sample (no batch dimension). Layouts: images [C, H, W], 1-d signals [C, L],
sequences [T, F] (time first), token ids [T]. Every layer has a unique `name`; `inputs` names the
layers it reads (default: the layer written just before it).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

# Sizes, counts and indices are at most this large (int32, as in the frameworks): no overflow downstream.
MAX_DIM = 2**31 - 1
# Costs given by hand (custom layers) are at most this large per sample.
MAX_PER_SAMPLE = 1e30


def _int_only(v):
    """Refuse booleans and strings where a count is expected (pydantic would read True as 1, '3' as 3)."""
    if isinstance(v, (bool, str)):
        raise ValueError(f"expected an integer, got {v!r}")
    return v


Int = Annotated[int, BeforeValidator(_int_only), Field(ge=-MAX_DIM, le=MAX_DIM)]
PosInt = Annotated[int, BeforeValidator(_int_only), Field(gt=0, le=MAX_DIM)]
IntPair = Union[Int, tuple[Int, Int]]
Real = Annotated[float, BeforeValidator(lambda v: _int_only(v) if isinstance(v, (bool, str)) else v),
                 Field(allow_inf_nan=False)]


class OpBase(BaseModel):
    """Fields every layer has."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    inputs: tuple[str, ...] | None = None
    # Name of an earlier layer whose parameters this layer reuses (tied embeddings, GAN discriminator
    # applied twice, RBM's transposed weights). A sharing layer adds no parameters of its own.
    share_params_with: str | None = None

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_input_as_list(cls, v):
        if isinstance(v, str):
            return (v,)
        return v

    @property
    def has_params(self) -> bool:
        return False


def _pos(v, field: str):
    vals = v if isinstance(v, tuple) else (v,)
    for x in vals:
        if x <= 0:
            raise ValueError(f"{field} must be positive, got {v}")
    return v


def _nonneg(v, field: str):
    vals = v if isinstance(v, tuple) else (v,)
    for x in vals:
        if x < 0:
            raise ValueError(f"{field} must be >= 0, got {v}")
    return v


class Input(OpBase):
    op: Literal["input"] = "input"
    shape: tuple[PosInt, ...]
    # "float" inputs take the training dtype; "int64" inputs are token ids or class labels
    dtype: Literal["float", "int64"] = "float"

    @field_validator("shape")
    @classmethod
    def _shape_positive(cls, v):
        return _pos(v, "shape") if v else v


class Dense(OpBase):
    """y = x W^T + b over the last dimension."""

    op: Literal["dense"] = "dense"
    units: PosInt
    bias: bool = True

    @property
    def has_params(self) -> bool:
        return True


class _ConvBase(OpBase):
    out_channels: PosInt
    kernel: IntPair
    stride: IntPair = 1
    padding: IntPair | Literal["same", "valid"] = 0
    dilation: IntPair = 1
    groups: PosInt = 1
    bias: bool = True

    @field_validator("kernel", "stride", "dilation")
    @classmethod
    def _positive(cls, v, info):
        return _pos(v, info.field_name)

    @field_validator("padding")
    @classmethod
    def _padding_nonneg(cls, v):
        if isinstance(v, str):
            return v
        return _nonneg(v, "padding")

    @property
    def has_params(self) -> bool:
        return True


class Conv1d(_ConvBase):
    op: Literal["conv1d"] = "conv1d"


class Conv2d(_ConvBase):
    op: Literal["conv2d"] = "conv2d"


class ConvTranspose2d(_ConvBase):
    op: Literal["conv_transpose2d"] = "conv_transpose2d"
    padding: IntPair = 0
    output_padding: IntPair = 0


class _Pool2d(OpBase):
    kernel: IntPair
    stride: IntPair | None = None  # default: the kernel
    padding: IntPair = 0
    ceil_mode: bool = False

    @field_validator("kernel", "stride")
    @classmethod
    def _positive(cls, v, info):
        return v if v is None else _pos(v, info.field_name)

    @field_validator("padding")
    @classmethod
    def _padding_nonneg(cls, v):
        return _nonneg(v, "padding")


class MaxPool2d(_Pool2d):
    op: Literal["maxpool2d"] = "maxpool2d"


class AvgPool2d(_Pool2d):
    op: Literal["avgpool2d"] = "avgpool2d"


class GlobalAvgPool(OpBase):
    """Average over all spatial dims: [C, ...] -> [C]."""

    op: Literal["global_avgpool"] = "global_avgpool"


class BatchNorm(OpBase):
    """Batch normalisation over channel dim 0 ([C], [C, L] or [C, H, W])."""

    op: Literal["batchnorm"] = "batchnorm"
    eps: Real = Field(default=1e-5, gt=0)
    affine: bool = True

    @property
    def has_params(self) -> bool:
        return self.affine


class LayerNorm(OpBase):
    """Layer normalisation over the last dimension."""

    op: Literal["layernorm"] = "layernorm"
    eps: Real = Field(default=1e-5, gt=0)
    affine: bool = True

    @property
    def has_params(self) -> bool:
        return self.affine


class Relu(OpBase):
    op: Literal["relu"] = "relu"


class LeakyRelu(OpBase):
    op: Literal["leaky_relu"] = "leaky_relu"
    slope: Real = 0.01


class Sigmoid(OpBase):
    op: Literal["sigmoid"] = "sigmoid"


class Tanh(OpBase):
    op: Literal["tanh"] = "tanh"


class Gelu(OpBase):
    op: Literal["gelu"] = "gelu"


class Softmax(OpBase):
    op: Literal["softmax"] = "softmax"
    axis: Int = -1


class Dropout(OpBase):
    op: Literal["dropout"] = "dropout"
    p: Real = Field(default=0.5, ge=0.0, lt=1.0)


class Add(OpBase):
    """Elementwise sum of two or more inputs of the same shape."""

    op: Literal["add"] = "add"


class Mul(OpBase):
    """Elementwise product of two inputs of the same shape."""

    op: Literal["mul"] = "mul"


class Concat(OpBase):
    """Concatenate inputs along `axis` of the per-sample shape (0 = channels)."""

    op: Literal["concat"] = "concat"
    axis: Int = 0


class Flatten(OpBase):
    op: Literal["flatten"] = "flatten"


class Reshape(OpBase):
    """Reshape the per-sample tensor; one entry may be -1."""

    op: Literal["reshape"] = "reshape"
    shape: tuple[Int, ...]


class Select(OpBase):
    """Take index `index` along `axis`, dropping that axis (e.g. BERT's [CLS] token)."""

    op: Literal["select"] = "select"
    axis: Int = 0
    index: Int = 0


class Embedding(OpBase):
    """Lookup table: int ids [T] -> [T, dim]."""

    op: Literal["embedding"] = "embedding"
    vocab: PosInt
    dim: PosInt

    @property
    def has_params(self) -> bool:
        return True


class PositionalEmbedding(OpBase):
    """Learned position table added to a [T, dim] input: y[t] = x[t] + P[t]; P has max_len x dim."""

    op: Literal["positional_embedding"] = "positional_embedding"
    max_len: PosInt

    @property
    def has_params(self) -> bool:
        return True


class _Recurrent(OpBase):
    """Recurrent layer over a [T, F] sequence; output [T, hidden*dirs] or [hidden*dirs] (last step)."""

    hidden: PosInt
    layers: PosInt = 1
    bidirectional: bool = False
    bias: bool = True
    return_sequences: bool = True

    @property
    def has_params(self) -> bool:
        return True

    @property
    def gates(self) -> int:
        return {"rnn": 1, "lstm": 4, "gru": 3}[self.op]  # type: ignore[attr-defined]


class RNN(_Recurrent):
    op: Literal["rnn"] = "rnn"
    nonlinearity: Literal["tanh", "relu"] = "tanh"


class LSTM(_Recurrent):
    op: Literal["lstm"] = "lstm"


class GRU(_Recurrent):
    op: Literal["gru"] = "gru"


class Attention(OpBase):
    """Multi-head self-attention on [T, D]: QKV projection, softmax(QK^T/sqrt(d))V, output projection."""

    op: Literal["attention"] = "attention"
    heads: PosInt
    causal: bool = False
    bias: bool = True
    dropout: Real = Field(default=0.0, ge=0.0, lt=1.0)

    @property
    def has_params(self) -> bool:
        return True


class MatMul(OpBase):
    """Batched matrix product of two inputs: [..., M, K] x [..., K, N] -> [..., M, N]."""

    op: Literal["matmul"] = "matmul"
    transpose_b: bool = False


class Upsample(OpBase):
    """Upsample [C, H, W] (or [C, L]) by an integer factor."""

    op: Literal["upsample"] = "upsample"
    scale: PosInt = 2
    mode: Literal["nearest", "bilinear"] = "nearest"


class SoftmaxCrossEntropy(OpBase):
    """Loss: softmax over the last dim of logits against integer labels; output is a scalar per sample."""

    op: Literal["softmax_cross_entropy"] = "softmax_cross_entropy"


class MSELoss(OpBase):
    """Loss: mean squared error against a target of the input's shape; scalar per sample."""

    op: Literal["mse"] = "mse"


class BCELoss(OpBase):
    """Loss: binary cross-entropy with logits against a target of the input's shape; scalar per sample."""

    op: Literal["bce"] = "bce"


class MoE(OpBase):
    """Mixture of experts on [T, D] (or [D]): a router (dense D -> experts, softmax, top-k) sends each token
    to `top_k` of `experts` feed-forward experts (D -> hidden -> D; `gated`: SwiGLU-style, three matrices).
    Costed with the expected tokens per expert (tokens * top_k / experts), see perfmodel/ops/moe.py.
    `capacity_factor` (GShard/Switch): every expert computes a buffer of capacity_factor x the expected tokens
    (padded; tokens beyond it are dropped); None: dropless, exactly the expected tokens (Mixtral, MegaBlocks)."""

    op: Literal["moe"] = "moe"
    experts: int = Field(gt=0)
    top_k: int = Field(gt=0)
    hidden: int = Field(gt=0)
    gated: bool = False
    bias: bool = False  # biases of the experts' linear maps
    router_bias: bool = False
    capacity_factor: Real | None = Field(default=None, gt=0.0, le=64.0)

    @field_validator("top_k")
    @classmethod
    def _k_le_experts(cls, v, info):
        e = info.data.get("experts")
        if e is not None and v > e:
            raise ValueError(f"top_k ({v}) must not exceed experts ({e})")
        return v

    @property
    def has_params(self) -> bool:
        return True


class Elementwise(OpBase):
    """A pointwise op no other kind names (x * c, x + c, pow, rsqrt, exp, neg, clamp, silu, ...): its inputs
    broadcast to the output; `flops_per_element` FLOPs per output element (see perfmodel/ops/layout.py)."""

    op: Literal["elementwise"] = "elementwise"
    fn: str = "elementwise"
    flops_per_element: float = Field(default=1.0, ge=0.0)
    params: int = Field(default=0, ge=0)  # a learned tensor broadcast in (a scale such as RMSNorm's weight)

    @property
    def has_params(self) -> bool:
        return self.params > 0


class Pad(OpBase):
    """Constant padding of the input to `output_shape` (same rank, no dim smaller): one copy. `params`: a
    learned fill (a [CLS] token concatenated to the sequence)."""

    op: Literal["pad"] = "pad"
    output_shape: tuple[int, ...] = Field(min_length=1)
    params: int = Field(default=0, ge=0)

    @property
    def has_params(self) -> bool:
        return self.params > 0


class Slice(OpBase):
    """A slice (a view) of the input: `output_shape` has at most the input's elements."""

    op: Literal["slice"] = "slice"
    output_shape: tuple[int, ...] = Field(min_length=1)


class Custom(OpBase):
    """An op with no kind of its own (e.g. a PyTorch op the importer cannot map): its costs are given.

    `forward_flops_per_sample` is measured (torch.utils.flop_counter on that op alone, per sample);
    `bytes_per_sample` is the forward traffic per sample at 4-byte elements (None: read the inputs and
    write the output); `params` are the trainable parameters it owns. See perfmodel/ops/custom.py for how
    the backward is estimated.
    """

    op: Literal["custom"] = "custom"
    output_shape: tuple[PosInt, ...] = Field(min_length=1)
    forward_flops_per_sample: Real = Field(default=0.0, ge=0.0, le=MAX_PER_SAMPLE)
    bytes_per_sample: Real | None = Field(default=None, ge=0.0, le=MAX_PER_SAMPLE)
    params: Annotated[int, BeforeValidator(_int_only), Field(ge=0, le=MAX_DIM * 1024)] = 0
    family: Literal["matrix", "conv", "memory"] | None = None  # None: matrix if it has FLOPs, else memory
    note: str = ""

    @field_validator("output_shape")
    @classmethod
    def _shape_positive(cls, v):
        return _pos(v, "output_shape") if v else v

    @property
    def has_params(self) -> bool:
        return self.params > 0


OpSpec = Annotated[
    Union[
        Input, Dense, Conv1d, Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, GlobalAvgPool, BatchNorm,
        LayerNorm, Relu, LeakyRelu, Sigmoid, Tanh, Gelu, Softmax, Dropout, Add, Mul, Concat, Flatten,
        Reshape, Select, Embedding, PositionalEmbedding, RNN, LSTM, GRU, Attention, MatMul, Upsample,
        SoftmaxCrossEntropy, MSELoss, BCELoss, Custom, MoE, Elementwise, Pad, Slice,
    ],
    Field(discriminator="op"),
]

OP_CLASSES: dict[str, type[OpBase]] = {
    cls.model_fields["op"].default: cls for cls in get_args(get_args(OpSpec)[0])
}
OP_KINDS: tuple[str, ...] = tuple(sorted(OP_CLASSES))
LOSS_OPS = frozenset({"softmax_cross_entropy", "mse", "bce"})


def pair(v: IntPair) -> tuple[int, int]:
    """Normalise an int-or-pair field to a pair."""
    if isinstance(v, tuple):
        return v
    return (v, v)
