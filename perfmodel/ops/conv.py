"""Cost rules of convolutions: conv1d, conv2d and conv_transpose2d.

A direct-convolution count: every output position of every output channel does in/groups * prod(kernel)
multiply-adds (padded zeros included, as cuDNN's implicit GEMM does). Each GEMM-like pass is one
cuDNN kernel; the bias is a separate broadcast-add kernel in forward (PyTorch's `_convolution` adds it
after the cuDNN call) and a separate reduction in backward. Autograd saves the input (for the weight
gradient); the weight is a parameter, not an activation.

Kernel class (efficiency key): "conv", then "/depthwise" (groups == in channels > 1), "/grouped" (other
groups > 1; "/grouped/gemm" for a pass oneDNN runs as im2col + GEMM, see grouped_path) or "/transposed", then
"/strided" (stride > 1), then "/1x1" (a 1-wide kernel), then "/narrow" (an ungrouped conv with at most
NARROW_CHANNELS input or output channels): e.g. conv/1x1, conv/strided/1x1, conv/depthwise/strided,
conv/1x1/narrow, conv/grouped/gemm. The work carries a ConvShape.

Grouped convolutions (oneDNN as PyTorch 2.x calls it on AVX-512, checked with ONEDNN_VERBOSE): with channels per
group (in and out) multiples of 16, 8 or 4 the jit kernels block channels by that many, so a 16-lane fp32 vector
holds 16/8/4 useful lanes (backward-weights of 8-blocks runs the 8-lane AVX2 kernel: the same share of a 16-lane
core); with 4-blocks the backward-weights pass, and with other channel counts every pass, runs gemm:jit (per
image and group an im2col column of cpg_in*k*k x positions, multiplied with M = cpg_out rows: the column traffic,
not the cpg_out-wide GEMM, sets the time). Work.executed carries 16 / useful lanes (16 / min(16, cpg_out) for
the GEMM path): measured at 64 channels 32x32 (1 thread), the forward takes the same time at 16, 8 and 4 channels
per group, and the GEMM path's time follows the column size.

Buffers (Work.allocs, what a CPU library allocates per pass): oneDNN computes on a channel-blocked layout, so
an NCHW convolution reorders its activation inputs into fresh blocked copies and writes its result blocked,
then reorders it to NCHW: forward x-copy, y-blocked, y; backward-data dy-copy, dx-blocked, dx; backward-weight
x-copy, dy-copy, dW (page faults counted per pass of a training step at 48-200 MB tensors match this). The blocked
copies and results of an ungrouped or depthwise conv hold whole zero-padded 16-channel blocks (blocked_pad; an input
of fewer than 16 channels is read as NCHW): at 24 -> 8 channels the input copy is 4/3 and the result 2x the NCHW
tensor, which can take it past the 32 MiB at which glibc maps buffers afresh.
"""

from __future__ import annotations

from ..graph.layer_graph import Layer
from .base import ConvShape, OpCost, Work, cost_rule, numel


def _per_dim(layer: Layer, v) -> tuple[int, ...]:
    """An int-or-pair field per spatial dim (a pair given to conv1d uses its first entry, as shapes.py does)."""
    spatial = len(layer.input_shapes[0]) - 1
    return tuple((v if isinstance(v, tuple) else (v,) * spatial)[:spatial])


def _kernel_numel(layer: Layer) -> int:
    """Kernel taps: kh*kw for 2-d, k for 1-d."""
    return numel(_per_dim(layer, layer.spec.kernel))


def conv_shape(layer: Layer, batch: int) -> ConvShape:
    """The ConvShape of a conv/conv_transpose layer at `batch`."""
    s, x, y = layer.spec, layer.input_shapes[0], layer.output_shape
    kernel, dilation = _per_dim(layer, s.kernel), _per_dim(layer, getattr(s, "dilation", 1))
    if s.padding == "valid":
        pad = (0,) * len(kernel)
    elif s.padding == "same":
        pad = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    else:
        pad = _per_dim(layer, s.padding)
    return ConvShape(batch, x[0], y[0], tuple(x[1:]), tuple(y[1:]), kernel, _per_dim(layer, s.stride), s.groups,
                     layer.op == "conv_transpose2d", pad, dilation)


# oneDNN's fp32 AVX-512 kernels block channels by 16: with one or two blocks of input or output channels the
# register tile is underfilled and the layout reorders weigh as much as the arithmetic (its own kernel class)
NARROW_CHANNELS = 32
CHANNEL_BLOCK = 16  # fp32 lanes of an AVX-512 vector: oneDNN's widest channel block
GROUP_BLOCKS = (16, 8, 4)  # channel blocks of oneDNN's jit grouped kernels, widest first


def grouped_path(s: ConvShape, stage: str = "forward") -> tuple[bool, float]:
    """(runs as im2col + GEMM, executed work per model FLOP) of one pass ("forward", "backward_data",
    "backward_weight") of a grouped, not depthwise, convolution, as oneDNN picks it (module docstring); other
    convolutions: (False, 1.0)."""
    if s.groups <= 1 or s.groups == s.c_in or s.transposed:
        return False, 1.0
    cin, cout = s.c_in // s.groups, s.c_out // s.groups
    block = next((b for b in GROUP_BLOCKS if cin % b == 0 and cout % b == 0), 0)
    if block == 4 and stage == "backward_weight":
        block = 0
    if block:
        return False, CHANNEL_BLOCK / block
    return True, CHANNEL_BLOCK / min(CHANNEL_BLOCK, cout)


def blocked_pad(channels: int, groups: int, is_input: bool) -> float:
    """Bytes of oneDNN's channel-blocked copy of an NCHW tensor per byte of it: an ungrouped or depthwise conv holds
    channels in 16-channel blocks zero-padded to whole blocks (ONEDNN_VERBOSE, torch 2.13, AVX-512: 'p' layouts
    aBcd16b, e.g. 24 channels held as 32, 8 as 16); grouped convs block within a group (1.0). An input with fewer than
    CHANNEL_BLOCK channels is read as NCHW by the direct kernel (no padded copy seen): 1.0."""
    if (groups > 1 and groups != channels) or (is_input and channels < CHANNEL_BLOCK):
        return 1.0
    return -(-channels // CHANNEL_BLOCK) * CHANNEL_BLOCK / channels


def conv_buffers(n_in_bytes: float, n_out_bytes: float, weight_bytes: float, pad_in: float = 1.0,
                 pad_out: float = 1.0) -> dict[str, tuple[float, ...]]:
    """Per pass ("fwd", "bwd_data", "bwd_weight"): the buffers one convolution allocates (see the module docstring);
    the blocked copies and results are `pad_in` / `pad_out` (blocked_pad) times their NCHW tensors."""
    xb, yb = n_in_bytes * pad_in, n_out_bytes * pad_out
    return {"fwd": (xb, yb, n_out_bytes), "bwd_data": (yb, xb, n_in_bytes), "bwd_weight": (xb, yb, weight_bytes)}


def _narrow(s: ConvShape) -> bool:
    """An ungrouped conv with at most NARROW_CHANNELS in or out channels (grouped ones: grouped_path)."""
    return s.groups == 1 and min(s.c_in, s.c_out) <= NARROW_CHANNELS


def conv_key(s: ConvShape) -> str:
    """Efficiency key of a convolution's kernel class (see the module docstring; pass_key adds the pass's path)."""
    parts = ["conv"]
    if s.transposed:
        parts.append("transposed")
    elif s.groups > 1:
        parts.append("depthwise" if s.groups == s.c_in else "grouped")
    if max(s.stride) > 1:
        parts.append("strided")
    if max(s.kernel) == 1:
        parts.append("1x1")
    if not s.transposed and _narrow(s):
        parts.append("narrow")
    return "/".join(parts)


def pass_key(key: str, s: ConvShape, stage: str) -> str:
    """`key` (conv_key of `s`) for one pass: a grouped pass oneDNN runs as im2col + GEMM is conv/grouped/gemm..."""
    return key.replace("conv/grouped", "conv/grouped/gemm", 1) if grouped_path(s, stage)[0] else key


def _conv_cost(layer: Layer, batch: int, b: int, macs: int, c_in: int, c_out: int) -> OpCost:
    """Shared by conv and transposed conv: `macs` multiply-adds per sample, weight c_in*c_out/g*k."""
    s = layer.spec
    n_in, n_out = batch * numel(layer.input_shapes[0]), batch * numel(layer.output_shape)
    weights = c_in * c_out // s.groups * _kernel_numel(layer)
    bias = c_out if s.bias else 0
    flops = 2 * batch * macs
    shape = conv_shape(layer, batch)
    key = conv_key(shape)
    kw = {st: dict(efficiency_key=pass_key(key, shape, st), shape=shape, executed=grouped_path(shape, st)[1])
          for st in ("forward", "backward_data", "backward_weight")}
    pads = (1.0, 1.0) if shape.transposed else (blocked_pad(c_in, s.groups, True), blocked_pad(c_out, s.groups, False))
    bufs = conv_buffers(n_in * b, n_out * b, weights * b, *pads)
    fwd = [Work("conv", flops=flops, bytes_read=(n_in + weights) * b, bytes_written=n_out * b, allocs=bufs["fwd"],
                **kw["forward"])]
    bwd_w = [Work("conv", flops=flops, bytes_read=(n_out + n_in) * b, bytes_written=weights * b,
                  allocs=bufs["bwd_weight"], **kw["backward_weight"])]
    if bias:  # broadcast add over the output; backward reduces dy over batch and positions
        fwd.append(Work("memory", flops=n_out, bytes_read=(n_out + bias) * b, bytes_written=n_out * b,
                        efficiency_key="elementwise/bias"))
        bwd_w.append(Work("memory", flops=n_out, bytes_read=n_out * b, bytes_written=bias * b,
                          efficiency_key="reduce/bias"))
    bwd_d = Work("conv", flops=flops, bytes_read=(n_out + weights) * b, bytes_written=n_in * b,
                 allocs=bufs["bwd_data"], **kw["backward_data"])
    return OpCost(
        forward=tuple(fwd), backward_data=(bwd_d,), backward_weight=tuple(bwd_w),
        params=weights + bias, saved_bytes=n_in * b, output_bytes=n_out * b,
        extra={"param_tensors": 2 if bias else 1},
    )


@cost_rule("conv1d", "conv2d")
def conv(layer: Layer, batch: int, b: int) -> OpCost:
    """y = conv(x, W) + b; backward-data is the transposed conv and backward-weight a correlation of
    x with dy, both with the forward's multiply-adds (the bias is extra: add forward, reduction backward)."""
    c_in, c_out = layer.input_shapes[0][0], layer.output_shape[0]
    macs = numel(layer.output_shape) * (c_in // layer.spec.groups) * _kernel_numel(layer)
    return _conv_cost(layer, batch, b, macs, c_in, c_out)


@cost_rule("conv_transpose2d")
def conv_transpose(layer: Layer, batch: int, b: int) -> OpCost:
    """The mirror of conv: every input position scatters out/groups * kh*kw multiply-adds; backward-data
    is an ordinary conv and backward-weight a correlation, both with the same multiply-adds."""
    c_in, c_out = layer.input_shapes[0][0], layer.output_shape[0]
    macs = numel(layer.input_shapes[0]) * (c_out // layer.spec.groups) * _kernel_numel(layer)
    return _conv_cost(layer, batch, b, macs, c_in, c_out)
