"""Worst relative error of every hand-written backward against JAX autodiff.

    python benchmarks/gradient_errors.py

For each layer (the image layers on random NHWC shapes, the sequence layers on random
``(batch, time, features)`` shapes or token ids, dropout and batch norm in the mode named, with
a fixed key), loss and regularizer: the largest norm-wise relative difference
``max|manual − autodiff| / max|autodiff|`` over several random shapes and seeds, in float64 and
float32. Layers compare ``backward`` with ``jax.vjp``; losses compare ``backward`` with
``jax.grad``; regularizers compare ``nj.loss_and_grad`` with ``jax.grad`` of loss + penalty.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import nnrs_jax as nj

jax.config.update("jax_enable_x64", True)

SEEDS = range(5)


def rel(a, b) -> float:
    worst = 0.0
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        scale = max(np.max(np.abs(v), initial=0.0), np.finfo(np.float64).tiny)
        worst = max(worst, float(np.max(np.abs(u - v), initial=0.0) / scale))
    return worst


def shapes(seed: int) -> tuple[int, int, int]:
    batch, d_in, d_out = np.random.default_rng(seed).integers(2, 33, size=3)
    return int(batch), int(d_in), int(d_out)


def layer_error(make, dtype, seed: int) -> float:
    batch, d_in, d_out = shapes(seed)
    layer = make(d_in, d_out, dtype)
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = layer.init(k1)
    x = 2.0 * jax.random.normal(k2, (batch, d_in), dtype) + 0.01
    dy = jax.random.normal(k3, layer.apply(params, x).shape, dtype)
    _, vjp = jax.vjp(layer.apply, params, x)
    return rel(layer.backward(params, x, dy), vjp(dy))


def loss_error(loss: nj.Loss, dtype, seed: int) -> float:
    batch, classes, _ = shapes(seed)
    k1, k2 = jax.random.split(jax.random.key(seed))
    outputs = 3.0 * jax.random.normal(k1, (batch, classes), dtype)
    labels = jax.random.randint(k2, (batch,), 0, classes, jnp.int32)
    return rel(loss.backward(outputs, labels), jax.grad(loss.value)(outputs, labels))


def regularizer_error(reg, dtype, seed: int) -> float:
    batch, d_in, d_out = shapes(seed)
    model = nj.serial(nj.dense(d_in, d_out, regularizer=reg, dtype=dtype), nj.elu(),
                      nj.dense(d_out, 5, regularizer=reg, dtype=dtype))  # fmt: skip
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = model.init(k1)
    x = jax.random.normal(k2, (batch, d_in), dtype)
    y = jax.random.randint(k3, (batch,), 0, 5, jnp.int32)
    return nj.check_grads(model, nj.cross_entropy, params, x, y)


LAYERS = {
    "dense": lambda i, o, dt: nj.dense(i, o, dtype=dt),
    "relu": lambda i, o, dt: nj.relu(),
    "leaky_relu": lambda i, o, dt: nj.leaky_relu(0.01),
    "elu": lambda i, o, dt: nj.elu(1.0),
    "selu": lambda i, o, dt: nj.selu(),
    "tanh": lambda i, o, dt: nj.tanh(),
    "sigmoid": lambda i, o, dt: nj.sigmoid(),
    "softmax": lambda i, o, dt: nj.softmax(),
    "serial (dense-elu-dense-softmax)": lambda i, o, dt: nj.serial(
        nj.dense(i, o, dtype=dt), nj.elu(), nj.dense(o, 7, dtype=dt), nj.softmax()
    ),
}


def image_shapes(seed: int) -> tuple[int, int, int, int, int]:
    """Batch, height, width, input channels, output channels of one random image case."""
    b, h, w, c, o = np.random.default_rng(100 + seed).integers([2, 5, 5, 1, 1], [6, 13, 13, 5, 7])
    return int(b), int(h), int(w), int(c), int(o)


def image_layer_error(make, train: bool, dtype, seed: int) -> float:
    """`nj.backward` against ``jax.vjp`` of `nj.forward`, same state, key and ``train``."""
    b, h, w, c, o = image_shapes(seed)
    layer = make(c, o, dtype)
    k1, k2, k3, key = jax.random.split(jax.random.key(seed), 4)
    params, state = layer.init(k1), layer.init_state()
    x = jax.random.normal(k2, (b, h, w, c), dtype)
    run = {"state": state, "key": key, "train": train}

    def apply(p, a):
        return nj.forward(layer, p, a, **run)[0]

    y, vjp = jax.vjp(apply, params, x)
    dy = jax.random.normal(k3, y.shape, dtype)
    return rel(nj.backward(layer, params, x, dy, **run), vjp(dy))


IMAGE_LAYERS = {
    "conv2d 3x3": (lambda c, o, dt: nj.conv2d(c, o, 3, dtype=dt), False),
    "conv2d 3x3 stride 2 same": (
        lambda c, o, dt: nj.conv2d(c, o, 3, stride=2, padding="same", dtype=dt),
        False,
    ),
    **{
        f"conv2d 3x3 stride 2 same, impl={p!r}": (
            lambda c, o, dt, p=p: nj.conv2d(c, o, 3, 2, "same", dtype=dt, impl=p),
            False,
        )
        for p in ("patches", "shifted", "xla", "xla_forward")
    },
    "max_pool 2": (lambda c, o, dt: nj.max_pool(2), False),
    "avg_pool 2": (lambda c, o, dt: nj.avg_pool(2), False),
    "flatten": (lambda c, o, dt: nj.flatten(), False),
    "dropout 0.3 (training)": (lambda c, o, dt: nj.dropout(0.3), True),
    "batch_norm (training)": (lambda c, o, dt: nj.batch_norm(c, dtype=dt), True),
    "batch_norm (inference)": (lambda c, o, dt: nj.batch_norm(c, dtype=dt), False),
    "residual(conv2d same, relu)": (
        lambda c, o, dt: nj.residual(
            nj.serial(nj.conv2d(c, c, 3, padding="same", dtype=dt), nj.relu())
        ),
        False,
    ),
}


def sequence_shapes(seed: int) -> tuple[int, int, int]:
    """Batch, time and features (a multiple of 4, for 4 attention heads) of one random case."""
    b, t, f = np.random.default_rng(200 + seed).integers([2, 1, 1], [6, 13, 5])
    return int(b), int(t), 4 * int(f)


def _tokens(b: int, t: int, f: int, dtype, key):
    return jax.random.randint(key, (b, t), 0, 11, jnp.int32)


def _sequence(b: int, t: int, f: int, dtype, key):
    return jax.random.normal(key, (b, t, f), dtype)


def _with_state(parts: int):
    """``(x, h0)`` or ``(x, (h0, c0))`` for a hidden size of 6."""

    def make(b: int, t: int, f: int, dtype, key):
        kx, ks = jax.random.split(key)
        states = tuple(jax.random.normal(ks, (parts, b, 6), dtype))
        return _sequence(b, t, f, dtype, kx), states[0] if parts == 1 else states

    return make


def _with_mask(b: int, t: int, f: int, dtype, key):
    """``(x, mask)``: sequence ``i`` has ``t − i`` real steps (at least one)."""
    lengths = jnp.maximum(t - jnp.arange(b), 1)
    return _sequence(b, t, f, dtype, key), jnp.arange(t)[None, :] < lengths[:, None]


def sequence_layer_error(make, inputs, dtype, seed: int) -> float:
    """`nj.backward` against ``jax.vjp`` of `nj.forward` in the floating inputs (token ids and
    masks are not differentiated; a tuple input's other entries are)."""
    b, t, f = sequence_shapes(seed)
    layer = make(f, dtype)
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = layer.init(k1)
    x = inputs(b, t, f, dtype, k2)
    leaves, tree = jax.tree.flatten(x)
    which = [i for i, a in enumerate(leaves) if jnp.issubdtype(a.dtype, jnp.floating)]

    def forward(p, floating):
        full = list(leaves)
        for i, a in zip(which, floating):
            full[i] = a
        return layer.apply(p, jax.tree.unflatten(tree, full))

    y, vjp = jax.vjp(forward, params, [leaves[i] for i in which])
    dy = jax.random.normal(k3, y.shape, dtype)
    grads, dx = layer.backward(params, x, dy)
    got = jax.tree.leaves(dx, is_leaf=lambda v: v is None)
    return rel((grads, [got[i] for i in which]), vjp(dy))


SEQUENCE_LAYERS = {
    "embedding(11, f)": (lambda f, dt: nj.embedding(11, f, dtype=dt), _tokens),
    "positional_embedding": (lambda f, dt: nj.positional_embedding(12, f, dtype=dt), _sequence),
    "layer_norm": (lambda f, dt: nj.layer_norm(f, dtype=dt), _sequence),
    "dense on a sequence": (lambda f, dt: nj.dense(f, 5, dtype=dt), _sequence),
    "lstm": (lambda f, dt: nj.lstm(f, 6, dtype=dt), _sequence),
    "lstm (return_sequences)": (
        lambda f, dt: nj.lstm(f, 6, return_sequences=True, dtype=dt),
        _sequence,
    ),
    "lstm from (h0, c0)": (lambda f, dt: nj.lstm(f, 6, dtype=dt), _with_state(2)),
    "gru": (lambda f, dt: nj.gru(f, 6, dtype=dt), _sequence),
    "gru (return_sequences)": (
        lambda f, dt: nj.gru(f, 6, return_sequences=True, dtype=dt),
        _sequence,
    ),
    "gru from h0 (return_sequences)": (
        lambda f, dt: nj.gru(f, 6, return_sequences=True, dtype=dt),
        _with_state(1),
    ),
    "multi_head_attention, 4 heads": (
        lambda f, dt: nj.multi_head_attention(f, 4, dtype=dt),
        _sequence,
    ),
    "multi_head_attention, 4 heads, causal": (
        lambda f, dt: nj.multi_head_attention(f, 4, causal=True, dtype=dt),
        _sequence,
    ),
    "multi_head_attention, 4 heads, padding mask": (
        lambda f, dt: nj.multi_head_attention(f, 4, dtype=dt),
        _with_mask,
    ),
    "mean_over_time": (lambda f, dt: nj.mean_over_time(), _sequence),
    "last_over_time": (lambda f, dt: nj.last_over_time(), _sequence),
}
LOSSES = {"cross_entropy": nj.cross_entropy, "mse": nj.mse, "softmax_mse": nj.softmax_mse}
REGULARIZERS = {
    "none": None,
    "l1(1e-2)": nj.l1(1e-2),
    "l2(1e-2)": nj.l2(1e-2),
    "elastic_net(1e-2, 1e-2)": nj.elastic_net(1e-2, 1e-2),
}


def main() -> None:
    rows = [(f"layer {n}", lambda dt, s, m=m: layer_error(m, dt, s)) for n, m in LAYERS.items()]
    rows += [
        (f"layer {n}", lambda dt, s, m=m, t=t: image_layer_error(m, t, dt, s))
        for n, (m, t) in IMAGE_LAYERS.items()
    ]
    rows += [
        (f"layer {n}", lambda dt, s, m=m, i=i: sequence_layer_error(m, i, dt, s))
        for n, (m, i) in SEQUENCE_LAYERS.items()
    ]
    rows += [(f"loss {n}", lambda dt, s, f=f: loss_error(f, dt, s)) for n, f in LOSSES.items()]
    rows += [
        (f"regularizer {n}", lambda dt, s, r=r: regularizer_error(r, dt, s))
        for n, r in REGULARIZERS.items()
    ]
    print(f"worst relative error over {len(SEEDS)} random shapes each")
    print("| part | float64 | float32 |")
    print("|---|---|---|")
    for name, error in rows:
        worst = {dt: max(error(dt, s) for s in SEEDS) for dt in (jnp.float64, jnp.float32)}
        print(f"| {name} | {worst[jnp.float64]:.1e} | {worst[jnp.float32]:.1e} |")


if __name__ == "__main__":
    main()
