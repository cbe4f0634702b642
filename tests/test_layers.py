"""Every layer's hand-written backward against jax.vjp (nj.check_layer), in float64 and float32,
with random shapes, and under jit, vmap and lax.scan; shapes of init/apply; bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, check_vmap_and_scan, rel_err

import nnrs_jax as nj
from nnrs_jax.layers.dense import Pretransposed

ACTIVATIONS = {
    "relu": nj.relu,
    "leaky_relu": lambda: nj.leaky_relu(0.1),
    "elu": lambda: nj.elu(1.3),
    "selu": nj.selu,
    "tanh": nj.tanh,
    "sigmoid": nj.sigmoid,
    "softmax": nj.softmax,
}


def _layer(name: str, d_in: int, d_out: int, dtype) -> nj.Layer:
    if name == "dense":
        return nj.dense(d_in, d_out, dtype=dtype)
    if name == "serial":
        inner = nj.serial(nj.dense(d_out, 7, dtype=dtype), nj.tanh())
        return nj.serial(
            nj.dense(d_in, d_out, dtype=dtype), nj.elu(), inner, nj.dense(7, 3, dtype=dtype)
        )
    return ACTIVATIONS[name]()


LAYERS = ["dense", "serial", *ACTIVATIONS]


def _case(name: str, seed: int, dtype):
    rng = np.random.default_rng(seed)
    batch, d_in, d_out = (int(v) for v in rng.integers(1, 13, size=3))
    layer = _layer(name, d_in, d_out, dtype)
    k_init, k_x, k_dy = jax.random.split(jax.random.key(seed), 3)
    params = layer.init(k_init)
    # Shift inputs so the kinks of relu-like layers are never hit exactly.
    x = 2.0 * jax.random.normal(k_x, (batch, d_in), dtype) + 0.01
    y = layer.apply(params, x)
    dy = jax.random.normal(k_dy, y.shape, dtype)
    return layer, params, x, dy


def _reference(layer: nj.Layer, params, x, dy):
    _, vjp = jax.vjp(layer.apply, params, x)
    return vjp(dy)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", LAYERS)
def test_backward_matches_vjp(name, seed, dtype):
    layer, params, x, dy = _case(name, seed, dtype)
    # The cotangent's key, apart from the keys that drew the params and x.
    key = jax.random.key(1000 + seed)
    report = nj.check_layer(layer, x, params=params, key=key, rtol=TOL[dtype])
    assert report.ok, str(report)
    grads = layer.backward(params, x, dy)
    assert jax.tree.structure(grads[0]) == jax.tree.structure(params)
    for leaf, g in zip(jax.tree.leaves(params), jax.tree.leaves(grads[0])):
        assert g.dtype == leaf.dtype
    assert grads[1].dtype == x.dtype


@pytest.mark.parametrize("name", LAYERS)
def test_backward_under_jit(name):
    layer, params, x, dy = _case(name, 7, jnp.float64)
    got = jax.jit(layer.backward)(params, x, dy)
    assert rel_err(got, _reference(layer, params, x, dy)) <= 1e-10


@pytest.mark.parametrize("name", LAYERS)
def test_backward_under_vmap_and_scan(name):
    layer, params, x, dy = _case(name, 11, jnp.float64)
    xs = jnp.stack([x, 0.5 * x - 1.0, -x])
    dys = jnp.stack([dy, -dy, 2.0 * dy])
    check_vmap_and_scan(layer, params, xs, dys, lambda p, a, b: _reference(layer, p, a, b))


def test_dense_shapes_and_init_scales():
    layer = nj.dense(784, 64)
    params = layer.init(jax.random.key(0))
    assert isinstance(params, nj.DenseParams)
    assert params.w.shape == (784, 64) and params.b.shape == (64,)
    assert params.w.dtype == jnp.float32
    assert not np.any(np.asarray(params.b))
    assert layer.apply(params, jnp.ones((5, 784), jnp.float32)).shape == (5, 64)
    for init, var in [("he", 2 / 784), ("lecun", 1 / 784), ("glorot", 2 / (784 + 64))]:
        w = nj.dense(784, 64, init=init).init(jax.random.key(1)).w
        assert np.var(np.asarray(w)) == pytest.approx(var, rel=0.05)


def test_dense_accepts_initializer_function():
    layer = nj.dense(3, 2, init=lambda key, shape, dtype: jnp.ones(shape, dtype))
    assert np.all(np.asarray(layer.init(jax.random.key(0)).w) == 1)


def test_serial_params_and_output_shapes(key):
    model = nj.serial(nj.dense(784, 64), nj.elu(), nj.serial(nj.dense(64, 10), nj.softmax()))
    params = model.init(key)
    assert len(params) == 3 and params[1] == () and len(params[2]) == 2
    assert params[2][0].w.shape == (64, 10)
    out = model.apply(params, jnp.zeros((4, 784), jnp.float32))
    assert out.shape == (4, 10)
    np.testing.assert_allclose(np.asarray(out).sum(axis=1), 1.0, rtol=1e-6)


def test_activation_values():
    x = jnp.array([[-2.0, -0.5, 0.5, 3.0]])
    np.testing.assert_allclose(nj.relu().apply((), x), [[0, 0, 0.5, 3.0]])
    np.testing.assert_allclose(nj.leaky_relu(0.1).apply((), x), [[-0.2, -0.05, 0.5, 3.0]])
    np.testing.assert_allclose(nj.elu(2.0).apply((), x)[0, 0], 2 * np.expm1(-2.0))
    np.testing.assert_allclose(nj.selu().apply((), x)[0, 3], 1.0507009873554805 * 3.0)
    big = nj.elu().backward((), jnp.array([[1e4, -1e4]]), jnp.ones((1, 2)))[1]
    assert np.all(np.isfinite(np.asarray(big)))


def test_dense_wrong_features_names_both_sizes(key):
    layer = nj.dense(784, 64)
    params = layer.init(key)
    with pytest.raises(ValueError, match=r"dense\(784, 64\).*784.*700"):
        layer.apply(params, jnp.zeros((8, 700), jnp.float32))
    with pytest.raises(ValueError, match=r"dense\(784, 64\).*784.*700"):
        jax.jit(layer.apply)(params, jnp.zeros((8, 700), jnp.float32))
    with pytest.raises(ValueError, match="grad_y"):
        layer.backward(params, jnp.zeros((8, 784), jnp.float32), jnp.zeros((8, 10), jnp.float32))


def test_dense_on_a_sequence_transforms_the_last_axis(key):
    """(batch, time, in) -> (batch, time, out), each position by the same W and b; proved."""
    layer = nj.dense(5, 3, dtype=jnp.float64)
    params = layer.init(key)
    x = jax.random.normal(jax.random.key(1), (4, 6, 5), jnp.float64)
    y = layer.apply(params, x)
    np.testing.assert_allclose(y[:, 2], layer.apply(params, x[:, 2]), rtol=1e-12)
    report = nj.check_layer(layer, x, params=params)
    assert report.ok, report
    with pytest.raises(ValueError, match=r"dense\(5, 3\): grad_y must have shape \(4, 6, 3\)"):
        layer.backward(params, x, jnp.zeros((4, 5, 3), jnp.float64))
    with pytest.raises(ValueError, match=r"expected 5 features, got 4"):
        layer.apply(params, x[..., :4])


def test_bad_input_rank_and_dtype(key):
    layer = nj.dense(4, 2)
    params = layer.init(key)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        layer.apply(params, jnp.zeros((4,), jnp.float32))
    with pytest.raises(TypeError, match="floating"):
        layer.apply(params, jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(TypeError, match="floating"):
        nj.relu().apply((), jnp.zeros((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="shape of x"):
        nj.tanh().backward((), jnp.zeros((2, 4)), jnp.zeros((2, 3)))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: nj.dense(0, 5), "in_dim"),
        (lambda: nj.dense(5, -1), "out_dim"),
        (lambda: nj.dense(2.5, 5), "in_dim"),
        (lambda: nj.dense(3, 5, init="xavier"), "init"),
        (lambda: nj.dense(3, 5, regularizer=0.1), "regularizer"),
        (lambda: nj.elu(-1.0), "alpha"),
        (lambda: nj.leaky_relu(float("nan")), "alpha"),
        (lambda: nj.serial(), "at least one"),
        (lambda: nj.serial(nj.relu), "Layer"),
    ],
)
def test_factories_reject_bad_arguments(factory, match):
    with pytest.raises((ValueError, TypeError), match=match):
        factory()


def test_serial_rejects_wrong_params(key):
    model = nj.serial(nj.dense(3, 2), nj.relu())
    with pytest.raises(TypeError, match="tuple of 2"):
        model.apply(model.init(key)[:1], jnp.zeros((1, 3), jnp.float32))


@pytest.mark.parametrize("name", ["dense", "serial"])
def test_pretransposed_input_gives_the_same_result(name):
    """Only dense reads its prepared input (also as the first layer of a serial)."""
    layer, params, x, dy = _case(name, 4, jnp.float64)
    wrapped = Pretransposed.of(x)
    assert wrapped.x_t.shape == x.shape[::-1]
    np.testing.assert_array_equal(layer.apply(params, wrapped), layer.apply(params, x))
    got = jax.jit(layer.backward)(params, wrapped, dy)
    assert rel_err(got, layer.backward(params, x, dy)) <= 1e-14
