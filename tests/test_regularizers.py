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


SEQUENCE_WEIGHTS = {
    "lstm": (lambda reg: nj.lstm(3, 4, regularizer=reg, dtype=jnp.float64), ("w_x", "w_h")),
    "gru": (lambda reg: nj.gru(3, 4, regularizer=reg, dtype=jnp.float64), ("w_x", "w_h")),
    "attention": (
        lambda reg: nj.multi_head_attention(4, 2, regularizer=reg, dtype=jnp.float64),
        ("w_qkv", "w_o"),
    ),
    "embedding": (lambda reg: nj.embedding(7, 4, regularizer=reg, dtype=jnp.float64), ("table",)),
}


@pytest.mark.parametrize("kind", SEQUENCE_WEIGHTS)
def test_sequence_layers_penalize_their_weight_matrices_only(kind):
    make, weights = SEQUENCE_WEIGHTS[kind]
    reg = nj.elastic_net(1e-2, 1e-3)
    layer = make(reg)
    params = jax.tree.map(lambda a: a + 0.1, layer.init(jax.random.key(0)))  # no zero leaf

    def expected(p):
        return sum(reg.value(getattr(p, field)) for field in weights)

    value, grads = layer.penalty(params)
    assert float(value) == pytest.approx(float(expected(params)), rel=1e-12)
    assert float(value) > 0
    want = jax.grad(expected)(params)
    for field, got in zip(params._fields, grads, strict=True):
        np.testing.assert_allclose(got, getattr(want, field), rtol=1e-12, atol=0)
        assert (field in weights) == bool(np.any(np.asarray(got) != 0)), field
    assert make(None).penalty(params)[0] == 0
    assert make(reg) == make(reg) and make(reg) != make(None)


def test_a_regularized_lstm_trains_on_loss_plus_penalty():
    """loss_and_grad adds the LSTM's penalty gradient: it matches autodiff of loss + penalty."""
    model = nj.serial(nj.lstm(3, 4, regularizer=nj.l2(1e-2), dtype=jnp.float64),
                      nj.dense(4, 2, dtype=jnp.float64))  # fmt: skip
    params = model.init(jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (5, 6, 3), jnp.float64)
    y = jnp.array([0, 1, 1, 0, 1], jnp.int32)
    assert nj.check_grads(model, nj.cross_entropy, params, x, y) <= 1e-10
    plain = nj.serial(nj.lstm(3, 4, dtype=jnp.float64), nj.dense(4, 2, dtype=jnp.float64))
    with_penalty = nj.loss_and_grad(model, nj.cross_entropy, params, x, y)[0]
    without = nj.loss_and_grad(plain, nj.cross_entropy, params, x, y)[0]
    assert float(with_penalty) > float(without)
