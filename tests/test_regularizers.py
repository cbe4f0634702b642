"""Regularizers and initializers: values, gradients, validation."""

from __future__ import annotations

import math
import re

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
    ("factory", "error", "message"),
    [
        (lambda: nj.l1(-1.0), ValueError, "l1: lam must be a finite float >= 0, got -1.0"),
        (lambda: nj.l2(math.inf), ValueError, "l2: lam must be a finite float >= 0, got inf"),
        (
            lambda: nj.l2(np.float32("nan")),
            ValueError,
            "l2: lam must be a finite float >= 0, got nan",
        ),
        (lambda: nj.l2("a"), TypeError, "l2: lam must be a float, got 'a' (str)"),
        (lambda: nj.l1(None), TypeError, "l1: lam must be a float, got None (NoneType)"),
        (
            lambda: nj.elastic_net(1e-4, -math.inf),
            ValueError,
            "elastic_net: l2 must be a finite float >= 0, got -inf",
        ),
        (lambda: nj.elastic_net(True, 0.0), TypeError, "elastic_net: l1 must be a float, got True"),
    ],
)
def test_rejects_bad_strengths(factory, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}"):
        factory()


def test_numpy_scalars_give_plain_floats():
    reg = nj.elastic_net(np.float64(1e-4), np.int64(0))
    assert reg == nj.elastic_net(1e-4, 0.0) and reg == (1e-4, 0.0)
    assert type(reg.l1) is float and type(reg.l2) is float
    half = nj.l2(np.float32(0.5))
    assert half == nj.l2(0.5) and type(half.l2) is float
    assert nj.l1(np.float32(0.1)).l1 == float(np.float32(0.1))  # exactly the value given


@pytest.mark.parametrize(
    ("name", "var"), [("he", 2 / 400), ("lecun", 1 / 400), ("glorot", 2 / 500)]
)
def test_initializer_variance(name, var):
    init = nj.initializers.resolve(name)
    w = init(jax.random.key(3), (400, 100), jnp.float64)
    assert w.dtype == jnp.float64
    assert float(jnp.var(w)) == pytest.approx(var, rel=0.03)
    assert abs(float(jnp.mean(w))) < 0.01


def test_resolve_initializer_names_and_errors():
    assert nj.initializers.resolve("GLOROT") is nj.initializers.glorot
    assert nj.initializers.resolve(nj.initializers.lecun) is nj.initializers.lecun
    with pytest.raises(
        ValueError, match=r"^dense: init must be one of \('glorot', 'he', 'lecun'\)"
    ):
        nj.initializers.resolve("xavier", caller="dense")
    with pytest.raises(TypeError, match=r"^resolve: init must be one of .* got 2 \(int\)"):
        nj.initializers.resolve(2)
