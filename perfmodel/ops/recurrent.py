"""Cost rules of recurrent layers: rnn, lstm and gru (cuDNN-style execution, as PyTorch uses on GPU).

Per layer and direction, with g gates, hidden H, input width `in` (F for layer 0, H*dirs above) and
T steps: the input projection of all steps is one GEMM (2*batch*T*in*gH); each step launches one
recurrent GEMM (2*batch*H*gH) and one fused elementwise kernel (sum of both projections, the two
biases b_ih and b_hh, the gate nonlinearities and the state update). return_sequences only changes
the output shape.

Backward split: op_cost drops backward_data when the layer's input needs no gradient, but the
back-propagation through time is still needed for the weight gradients. So backward_data holds only
the layer-0 input-gradient GEMM (dX = dgates W_ih); everything else (the per-step recurrent
dh GEMMs, the gate backward kernels, the inter-layer dX GEMMs, dW_ih, dW_hh and the bias reduction)
is charged to backward_weight. An LSTM runs as one fused primitive (oneDNN's on a CPU, cuDNN's on a GPU) whose
backward always computes the layer-0 input gradient as well (timed here: the same backward with and without an
input needing gradients), so an LSTM charges that GEMM to backward_weight too. Together the data-gradient GEMMs have the forward GEMMs' FLOPs and the
weight-gradient GEMMs the same again. extra["data_chain_flops"] gives the share of backward_weight that is
data-gradient work, for schedules that separate the two.

Efficiency keys: rnn/gemm (input projections, dX, dW), rnn/gemm/recurrent (the per-step [batch, H] x
[H, gH] GEMMs), elementwise/rnn-cell (gate kernels), reduce/bias. An LSTM's GEMM and gate keys end in "/lstm"
(rnn/gemm/lstm, rnn/gemm/recurrent/lstm, elementwise/rnn-cell/lstm): PyTorch on CPU runs the LSTM as oneDNN's
fused RNN primitive, with its own GEMM and gate kernels, so a CPU profile may price them apart (a calibrated
GEMM efficiency and gate-math rate); the keys fall back to the ones without it. A group's GemmShape is the one
of its first layer's kernels (the layers above layer 0 read H*dirs instead of F).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..graph.layer_graph import Layer
from .base import GemmShape, OpCost, Work, cost_rule, numel
from .elementwise import ACT_BWD_FLOPS, ACT_FWD_FLOPS

# Elementwise FLOPs per hidden unit per step, beyond adding the two projections and the two biases.
CELL_FWD_FLOPS: dict[str, int] = {
    # i, f, o sigmoids; tanh(g) and tanh(c); c = f*c + i*g (3); h = o*tanh(c) (1)
    "lstm": 3 * ACT_FWD_FLOPS["sigmoid"] + 2 * ACT_FWD_FLOPS["tanh"] + 4,
    # r, z sigmoids; n = tanh(x_n + r*h_n) (tanh + 2); h = (1-z)*n + z*h (4)
    "gru": 2 * ACT_FWD_FLOPS["sigmoid"] + ACT_FWD_FLOPS["tanh"] + 2 + 4,
}
# The gate backward differentiates every nonlinearity and the state update: about twice the forward work.
CELL_BWD_FACTOR = 2
# Per-step states kept per hidden unit: h (and c for LSTM).
STATES = {"rnn": 1, "lstm": 2, "gru": 1}


@dataclass(frozen=True, slots=True)
class CellShape:
    """The tensors of one recurrent step's gate kernels: [batch, hidden] states, `gates` x hidden gate
    pre-activations; `cell` names the cell ("rnn_tanh", "rnn_relu", "gru", "lstm") for a stack's per-step kernel
    list (engine.cpu_stack). Not a GEMM or convolution: kernel models pass it by."""

    batch: int
    hidden: int
    gates: int
    cell: str


# Per element of a per-step kernel (a CPU stack's list, engine.cpu_stack): (FLOPs, elements read, written) and
# the calibrated rate key; "<op>.backward" of an activation is its backward (reads dy and y).
STEP_OPS: dict[str, tuple[float, int, int]] = {
    "add": (1, 2, 1), "mul": (1, 2, 1), "copy": (0, 1, 1), "sum": (1, 1, 0),
    **{a: (ACT_FWD_FLOPS[a], 1, 1) for a in ("sigmoid", "tanh", "relu")},
    **{f"{a}.backward": (ACT_BWD_FLOPS[a], 2, 1) for a in ("sigmoid", "tanh", "relu")},
}
STEP_WIDTHS = ("h", "g", "w", "b")  # [batch, H], [batch, gH], [gH, H] (a weight), [gH] (a bias)


def step_elements(shape: CellShape, width: str) -> int:
    """Elements of a per-step tensor of `width` (STEP_WIDTHS) for `shape`."""
    gh = shape.gates * shape.hidden
    return {"h": shape.batch * shape.hidden, "g": shape.batch * gh, "w": gh * shape.hidden, "b": gh}[width]


def step_works(shape: CellShape, kernels: dict[str, float], steps: int, b: int) -> tuple[tuple[str, int, Work], ...]:
    """(rate key, elements per kernel, Work) per entry "<op>@<width>": count of a stack's per-step kernel list (engine.cpu_stack),
    over `steps` time steps (layer-directions included): each kernel is one dispatch over its tensor."""
    out = []
    for name, count in kernels.items():
        op, _, width = name.partition("@")
        fl, rd, wr = STEP_OPS[op]
        n, k = step_elements(shape, width or "h"), int(round(count * steps))
        if k > 0:
            out.append((op, n, Work("memory", flops=fl * n * k, bytes_read=rd * n * k * b, bytes_written=wr * n * k * b,
                                 kernels=k, efficiency_key=f"elementwise/{op.removesuffix('.backward')}")))
    return tuple(out)


@dataclass
class _Acc:
    """Running sum of one group of identical kernels."""

    family: str
    key: str
    flops: float = 0.0
    read: float = 0.0
    written: float = 0.0
    kernels: int = 0
    shape: GemmShape | CellShape | None = None
    allocs: tuple[float, ...] = ()  # (0.0,): writes into the layer's workspace, allocates nothing of its own

    def add(self, flops: float, read: float, written: float, kernels: int,
            shape: GemmShape | CellShape | None = None) -> None:
        self.flops += flops
        self.read += read
        self.written += written
        self.kernels += kernels
        if self.shape is None:
            self.shape = shape

    def work(self) -> Work:
        return Work(self.family, flops=self.flops, bytes_read=self.read, bytes_written=self.written,
                    kernels=self.kernels, efficiency_key=self.key, shape=self.shape, allocs=self.allocs)


def _cell_flops(layer: Layer) -> int:
    """Elementwise FLOPs per hidden unit per step of the gate nonlinearities and state update."""
    s = layer.spec
    return ACT_FWD_FLOPS[s.nonlinearity] if s.op == "rnn" else CELL_FWD_FLOPS[s.op]


@dataclass(frozen=True)
class _Dims:
    """Sizes of one layer-direction: batch*T, T, batch, input width, hidden, g*hidden, states, biases."""

    bt: int
    t: int
    batch: int
    n_in: int
    h: int
    gh: int
    ns: int
    nb: int
    cell: CellShape | None = None


def _forward(acc: dict[str, _Acc], d: _Dims, cell_flops: int, b: int) -> None:
    """Input-projection GEMM (1 kernel), per-step recurrent GEMMs and fused gate kernels (T each)."""
    acc["in"].add(2 * d.bt * d.n_in * d.gh, (d.bt * d.n_in + d.n_in * d.gh) * b, d.bt * d.gh * b, 1,
                  GemmShape(d.bt, d.gh, d.n_in))
    acc["rec"].add(2 * d.bt * d.h * d.gh, d.t * (d.batch * d.h + d.h * d.gh) * b, d.bt * d.gh * b, d.t,
                   GemmShape(d.batch, d.gh, d.h))
    acc["cell"].add(d.bt * ((1 + d.nb) * d.gh + d.h * cell_flops),
                    (d.bt * (2 * d.gh + (d.ns - 1) * d.h) + d.nb * d.gh) * b, d.bt * (d.gh + d.ns * d.h) * b, d.t,
                    d.cell)


def _backward(acc: dict[str, _Acc], d: _Dims, cell_flops: int, b: int, first: bool) -> None:
    """Per-step dh GEMMs and gate backward (T kernels each), dX GEMM, dW_ih + dW_hh GEMMs, bias reduction."""
    acc["dx0" if first else "dx"].add(2 * d.bt * d.gh * d.n_in, (d.bt * d.gh + d.gh * d.n_in) * b,
                                      d.bt * d.n_in * b, 1, GemmShape(d.bt, d.n_in, d.gh))
    acc["bptt"].add(2 * d.bt * d.gh * d.h, d.t * (d.batch * d.gh + d.gh * d.h) * b, d.bt * d.h * b, d.t,
                    GemmShape(d.batch, d.h, d.gh))
    acc["cellb"].add(CELL_BWD_FACTOR * d.bt * ((1 + d.nb) * d.gh + d.h * cell_flops),
                     d.bt * (d.gh + 2 * d.ns * d.h) * b, d.bt * (d.gh + d.ns * d.h) * b, d.t, d.cell)
    acc["dw"].add(2 * d.bt * d.gh * (d.n_in + d.h), d.bt * (2 * d.gh + d.n_in + d.h) * b,
                  d.gh * (d.n_in + d.h) * b, 2, GemmShape(d.gh, d.n_in, d.bt))
    if d.nb:
        acc["db"].add(d.bt * d.gh, d.bt * d.gh * b, d.nb * d.gh * b, 1)


LSTM_SUFFIX = "/lstm"  # the GEMM keys of an LSTM (see the module docstring)
_GEMM, _REC, _CELL = ("matrix", "rnn/gemm"), ("matrix", "rnn/gemm/recurrent"), ("memory", "elementwise/rnn-cell")
_GROUPS = {"in": _GEMM, "rec": _REC, "cell": _CELL, "dx0": _GEMM, "bptt": _REC, "cellb": _CELL, "dx": _GEMM,
           "dw": _GEMM, "db": ("memory", "reduce/bias")}
_SUFFIXED = ("rnn/gemm", "elementwise/rnn-cell")  # the keys an LSTM prices apart (LSTM_SUFFIX)
# a fused LSTM's gates, states and their gradients live in its workspace (engine.heap prices that buffer)
_IN_WORKSPACE = ("in", "rec", "cell", "bptt", "cellb")


@cost_rule("rnn", "lstm", "gru")
def recurrent(layer: Layer, batch: int, b: int) -> OpCost:
    """Stacked (bi)directional RNN/LSTM/GRU over [T, F]; see the module docstring for the kernel model."""
    s = layer.spec
    t, f = layer.input_shapes[0]
    dirs, nb, cell_flops = (2 if s.bidirectional else 1), (2 if s.bias else 0), _cell_flops(layer)
    gh, ns = s.gates * s.hidden, STATES[s.op]
    sfx = LSTM_SUFFIX if s.op == "lstm" else ""
    cell = CellShape(batch, s.hidden, s.gates, f"rnn_{s.nonlinearity}" if s.op == "rnn" else s.op)
    acc = {k: _Acc(fam, key + sfx if key.startswith(_SUFFIXED) else key,
                   allocs=(0.0,) if sfx and k in _IN_WORKSPACE else ()) for k, (fam, key) in _GROUPS.items()}
    params, saved = 0, batch * t * f * b  # autograd keeps the layer's input
    reserve = 0
    for layer_i in range(s.layers):
        d = _Dims(batch * t, t, batch, f if layer_i == 0 else s.hidden * dirs, s.hidden, gh, ns, nb, cell)
        for _ in range(dirs):
            params += gh * d.n_in + gh * d.h + nb * gh
            reserve += d.bt * (gh + ns * d.h) * b  # activated gates and states of every step (cuDNN reserve)
            _forward(acc, d, cell_flops, b)
            _backward(acc, d, cell_flops, b, first=layer_i == 0 and s.op != "lstm")
    return OpCost(
        forward=tuple(acc[k].work() for k in ("in", "rec", "cell")),
        backward_data=(acc["dx0"].work(),) if acc["dx0"].kernels else (),
        backward_weight=tuple(acc[k].work() for k in ("bptt", "cellb", "dx", "dw", "db") if acc[k].kernels),
        params=params, saved_bytes=saved + reserve, output_bytes=batch * numel(layer.output_shape) * b,
        extra={"param_tensors": s.layers * dirs * (2 + nb), "cell": s.op,
               "data_chain_flops": sum(acc[k].flops for k in ("bptt", "cellb", "dx")),
               # a library's workspace is measured in one layer-direction's hidden states over all steps
               "reserve_bytes": reserve, "state_bytes": batch * t * s.hidden * b, "layer_directions": s.layers * dirs},
    )
