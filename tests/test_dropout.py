"""dropout: backward against jax.vjp with the same key (float64 and float32, under jit, vmap and
lax.scan), the statistics of its masks, inference as the identity, and bad arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, rel_err

import nnrs_jax as nj

SHAPES = [(7,), (5, 6), (2, 3, 4, 5)]


def _reference(layer, x, dy, *, key, train):
    _, vjp = jax.vjp(lambda a: layer.apply((), a, key=key, train=train), x)
    return (), vjp(dy)[0]


def _case(shape, dtype, seed=0):
    k_x, k_dy = jax.random.split(jax.random.key(100 + seed))
    return jax.random.normal(k_x, shape, dtype), jax.random.normal(k_dy, shape, dtype)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_vjp(shape, rate, train, dtype, key):
    layer = nj.dropout(rate)
    x, dy = _case(shape, dtype)
    got = nj.backward(layer, (), x, dy, key=key, train=train)
    assert got[0] == ()
    assert got[1].dtype == dtype and got[1].shape == shape
    report = nj.check_layer(layer, x, key=key, train=train, rtol=TOL[dtype])
    assert report.ok, str(report)


def test_backward_under_jit_vmap_and_scan(key):
    layer = nj.dropout(0.4)
    xs, dys = _case((3, 4, 5), jnp.float64)
    keys = jax.random.split(key, 3)
    want = [_reference(layer, x, dy, key=k, train=True)[1] for x, dy, k in zip(xs, dys, keys)]
    want = jnp.stack(want)

    def grad_x(x, dy, k):
        return nj.backward(layer, (), x, dy, key=k, train=True)[1]

    assert rel_err(jax.jit(grad_x)(xs[0], dys[0], keys[0]), want[0]) <= 1e-10
    assert rel_err(jax.vmap(grad_x)(xs, dys, keys), want) <= 1e-10

    def body(carry, inputs):
        return carry, grad_x(*inputs)

    _, got_scan = jax.lax.scan(body, None, (xs, dys, keys))
    assert rel_err(got_scan, want) <= 1e-10
    # The forward under the same transformations draws the same masks.
    ys = jax.vmap(lambda x, k: layer.apply((), x, key=k, train=True))(xs, keys)
    assert np.array_equal(np.asarray(ys) == 0, np.asarray(want) == 0)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_fraction_dropped_and_scale(rate, key):
    n = 200_000
    y = nj.dropout(rate).apply((), jnp.ones((n,), jnp.float64), key=key, train=True)
    y = np.asarray(y)
    dropped = np.mean(y == 0)
    # Five binomial standard deviations: fails by chance with probability ~6e-7.
    assert abs(dropped - rate) <= 5 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - rate), rtol=1e-15)
    assert abs(y.mean() - 1.0) <= 5 * np.sqrt(rate / (1 - rate) / n)


def test_mean_is_preserved_in_expectation(key):
    rate, draws = 0.6, 4000
    x = jnp.linspace(-3.0, 3.0, 8)
    keys = jax.random.split(key, draws)
    ys = jax.vmap(lambda k: nj.dropout(rate).apply((), x, key=k, train=True))(keys)
    # Var(yᵢ) = xᵢ²·rate/(1 − rate) per draw.
    bound = 5 * np.abs(np.asarray(x)) * np.sqrt(rate / (1 - rate) / draws)
    assert np.all(np.abs(np.asarray(ys.mean(axis=0)) - np.asarray(x)) <= bound)


def test_backward_regenerates_the_forward_mask(key):
    layer = nj.dropout(0.5)
    ones = jnp.ones((6, 50), jnp.float64)
    y = layer.apply((), ones, key=key, train=True)
    _, dx = layer.backward((), ones, ones, key=key, train=True)
    # y = m/(1 − rate) on x = 1, and dx = m/(1 − rate) on dy = 1: the same m.
    assert np.array_equal(np.asarray(y), np.asarray(dx))
    assert 0 < np.mean(np.asarray(y) == 0) < 1


def test_mask_depends_on_the_key_only(key):
    layer = nj.dropout(0.5)
    x64 = jnp.ones((4, 64), jnp.float64)
    mask = np.asarray(layer.apply((), x64, key=key, train=True)) == 0
    again = np.asarray(layer.apply((), x64, key=key, train=True)) == 0
    as_f32 = np.asarray(layer.apply((), x64.astype(jnp.float32), key=key, train=True)) == 0
    other = np.asarray(layer.apply((), x64, key=jax.random.key(1), train=True)) == 0
    assert np.array_equal(mask, again)
    assert np.array_equal(mask, as_f32)
    assert not np.array_equal(mask, other)
    # 256 elements: two independent masks agree on about half of them.
    assert 0.3 < np.mean(mask == other) < 0.7


def test_legacy_uint32_key_is_accepted():
    layer = nj.dropout(0.5)
    x = jnp.ones((3, 40), jnp.float64)
    y = layer.apply((), x, key=jax.random.PRNGKey(0), train=True)
    assert set(np.unique(np.asarray(y)).tolist()) == {0.0, 2.0}


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_inference_is_the_identity(shape):
    layer = nj.dropout(0.7)
    x, dy = _case(shape, jnp.float32)
    y, state = nj.forward(layer, (), x)
    assert y is x and state == ()
    assert nj.backward(layer, (), x, dy)[1] is dy
    # rate 0 trains without a key, as the identity.
    assert nj.dropout(0.0).apply((), x, train=True) is x


def test_contract(key):
    layer = nj.dropout(np.float32(0.25))
    assert layer.name == "dropout(0.25)"
    assert layer.forward is not None
    assert layer.init(key) == () and layer.init_state() == ()
    assert not nj.has_state(layer)
    assert nj.output_shape(layer, (2, 3, 4)) == (2, 3, 4)


@pytest.mark.parametrize(
    ("rate", "error", "match"),
    [
        (-0.1, ValueError, r"dropout: rate must be a finite float >= 0 and < 1, got -0\.1"),
        (1.0, ValueError, r"dropout: rate must be .*< 1, got 1\.0"),
        (float("nan"), ValueError, "dropout: rate .* got nan"),
        (float("inf"), ValueError, "dropout: rate .* got inf"),
        ("0.5", TypeError, r"dropout: rate must be a float, got '0\.5' \(str\)"),
        (True, TypeError, r"dropout: rate must be a float, got True \(bool\)"),
        (None, TypeError, "dropout: rate must be a float, got None"),
    ],
)
def test_rejects_bad_rate(rate, error, match):
    with pytest.raises(error, match=match):
        nj.dropout(rate)


def test_training_without_a_key_names_the_layer():
    layer = nj.dropout(0.5)
    x = jnp.ones((2, 3), jnp.float32)
    match = r"dropout\(0\.5\): training needs a PRNG key; pass key="
    with pytest.raises(TypeError, match=match):
        layer.apply((), x, train=True)
    with pytest.raises(TypeError, match=match):
        layer.backward((), x, x, train=True)
    with pytest.raises(TypeError, match=match):
        jax.jit(lambda a: layer.apply((), a, train=True))(x)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda layer, x, k: layer.apply((), x, key=0, train=True),
            TypeError,
            r"dropout\(0\.5\): key must be a PRNG key .*got int",
        ),
        (
            lambda layer, x, k: layer.apply((), x, key=jnp.zeros((3,), jnp.float32), train=True),
            TypeError,
            r"dropout\(0\.5\): key must be a PRNG key .*float32 and shape \(3,\)",
        ),
        (
            lambda layer, x, k: jax.jit(lambda t: layer.apply((), x, key=k, train=t))(True),
            TypeError,
            r"dropout\(0\.5\): train must be a Python bool .*got .*Tracer",
        ),
        (
            lambda layer, x, k: layer.apply((), x.astype(jnp.int32), key=k, train=True),
            TypeError,
            r"dropout\(0\.5\): x must have a floating dtype, got int32",
        ),
        (
            lambda layer, x, k: layer.apply((), [1.0, 2.0], key=k, train=True),
            TypeError,
            r"dropout\(0\.5\): x must be an array, got list",
        ),
        (
            lambda layer, x, k: layer.backward((), x, x[:, :2], key=k, train=True),
            ValueError,
            r"dropout\(0\.5\): grad_y must have the shape of x \(2, 3\), got \(2, 2\)",
        ),
    ],
    ids=["int-key", "float-key", "traced-train", "int-x", "list-x", "grad-shape"],
)
def test_rejects_bad_call_arguments(call, error, match, key):
    with pytest.raises(error, match=match):
        call(nj.dropout(0.5), jnp.ones((2, 3), jnp.float32), key)
