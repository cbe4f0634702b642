"""Regularizers and initializers: values, gradients, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnrs_jax as nj


@pytest.mark.parametrize(
    "reg", [nj.l1(0.3), nj.l2(0.2), nj.elastic_net(0.1, 0.05)], ids=["l1", "l2", "en"]
)
def test_value_and_grad(reg):
    w = jax.random.normal(jax.random.key(0), (5, 4), jnp.float64)
    wn = np.asarray(w)
    want = reg.l1 * np.abs(wn).sum() + reg.l2 * (wn**2).sum()
    assert float(reg.value(w)) == pytest.approx(want, rel=1e-14)
    np.testing.assert_allclose(reg.grad(w), jax.grad(reg.value)(w), rtol=1e-14)
    np.testing.assert_allclose(reg.grad(w), reg.l1 * np.sign(wn) + 2 * reg.l2 * wn, rtol=1e-14)


def test_penalty_on_weights_only(key):
    reg = nj.elastic_net(1e-2, 1e-3)
    model = nj.serial(nj.dense(3, 4, regularizer=reg), nj.relu(), nj.dense(4, 2))
    params = model.init(key)
    biased = (params[0]._replace(b=jnp.ones(4, jnp.float32)), *params[1:])
    assert float(nj.penalty(model, biased)) == pytest.approx(float(reg.value(params[0].w)))
    _, grads = model.penalty(biased)
    assert not np.any(np.asarray(grads[0].b)) and not np.any(np.asarray(grads[2].w))


@pytest.mark.parametrize(
    "factory", [lambda: nj.l1(-1.0), lambda: nj.l2("a"), lambda: nj.elastic_net(1e-4, float("nan"))]
)
def test_rejects_bad_strengths(factory):
    with pytest.raises(ValueError, match="non-negative"):
        factory()


@pytest.mark.parametrize(
    ("name", "var"), [("he", 2 / 400), ("lecun", 1 / 400), ("glorot", 2 / 500)]
)
def test_initializer_variance(name, var):
    init = nj.initializers.resolve(name)
    w = init(jax.random.key(3), (400, 100), jnp.float64)
    assert w.dtype == jnp.float64
    assert float(jnp.var(w)) == pytest.approx(var, rel=0.03)
    assert abs(float(jnp.mean(w))) < 0.01
