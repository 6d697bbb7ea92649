"""Random realistic networks for the cpu-random suite (torch-free): deterministic per seed.

`draw_architectures(seed, n)` draws `n` layer graphs, balanced over six kinds: MLPs (norms,
activations, dropout, residual adds), CNNs (plain, residual, grouped, depthwise-separable, bottleneck
and inverted-residual blocks; strided convolutions or pooling to downsample), mobile CNNs (depthwise
and 1x1 heavy), recurrent stacks (RNN/LSTM/GRU, uni- or bidirectional), transformer encoders, and
mixtures (conv1d + recurrent, CNN + MLP head, a dense autoencoder). The architecture depends on the
seed only; `size_cases` then picks each network's batch so that the predicted single-thread step
lands in a target range (so the batches depend on the profile too; a run stores them).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..graph.io import NetworkBuilder
from ..graph.layer_graph import LayerGraph
from ..prediction import predict

KINDS = ("mlp", "cnn", "cnn-mobile", "rnn", "transformer", "mixture")
ACTS = ("relu", "gelu", "tanh", "leaky_relu", "sigmoid")
OPTIMIZERS = ("sgd", "momentum", "adam")
BATCHES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
STEP_RANGE_S = (0.05, 2.0)  # every case's step must take this long (predicted, at 1 and 2 threads)
TARGET_1T_S = (0.1, 0.7)  # the single-thread step is aimed log-uniformly inside this range
MAX_FOOTPRINT_BYTES = 2.5e9  # a shared machine: keep each training step's memory modest


@dataclass(frozen=True)
class RandomNet:
    """One drawn network: its graph, kind, optimizer and the target single-thread step time."""

    name: str
    kind: str
    graph: LayerGraph
    optimizer: str
    target_s: float
    index: int = 0
    draw: int = 0


def _logu(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _width(rng: random.Random, lo: int, hi: int, mult: int = 8) -> int:
    return max(mult, int(round(_logu(rng, lo, hi) / mult)) * mult)


def _act(b: NetworkBuilder, rng: random.Random, name: str, act: str) -> str:
    return b.layer(act, name, **({"slope": 0.1} if act == "leaky_relu" else {}))


def _mlp(b: NetworkBuilder, rng: random.Random, features: int) -> None:
    depth, act = rng.randint(2, 5), rng.choice(ACTS)
    norm = rng.choice(("none", "layernorm", "batchnorm"))
    drop = rng.choice((0.0, 0.0, 0.1, 0.2))
    width = _width(rng, 128, 2048)
    prev, prev_w = b._specs[-1].name, features
    for i in range(depth):
        w = width if rng.random() < 0.6 else _width(rng, 128, 2048)
        x = b.dense(f"fc{i}", units=w, inputs=[prev])
        if norm != "none":
            x = b.layer(norm, f"norm{i}")
        x = _act(b, rng, f"act{i}", act)
        if drop:
            x = b.dropout(f"drop{i}", p=drop)
        if w == prev_w and rng.random() < 0.5:
            x = b.add(f"res{i}", inputs=[x, prev])
        prev, prev_w = x, w


def _conv_bn(b, name, ch, k=3, s=1, g=1, act="relu", inputs=None) -> str:
    kw = {"inputs": [inputs]} if inputs else {}
    b.conv2d(f"{name}.conv", out_channels=ch, kernel=k, stride=s, padding=k // 2, groups=g, bias=False, **kw)
    x = b.batchnorm(f"{name}.bn")
    return _act(b, None, f"{name}.{act}", act) if act else x


def _block(b, rng, name, kind, cin, cout, stride) -> str:
    """One CNN block from `cin` to `cout` channels (stride 1 or 2); returns its output layer name."""
    x_in = b._specs[-1].name
    if kind == "plain":
        return _conv_bn(b, name, cout, 3, stride)
    if kind == "dw_separable":
        _conv_bn(b, f"{name}.dw", cin, 3, stride, g=cin)
        return _conv_bn(b, f"{name}.pw", cout, 1)
    if kind == "inverted":
        e = _width(rng, 2 * cin, 6 * cin)
        _conv_bn(b, f"{name}.expand", e, 1)
        _conv_bn(b, f"{name}.dw", e, 3, stride, g=e)
        y = _conv_bn(b, f"{name}.project", cout, 1, act=None)
        return b.add(f"{name}.add", inputs=[y, x_in]) if stride == 1 and cin == cout else y
    if kind == "grouped":
        g = rng.choice([d for d in (2, 4, 8, 16) if cin % d == 0 and cout % d == 0] or [1])
        _conv_bn(b, f"{name}.c1", cout, 3, stride, g=g)
        y = _conv_bn(b, f"{name}.c2", cout, 3, 1, g=g, act=None)
    elif kind == "bottleneck":
        mid = max(8, cout // 4 // 8 * 8)
        _conv_bn(b, f"{name}.reduce", mid, 1)
        _conv_bn(b, f"{name}.c3", mid, 3, stride)
        y = _conv_bn(b, f"{name}.expand", cout, 1, act=None)
    else:  # residual basic block
        _conv_bn(b, f"{name}.c1", cout, 3, stride)
        y = _conv_bn(b, f"{name}.c2", cout, 3, act=None)
    sc = x_in if stride == 1 and cin == cout else _conv_bn(b, f"{name}.proj", cout, 1, stride, act=None, inputs=x_in)
    b.add(f"{name}.add", inputs=[y, sc])
    return b.relu(f"{name}.relu")


def _cnn(b, rng, mobile: bool) -> int:
    """CNN body after a [3, H, W] input; returns the channels of its last feature map."""
    kinds = ("dw_separable", "inverted", "dw_separable", "plain") if mobile else \
        ("plain", "residual", "grouped", "bottleneck", "dw_separable", "inverted")
    ch = rng.choice((16, 24, 32, 48))
    big = b._specs[0].shape[-1] >= 64
    _conv_bn(b, "stem", ch, 5 if big and rng.random() < 0.5 else 3, 2 if big else 1)
    for s in range(rng.randint(2, 4)):
        cout = min(384, ch * rng.choice((1, 2, 2)) if s else ch)
        down = s > 0
        if down and rng.random() < 0.35:
            b.layer(rng.choice(("maxpool2d", "avgpool2d")), f"s{s}.pool", kernel=2)
            down = False
        for i in range(rng.randint(1, 2)):
            _block(b, rng, f"s{s}.b{i}", rng.choice(kinds), ch, cout, 2 if (down and i == 0) else 1)
            ch = cout
    return ch


def _recurrent(b, rng, last: bool = True) -> None:
    cell = rng.choice(("lstm", "gru", "rnn"))
    layers = rng.randint(1, 3)
    bi = rng.random() < 0.3
    hidden = _width(rng, 64, 512 if cell != "rnn" else 768)
    b.layer(cell, cell, hidden=hidden, layers=layers, bidirectional=bi, return_sequences=not last)


def _transformer(b, rng) -> None:
    t = rng.choice((32, 48, 64, 96, 128, 192))
    dim = rng.choice((64, 128, 192, 256, 384))
    heads = rng.choice([h for h in (2, 4, 6, 8) if dim % h == 0 and dim // h >= 16])
    ffn, act, drop = dim * rng.choice((2, 4)), rng.choice(("relu", "gelu")), rng.choice((0.0, 0.1))
    b.input("tokens", shape=[t], dtype="int64")
    b.embedding("embed", vocab=rng.choice((1000, 4000, 16000)), dim=dim)
    x = b.positional_embedding("pos", max_len=t)
    for i in range(rng.randint(1, 4)):
        p = f"l{i}"
        b.attention(f"{p}.attn", heads=heads, inputs=[x])
        y = b.dropout(f"{p}.attn_drop", p=drop) if drop else f"{p}.attn"
        b.add(f"{p}.attn_res", inputs=[y, x])
        h = b.layernorm(f"{p}.attn_norm")
        b.dense(f"{p}.ffn1", units=ffn)
        b.layer(act, f"{p}.ffn_act")
        y = b.dense(f"{p}.ffn2", units=dim)
        b.add(f"{p}.ffn_res", inputs=[y, h])
        x = b.layernorm(f"{p}.out_norm")
    b.select("first", axis=0, index=0)


def _classifier(b, rng, classes: int | None = None) -> None:
    b.dense("head", units=classes or rng.choice((10, 100, 1000)))
    b.softmax_cross_entropy("loss")


def _mixture(b, rng) -> None:
    variant = rng.choice(("conv1d-rnn", "cnn-mlp", "autoencoder"))
    if variant == "conv1d-rnn":
        b.input("signal", shape=[rng.choice((8, 16, 32)), rng.choice((128, 256, 512))])
        ch = rng.choice((32, 64, 96))
        b.conv1d("c1", out_channels=ch, kernel=rng.choice((3, 5, 7)), padding="same")
        b.batchnorm("bn1")
        b.relu("r1")
        b.conv1d("c2", out_channels=ch, kernel=3, stride=2, padding=1)
        b.relu("r2")
        _recurrent(b, rng)  # over the channels as steps
        _classifier(b, rng)
    elif variant == "cnn-mlp":
        b.input("image", shape=[3, 32, 32])
        _cnn(b, rng, mobile=False)
        b.layer(rng.choice(("maxpool2d", "avgpool2d")), "pool", kernel=2)
        b.flatten("flat")
        b.dense("fc", units=_width(rng, 128, 1024))
        b.layernorm("fc_norm")
        b.gelu("fc_act")
        _classifier(b, rng)
    else:
        f = _width(rng, 256, 2048)
        b.input("x", shape=[f])
        for i, w in enumerate((_width(rng, 256, 1024), _width(rng, 32, 128))):
            b.dense(f"enc{i}", units=w)
            _act(b, rng, f"enc_act{i}", rng.choice(ACTS))
        b.dense("dec0", units=_width(rng, 256, 1024))
        b.relu("dec_act0")
        b.dense("dec1", units=f)
        b.sigmoid("out")
        b.mse("loss")


def draw_network(rng: random.Random, kind: str, name: str) -> LayerGraph:
    """One random network of `kind` (see KINDS)."""
    b = NetworkBuilder(name, f"cpu-random {kind}")
    if kind == "mlp":
        f = _width(rng, 64, 1024)
        b.input("x", shape=[f])
        _mlp(b, rng, f)
        _classifier(b, rng)
    elif kind in ("cnn", "cnn-mobile"):
        hw = rng.choice((32, 48, 64, 96) if kind == "cnn-mobile" else (32, 32, 48, 64))
        b.input("image", shape=[3, hw, hw])
        _cnn(b, rng, mobile=kind == "cnn-mobile")
        b.global_avgpool("gap")
        if rng.random() < 0.4:
            b.dropout("head_drop", p=0.2)
        _classifier(b, rng)
    elif kind == "rnn":
        b.input("seq", shape=[rng.choice((16, 24, 32, 48, 64, 96)), _width(rng, 16, 256)])
        _recurrent(b, rng)
        _classifier(b, rng)
    elif kind == "transformer":
        _transformer(b, rng)
        _classifier(b, rng, rng.choice((2, 4, 10)))
    else:
        _mixture(b, rng)
    return b.build()


def kinds_for(seed: int, n: int) -> list[str]:
    """The kind of each of the `n` networks of `seed`: balanced (each kind about n/6 times), shuffled."""
    kinds = [KINDS[i % len(KINDS)] for i in range(n)]
    random.Random(f"cpu-random:{seed}").shuffle(kinds)
    return kinds


def draw_net(seed: int, index: int, kind: str, draw: int = 0) -> RandomNet:
    """Network `index` of `seed` (its `draw`-th try): its own random stream, so any case can be rebuilt alone."""
    rng = random.Random(f"cpu-random:{seed}:{index}:{draw}")
    g = draw_network(rng, kind, f"r{index:02d}-{kind}")
    return RandomNet(g.name, kind, g, rng.choice(OPTIMIZERS), _logu(rng, *TARGET_1T_S), index, draw)


@dataclass(frozen=True)
class SizedNet:
    """A drawn network with its batch and the predicted step times at 1 and 2 threads (seconds)."""

    net: RandomNet
    batch: int
    predicted_s: tuple[float, float]


def size_network(net: RandomNet, device, threads: tuple[int, int] = (1, 2)) -> SizedNet | None:
    """The batch (from BATCHES) whose predicted single-thread step is nearest `net.target_s`, with every
    thread count's step inside STEP_RANGE_S and the footprint under MAX_FOOTPRINT_BYTES; None if none fits."""
    best = None
    for batch in BATCHES:
        p1 = predict(net.graph, device, batch=batch, threads=threads[0], optimizer=net.optimizer, layers=False)
        if p1.memory.total_bytes > MAX_FOOTPRINT_BYTES or p1.iteration_time_s > STEP_RANGE_S[1]:
            break
        p2 = predict(net.graph, device, batch=batch, threads=threads[1], optimizer=net.optimizer, layers=False)
        times = (p1.iteration_time_s, p2.iteration_time_s)
        if min(times) >= STEP_RANGE_S[0]:
            gap = abs(math.log(times[0] / net.target_s))
            if best is None or gap < best[0]:
                best = (gap, SizedNet(net, batch, times))
        if times[0] > net.target_s:
            break
    return best[1] if best else None


def draw_cases(seed: int, device, n: int = 24, max_draws: int = 20) -> list[SizedNet]:
    """`n` sized networks for `seed`; a network that cannot be sized into STEP_RANGE_S is drawn again (its
    next draw), so the cases depend on the seed and, through the sizing, on the profile."""
    out: list[SizedNet] = []
    for i, kind in enumerate(kinds_for(seed, n)):
        for draw in range(max_draws):
            sized = size_network(draw_net(seed, i, kind, draw), device)
            if sized is not None:
                out.append(sized)
                break
    return out
