"""batch_norm: backward against jax.vjp in training and inference (float64 and float32, under
jit, vmap and lax.scan), values and running statistics against NumPy, and bad arguments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, rel_err

import nnrs_jax as nj

SHAPES = [(6, 4), (2, 3, 5, 4)]
MOMENTUM, EPS = 0.8, 1e-3


def _case(shape, dtype, seed=0):
    """A layer with non-trivial params and running statistics, an input and a cotangent."""
    features = shape[-1]
    layer = nj.batch_norm(features, MOMENTUM, EPS, dtype=dtype)
    keys = jax.random.split(jax.random.key(seed), 6)
    params = nj.BatchNormParams(
        1.0 + 0.5 * jax.random.normal(keys[0], (features,), dtype),
        jax.random.normal(keys[1], (features,), dtype),
    )
    state = nj.BatchNormState(
        jax.random.normal(keys[2], (features,), dtype),
        jax.random.uniform(keys[3], (features,), dtype, 0.5, 2.0),
    )
    # Per-feature offsets and spreads, so the statistics differ from feature to feature.
    spread = jnp.broadcast_to(jnp.arange(1, features + 1, dtype=dtype), shape)
    x = 3.0 + spread * jax.random.normal(keys[4], shape, dtype)
    dy = jax.random.normal(keys[5], shape, dtype)
    return layer, params, state, x, dy


def _reference(layer, params, x, dy, *, state, train):
    def f(p, a):
        return nj.forward(layer, p, a, state=state, train=train)[0]

    return jax.vjp(f, params, x)[1](dy)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_vjp(shape, train, dtype):
    layer, params, state, x, dy = _case(shape, dtype)
    got = nj.backward(layer, params, x, dy, state=state, train=train)
    assert isinstance(got[0], nj.BatchNormParams)
    assert all(g.dtype == dtype for g in jax.tree.leaves(got))
    # The cotangent's key, apart from the one that drew the params, state and x.
    key = jax.random.key(100)
    report = nj.check_layer(
        layer, x, params=params, key=key, state=state, train=train, rtol=TOL[dtype]
    )
    assert report.ok, str(report)


@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
def test_backward_under_jit_vmap_and_scan(train):
    layer, params, state, _, _ = _case((5, 3), jnp.float64)
    cases = [_case((5, 3), jnp.float64, seed) for seed in range(3)]
    xs = jnp.stack([c[3] for c in cases])
    dys = jnp.stack([c[4] for c in cases])
    want = [_reference(layer, params, x, dy, state=state, train=train) for x, dy in zip(xs, dys)]
    want = jax.tree.map(lambda *leaves: jnp.stack(leaves), *want)

    def grads(x, dy):
        return nj.backward(layer, params, x, dy, state=state, train=train)

    one = jax.tree.map(lambda a: a[0], want)
    assert rel_err(jax.jit(grads)(xs[0], dys[0]), one) <= 1e-10
    assert rel_err(jax.vmap(grads)(xs, dys), want) <= 1e-10
    _, got_scan = jax.lax.scan(lambda c, inputs: (c, grads(*inputs)), None, (xs, dys))
    assert rel_err(got_scan, want) <= 1e-10


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_training_forward_and_running_statistics(shape):
    layer, params, state, x, _ = _case(shape, jnp.float64)
    y, new_state = nj.forward(layer, params, x, state=state, train=True)

    xn = np.asarray(x).reshape(-1, shape[-1])
    mu, var = xn.mean(axis=0), xn.var(axis=0)  # the biased variance normalises
    scale, bias = np.asarray(params.scale), np.asarray(params.bias)
    want = scale * (xn - mu) / np.sqrt(var + EPS) + bias
    np.testing.assert_allclose(np.asarray(y).reshape(-1, shape[-1]), want, rtol=1e-12, atol=1e-12)

    assert isinstance(new_state, nj.BatchNormState)
    want_mean = MOMENTUM * np.asarray(state.mean) + (1 - MOMENTUM) * mu
    # The running variance takes the unbiased batch variance (ddof=1).
    want_var = MOMENTUM * np.asarray(state.var) + (1 - MOMENTUM) * xn.var(axis=0, ddof=1)
    np.testing.assert_allclose(np.asarray(new_state.mean), want_mean, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(new_state.var), want_var, rtol=1e-13)


def test_training_output_is_normalised():
    layer = nj.batch_norm(3, dtype=jnp.float64)
    x = 5.0 + 4.0 * jax.random.normal(jax.random.key(3), (400, 3), jnp.float64)
    y, _ = nj.forward(layer, layer.init(None), x, state=layer.init_state(), train=True)
    np.testing.assert_allclose(np.asarray(y).mean(axis=0), 0.0, atol=1e-12)
    # Biased variance σ²/(σ² + eps) with σ² ≈ 16.
    np.testing.assert_allclose(np.asarray(y).var(axis=0), 1.0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_inference_uses_running_statistics(shape):
    layer, params, state, x, _ = _case(shape, jnp.float64)
    y, new_state = nj.forward(layer, params, x, state=state, train=False)
    assert new_state is state
    mean, var = np.asarray(state.mean), np.asarray(state.var)
    want = np.asarray(params.scale) * (np.asarray(x) - mean) / np.sqrt(var + EPS)
    want = want + np.asarray(params.bias)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-12, atol=1e-12)
    # Each example on its own gives the same output: no batch statistics in inference.
    first = layer.apply(params, x[:1], state=state)
    np.testing.assert_allclose(np.asarray(first), np.asarray(y[:1]), rtol=1e-14)


def test_init_and_state_dtypes(key):
    layer = nj.batch_norm(5)
    params, state = layer.init(key), layer.init_state()
    assert layer.name == "batch_norm(5)"
    assert nj.has_state(layer)
    np.testing.assert_array_equal(np.asarray(params.scale), np.ones(5))
    np.testing.assert_array_equal(np.asarray(params.bias), np.zeros(5))
    np.testing.assert_array_equal(np.asarray(state.mean), np.zeros(5))
    np.testing.assert_array_equal(np.asarray(state.var), np.ones(5))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((params, state)))
    x = jnp.ones((4, 2, 5), jnp.float32)
    _, new_state = nj.forward(layer, params, x, state=state, train=True)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(new_state))
    assert nj.output_shape(layer, (4, 2, 5)) == (4, 2, 5)


def test_state_threads_through_scan():
    layer, params, state, _, _ = _case((8, 3), jnp.float64)
    xs = jnp.stack([_case((8, 3), jnp.float64, seed)[3] for seed in range(4)])

    def step(s, x):
        y, s = nj.forward(layer, params, x, state=s, train=True)
        return s, y

    final, _ = jax.jit(lambda s: jax.lax.scan(step, s, xs))(state)
    want = state
    for x in xs:
        want = nj.forward(layer, params, x, state=want, train=True)[1]
    assert rel_err(final, want) <= 1e-14


def test_check_grads_in_both_modes(key):
    model = nj.serial(nj.batch_norm(4, dtype=jnp.float64), nj.dense(4, 6, dtype=jnp.float64))
    x = 2.0 + jax.random.normal(key, (10, 4), jnp.float64)
    labels = jnp.arange(10) % 6
    params, state = model.init(key), model.init_state()
    for train in (True, False):
        err = nj.check_grads(model, nj.cross_entropy, params, x, labels, state=state, train=train)
        assert err < 1e-10


def test_bias_before_batch_norm_gets_no_gradient_in_training(key):
    # Training-mode batch norm subtracts the batch mean, so a shift of its input (the bias of a
    # dense layer before it) leaves the loss unchanged: that gradient is zero up to rounding.
    model = nj.serial(nj.dense(4, 6, dtype=jnp.float64), nj.batch_norm(6, dtype=jnp.float64))
    x = jax.random.normal(key, (10, 4), jnp.float64)
    labels = jnp.arange(10) % 6
    params, state = model.init(key), model.init_state()
    _, grads = nj.loss_and_grad(model, nj.cross_entropy, params, x, labels, state=state, train=True)

    def objective(p):
        return nj.cross_entropy.value(nj.forward(model, p, x, state=state, train=True)[0], labels)

    want = jax.grad(objective)(params)
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(want))
    assert float(jnp.max(jnp.abs(grads[0].b))) <= 1e-14 * scale
    for got, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
        assert float(jnp.max(jnp.abs(got - ref))) <= 1e-12 * scale


@pytest.mark.parametrize(
    ("factory", "error", "match"),
    [
        (lambda: nj.batch_norm(0), ValueError, "batch_norm: features must be an int >= 1, got 0"),
        (lambda: nj.batch_norm(2.5), TypeError, r"batch_norm: features must be an int, got 2\.5"),
        (lambda: nj.batch_norm(4, 1.0), ValueError, r"batch_norm: momentum .*< 1, got 1\.0"),
        (lambda: nj.batch_norm(4, -0.1), ValueError, r"batch_norm: momentum .*>= 0.*got -0\.1"),
        (lambda: nj.batch_norm(4, eps=0.0), ValueError, r"batch_norm: eps .*> 0, got 0\.0"),
        (lambda: nj.batch_norm(4, eps=float("inf")), ValueError, "batch_norm: eps .* got inf"),
        (lambda: nj.batch_norm(4, "0.9"), TypeError, "batch_norm: momentum must be a float"),
        (
            lambda: nj.batch_norm(4, dtype=jnp.int32),
            TypeError,
            "batch_norm: dtype must be a floating dtype, got int32",
        ),
    ],
)
def test_factory_rejects_bad_arguments(factory, error, match):
    with pytest.raises(error, match=match):
        factory()


def test_factory_accepts_numpy_scalars():
    layer = nj.batch_norm(np.int64(3), np.float32(0.5), np.float64(1e-3))
    assert layer.name == "batch_norm(3)"


def _bad_calls():
    layer = nj.batch_norm(4)
    params, state = layer.init(None), layer.init_state()
    x = jnp.ones((3, 4), jnp.float32)
    other = nj.batch_norm(5).init_state()
    return [
        (
            lambda: layer.apply(params, x, train=True),
            TypeError,
            r"batch_norm\(4\): needs its state .*pass state=model\.init_state\(\)",
        ),
        (
            lambda: layer.apply(params, x),
            TypeError,
            r"batch_norm\(4\): needs its state",
        ),
        (
            lambda: layer.backward(params, x, x, train=True),
            TypeError,
            r"batch_norm\(4\): needs its state",
        ),
        (
            lambda: layer.apply(params, x, state=(state,)),
            TypeError,
            r"batch_norm\(4\): state must be a BatchNormState\(mean, var\) .*got tuple",
        ),
        (
            lambda: layer.apply(params, x, state=other),
            ValueError,
            r"batch_norm\(4\): state\.mean must have shape \(4,\), got \(5,\)",
        ),
        (
            lambda: layer.apply(params, jnp.ones((3, 5), jnp.float32), state=state),
            ValueError,
            r"batch_norm\(4\): x must have shape \(batch, \.\.\., 4\) with 4 features on the "
            r"last axis, got \(3, 5\)",
        ),
        (
            lambda: layer.apply(params, jnp.ones((4,), jnp.float32), state=state),
            ValueError,
            r"batch_norm\(4\): x must have shape \(batch, \.\.\., 4\).*got \(4,\)",
        ),
        (
            lambda: layer.apply(params, jnp.ones((3, 4), jnp.int32), state=state),
            TypeError,
            r"batch_norm\(4\): x must have a floating dtype, got int32",
        ),
        (
            lambda: layer.apply(params, x[:1], state=state, train=True),
            ValueError,
            r"batch_norm\(4\): training needs at least 2 values per feature .*got x of shape "
            r"\(1, 4\)",
        ),
        (
            lambda: jax.jit(lambda t: layer.apply(params, x, state=state, train=t))(True),
            TypeError,
            r"batch_norm\(4\): train must be a Python bool",
        ),
        (
            lambda: layer.backward(params, x, x[:, :2], state=state, train=True),
            ValueError,
            r"batch_norm\(4\): grad_y must have the shape of x \(3, 4\), got \(3, 2\)",
        ),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_rejects_bad_call_arguments(case):
    call, error, match = _bad_calls()[case]
    with pytest.raises(error, match=match):
        call()
