"""Sequence layers: backward against jax.vjp (float64 and float32, eagerly and under jit, vmap
and lax.scan), output shapes, bad inputs named by the layer, and a small model that trains."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, check_vmap_and_scan, rel_err

import nnrs_jax as nj
from nnrs_jax.layers.sequence import (
    EmbeddingParams,
    LayerNormParams,
    PositionalEmbeddingParams,
    embedding,
    last_over_time,
    layer_norm,
    mean_over_time,
    positional_embedding,
)

DTYPES = pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
SEEDS = pytest.mark.parametrize("seed", [0, 1, 2])
KINDS = ["embedding", "positional", "layer_norm", "mean", "last"]


def _case(kind: str, dtype, seed: int = 0, sizes=None):
    """A layer, non-trivial params and an input of sizes drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    batch, time, dim = sizes or (int(n) for n in rng.integers(1, 6, size=3))
    keys = jax.random.split(jax.random.key(seed), 3)
    x = 2.0 + 3.0 * jax.random.normal(keys[0], (batch, time, dim), dtype)
    if kind == "embedding":
        vocab = int(rng.integers(2, 8))
        layer = embedding(vocab, dim, dtype=dtype)
        x = jnp.asarray(rng.integers(0, vocab, size=(batch, time)), jnp.int32)
    elif kind == "positional":
        layer = positional_embedding(time + int(rng.integers(0, 3)), dim, dtype=dtype)
    elif kind == "layer_norm":
        layer = layer_norm(dim, eps=1e-3, dtype=dtype)
    elif kind == "mean":
        layer = mean_over_time()
    else:
        layer = last_over_time()
    params = layer.init(keys[1])
    if kind == "layer_norm":  # away from γ = 1, β = 0
        params = LayerNormParams(
            1.0 + 0.5 * jax.random.normal(keys[2], (dim,), dtype),
            jax.random.normal(keys[1], (dim,), dtype),
        )
    return layer, params, x


def _reference(layer, params, x, dy):
    """``(dparams, dx)`` by ``jax.vjp``; zeros in the params dtype for integer ids."""
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jax.vjp(layer.apply, params, x)[1](dy)
    (grads,) = jax.vjp(lambda p: layer.apply(p, x), params)[1](dy)
    return grads, jnp.zeros(x.shape, dy.dtype)


@DTYPES
@SEEDS
@pytest.mark.parametrize("kind", KINDS)
def test_backward_matches_vjp(kind, seed, dtype):
    layer, params, x = _case(kind, dtype, seed)
    report = nj.check_layer(
        layer, x, params=params, key=jax.random.key(100 + seed), rtol=TOL[dtype]
    )
    assert report.ok, str(report)
    dy = jnp.ones(nj.output_shape(layer, x.shape, x.dtype), dtype)
    grads, grad_x = layer.backward(params, x, dy)
    assert grad_x.shape == x.shape
    assert all(g.dtype == dtype for g in jax.tree.leaves((grads, grad_x)))


@pytest.mark.parametrize("kind", KINDS)
def test_backward_under_jit_vmap_and_scan(kind):
    layer, params, x = _case(kind, jnp.float64, 0, sizes=(3, 4, 5))
    y_shape = nj.output_shape(layer, x.shape, x.dtype)
    cases = [_case(kind, jnp.float64, seed, sizes=(3, 4, 5))[2] for seed in range(3)]
    xs = jnp.stack(cases)
    if kind == "embedding":  # ids of another vocabulary size, in range of this one
        xs = xs % params.table.shape[0]
    dys = jax.random.normal(jax.random.key(7), (3, *y_shape), jnp.float64)
    eager = layer.backward(params, xs[0], dys[0])
    assert rel_err(jax.jit(layer.backward)(params, xs[0], dys[0]), eager) <= 1e-10
    assert rel_err(eager, _reference(layer, params, xs[0], dys[0])) <= 1e-10
    check_vmap_and_scan(layer, params, xs, dys, functools.partial(_reference, layer))


def test_output_shapes():
    assert nj.output_shape(embedding(10, 4), (2, 7), jnp.int32) == (2, 7, 4)
    assert nj.output_shape(positional_embedding(9, 4), (2, 7, 4)) == (2, 7, 4)
    assert nj.output_shape(layer_norm(4), (2, 7, 4)) == (2, 7, 4)
    assert nj.output_shape(layer_norm(4), (2, 4)) == (2, 4)
    assert nj.output_shape(mean_over_time(), (2, 7, 4)) == (2, 4)
    assert nj.output_shape(last_over_time(), (2, 7, 4)) == (2, 4)


def test_param_types_and_init():
    key = jax.random.key(0)
    table = embedding(10, 4).init(key)
    assert isinstance(table, EmbeddingParams) and table.table.shape == (10, 4)
    pos = positional_embedding(6, 4, dtype=jnp.float64).init(key)
    assert isinstance(pos, PositionalEmbeddingParams) and pos.table.dtype == jnp.float64
    assert float(jnp.std(pos.table)) < 0.1  # N(0, 0.02²)
    norm = layer_norm(3).init(key)
    assert norm.scale.tolist() == [1.0] * 3 and norm.bias.tolist() == [0.0] * 3
    glorot = embedding(10, 4, init="glorot").init(key)
    assert glorot.table.shape == (10, 4)


def test_embedding_clips_out_of_range_ids():
    layer = embedding(5, 2)
    params = layer.init(jax.random.key(0))
    y = layer.apply(params, jnp.array([[-3, 0, 4, 9]]))
    np.testing.assert_array_equal(y[0], params.table[jnp.array([0, 0, 4, 4])])
    grads, _ = layer.backward(params, jnp.array([[-3, 9]]), jnp.ones((1, 2, 2), jnp.float32))
    np.testing.assert_array_equal(grads.table[:, 0], [1.0, 0.0, 0.0, 0.0, 1.0])


def test_layer_norm_values_against_numpy():
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    layer = layer_norm(4, eps=1e-3, dtype=jnp.float64)
    params = LayerNormParams(jnp.arange(1.0, 5.0), jnp.full((4,), 0.5))
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    want = (x - mu) / np.sqrt(var + 1e-3) * np.arange(1.0, 5.0) + 0.5
    np.testing.assert_allclose(layer.apply(params, jnp.asarray(x)), want, rtol=1e-12)


def test_time_pooling_values():
    x = jnp.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_array_equal(mean_over_time().apply((), x), x.mean(axis=1))
    np.testing.assert_array_equal(last_over_time().apply((), x), x[:, 2, :])
    _, dx = mean_over_time().backward((), x, jnp.ones((2, 2)))
    np.testing.assert_allclose(dx, jnp.full((2, 3, 2), 1 / 3), rtol=1e-6)
    _, dx = last_over_time().backward((), x, jnp.ones((2, 2)))
    assert dx[:, 2].tolist() == [[1.0, 1.0]] * 2 and float(jnp.abs(dx[:, :2]).sum()) == 0.0


@pytest.mark.parametrize(
    ("layer", "x", "error", "match"),
    [
        (
            embedding(10, 4),
            jnp.zeros((2, 3)),
            TypeError,
            r"embedding\(10, 4\): ids must have an int",
        ),
        (
            embedding(10, 4),
            jnp.zeros((2, 3, 1), jnp.int32),
            ValueError,
            r"embedding\(10, 4\).*rank 2",
        ),
        (embedding(10, 4), [[1, 2]], TypeError, r"embedding\(10, 4\): ids must be an array"),
        (
            positional_embedding(5, 4),
            jnp.zeros((2, 3)),
            ValueError,
            r"positional_embedding.*rank 3",
        ),
        (positional_embedding(5, 4), jnp.zeros((2, 3, 2)), ValueError, r"expected 4 features"),
        (positional_embedding(5, 4), jnp.zeros((2, 6, 4)), ValueError, r"more than max_time 5"),
        (positional_embedding(5, 4), jnp.zeros((2, 3, 4), jnp.int32), TypeError, "floating"),
        (layer_norm(4), jnp.zeros((4,)), ValueError, r"layer_norm\(4\).*\(batch, \.\.\., 4\)"),
        (layer_norm(4), jnp.zeros((2, 3)), ValueError, r"layer_norm\(4\).*got \(2, 3\)"),
        (layer_norm(4), jnp.zeros((2, 4), jnp.int32), TypeError, r"layer_norm\(4\).*floating"),
        (mean_over_time(), jnp.zeros((2, 3)), ValueError, "mean_over_time: x must have shape"),
        (mean_over_time(), jnp.zeros((2, 0, 3)), ValueError, "mean_over_time.*one time step"),
        (last_over_time(), jnp.zeros((2, 3, 4, 5)), ValueError, "last_over_time.*rank 3"),
        (last_over_time(), jnp.zeros((2, 0, 3)), ValueError, "last_over_time.*one time step"),
    ],
)
def test_bad_inputs_name_the_layer(layer, x, error, match):
    params = layer.init(jax.random.key(0))
    with pytest.raises(error, match=match):
        layer.apply(params, x)


def test_bad_grad_y_names_the_layer():
    layer = layer_norm(4)
    params = layer.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"layer_norm\(4\): grad_y must have the shape"):
        layer.backward(params, jnp.zeros((2, 4)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"embedding\(10, 4\): grad_y must have the shape"):
        embedding(10, 4).backward(
            embedding(10, 4).init(jax.random.key(0)),
            jnp.zeros((2, 3), jnp.int32),
            jnp.zeros((2, 4)),
        )


def test_bad_arguments():
    with pytest.raises(ValueError, match="embedding: vocab_size must be an int >= 1"):
        embedding(0, 4)
    with pytest.raises(TypeError, match="positional_embedding: dim must be an int"):
        positional_embedding(4, 2.0)
    with pytest.raises(ValueError, match="layer_norm: eps must be"):
        layer_norm(4, eps=0.0)
    with pytest.raises(TypeError, match="layer_norm: dtype must be a floating dtype"):
        layer_norm(4, dtype=jnp.int32)
    with pytest.raises(ValueError, match="embedding: init must be one of"):
        embedding(4, 2, init="uniform")


def test_equal_arguments_give_equal_layers():
    assert embedding(10, 4) == embedding(10, 4)
    assert embedding(10, 4) != embedding(10, 5)
    assert positional_embedding(8, 4) == positional_embedding(8, 4)
    assert layer_norm(4) == layer_norm(4, eps=1e-5)
    assert mean_over_time() == mean_over_time() and last_over_time() == last_over_time()


def test_small_sequence_model_trains():
    """ids → embedding → positions → layer_norm → mean → dense; the loss falls."""
    vocab, time, dim = 6, 5, 8
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, size=(64, time)).astype(np.int32)
    labels = (np.sum(ids < vocab // 2, axis=1) > time // 2).astype(np.int32)
    model = nj.serial(
        embedding(vocab, dim),
        positional_embedding(time, dim),
        layer_norm(dim),
        mean_over_time(),
        nj.dense(dim, 2),
    )
    assert nj.output_shape(model, ids.shape, jnp.int32) == (64, 2)
    opt = nj.adam(3e-2)
    step = nj.make_train_step(model, nj.cross_entropy, opt)
    params = model.init(jax.random.key(0))
    opt_state = opt.init(params)
    x, y = jnp.asarray(ids), jnp.asarray(labels)
    losses = []
    for _ in range(30):
        params, opt_state, metrics = step(params, opt_state, x, y)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.6 * losses[0], losses
    assert float(metrics["accuracy"]) > 0.8


def test_fit_and_evaluate_take_token_ids_for_an_embedding_model():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 6, size=(64, 5)).astype(np.int32)
    labels = (ids[:, -1] % 2).astype(np.int32)  # the parity of the last token
    model = nj.serial(nj.embedding(6, 8), nj.last_over_time(), nj.dense(8, 2))
    result = nj.fit(model, nj.cross_entropy, nj.adam(3e-2), ids, labels,
                    key=jax.random.key(0), steps=60, progress=False)  # fmt: skip
    assert result.history["loss"][-1] < 0.5 * result.history["loss"][0]
    assert nj.evaluate(model, result.params, ids, labels).accuracy > 0.9
    # A model that does not start with an embedding still refuses integer x, naming fit.
    with pytest.raises(TypeError, match=r"^fit: x must have a floating dtype, got int32 "):
        nj.fit(nj.dense(5, 2), nj.cross_entropy, nj.sgd(0.1), ids, labels,
               key=jax.random.key(0), steps=1, progress=False)  # fmt: skip
