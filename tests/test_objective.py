"""loss_and_grad (hand-written passes only) against jax.value_and_grad, and check_grads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from helpers import TOL, rel_err

import nnrs_jax as nj

REGULARIZERS = {
    "none": None,
    "l1": nj.l1(1e-2),
    "l2": nj.l2(1e-2),
    "elastic_net": nj.elastic_net(1e-2, 1e-2),
}


def _model(reg, dtype):
    return nj.serial(
        nj.dense(12, 8, regularizer=reg, dtype=dtype),
        nj.elu(),
        nj.dense(8, 6, init="lecun", regularizer=reg, dtype=dtype),
        nj.selu(),
        nj.dense(6, 4, init="glorot", regularizer=reg, dtype=dtype),
    )


@pytest.mark.parametrize(
    "loss", [nj.cross_entropy, nj.mse, nj.softmax_mse], ids=lambda loss: loss.name
)
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reg", REGULARIZERS)
def test_loss_and_grad_matches_value_and_grad(reg, dtype, loss):
    model = _model(REGULARIZERS[reg], dtype)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = model.init(k1)
    x = jax.random.normal(k2, (9, 12), dtype)
    y = jax.random.randint(k3, (9,), 0, 4, jnp.int32)

    def objective(p):
        return loss.value(model.apply(p, x), y) + nj.penalty(model, p)

    want_value, want_grads = jax.value_and_grad(objective)(params)
    value, grads = jax.jit(lambda p: nj.loss_and_grad(model, loss, p, x, y))(params)
    assert float(value) == pytest.approx(float(want_value), rel=TOL[dtype])
    assert rel_err(grads, want_grads) <= TOL[dtype]
    assert nj.check_grads(model, loss, params, x, y) <= TOL[dtype]


def test_penalty_changes_the_gradient():
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    plain, reg = _model(None, jnp.float64), _model(nj.l2(0.5), jnp.float64)
    params = plain.init(k1)
    x = jax.random.normal(k2, (5, 12), jnp.float64)
    y = jax.random.randint(k3, (5,), 0, 4, jnp.int32)
    _, g0 = nj.loss_and_grad(plain, nj.cross_entropy, params, x, y)
    _, g1 = nj.loss_and_grad(reg, nj.cross_entropy, params, x, y)
    assert rel_err(g1[0].w, g0[0].w + 2 * 0.5 * params[0].w) <= 1e-12
    assert rel_err(g1[0].b, g0[0].b) == 0.0


def test_check_grads_detects_a_wrong_backward():
    good = nj.dense(4, 3, dtype=jnp.float64)
    broken = nj.Layer(
        good.init,
        good.apply,
        lambda p, x, dy: (nj.DenseParams(1.01 * (x.T @ dy), dy.sum(0)), dy @ p.w.T),
        name="dense with a 1 % error",
    )
    params = good.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 4), jnp.float64)
    y = jnp.array([0, 1, 2, 0, 1, 2], jnp.int32)
    assert nj.check_grads(good, nj.cross_entropy, params, x, y) < 1e-12
    assert nj.check_grads(broken, nj.cross_entropy, params, x, y) > 1e-3
