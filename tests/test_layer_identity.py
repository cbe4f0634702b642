"""Equal layers: built from equal arguments (nj.layer_factory) or from the same functions, they
compare and hash equal, so a rebuilt model reuses the compiled init, step and epoch."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np

import nnrs_jax as nj


def _mlp(hidden: int = 8) -> nj.Layer:
    return nj.serial(nj.dense(6, hidden, regularizer=nj.l2(1e-4)), nj.relu(), nj.dense(hidden, 3))


def test_built_in_layers_compare_by_configuration():
    assert _mlp() == _mlp() and hash(_mlp()) == hash(_mlp())
    assert nj.dense(6, 8) == nj.dense(6, 8, init="he", dtype=jnp.float32)  # defaults bound
    assert _mlp(8) != _mlp(9)
    assert nj.dense(6, 8, regularizer=nj.l2(1e-4)) != nj.dense(6, 8, regularizer=nj.l2(2e-4))
    assert nj.leaky_relu(0.1) != nj.leaky_relu(0.2) and nj.relu() != nj.tanh()
    assert nj.residual(nj.dense(4, 4)) == nj.residual(nj.dense(4, 4))
    assert nj.dropout(0.5) == nj.dropout(0.5) and nj.batch_norm(4) == nj.batch_norm(4)
    assert len({_mlp(), _mlp(), _mlp(9)}) == 2


def _square(p, x):
    return x * x


def _square_backward(p, x, dy):
    return (), 2 * x * dy


def test_user_layers_compare_by_their_functions():
    a = nj.Layer(nj.no_params, _square, _square_backward, name="square")
    b = nj.Layer(nj.no_params, _square, _square_backward, name="square")
    assert a == b and hash(a) == hash(b)
    assert a != nj.Layer(nj.no_params, _square, _square_backward, name="other name")
    # New closures are new functions: compared by identity.
    assert nj.Layer(nj.no_params, lambda p, x: x, lambda p, x, dy: ((), dy)) != nj.Layer(
        nj.no_params, lambda p, x: x, lambda p, x, dy: ((), dy)
    )


def test_an_unhashable_argument_falls_back_to_identity():
    @nj.layer_factory
    def shift(offset):
        return nj.Layer(nj.no_params, lambda p, x: x + offset, lambda p, x, dy: ((), dy))

    layer = shift(np.ones(3))
    assert layer == layer and layer != shift(np.ones(3))
    assert shift(1.0) == shift(1.0)


TRACES: collections.Counter = collections.Counter()


@nj.layer_factory
def counted_dense(n_in: int, n_out: int) -> nj.Layer:
    """A dense layer that counts how often its init and apply are traced (= compiled)."""
    inner = nj.dense(n_in, n_out)

    def init(key):
        TRACES["init"] += 1
        return inner.init(key)

    def apply(params, x):
        TRACES["apply"] += 1
        return inner.apply(params, x)

    def backward(params, x, grad_y):
        return inner.backward(params, x, grad_y)

    return nj.Layer(init, apply, backward, name="counted_dense")


def test_a_rebuilt_model_reuses_the_compiled_init_and_epoch():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, size=64), jnp.int32)
    TRACES.clear()
    results, traces = [], []
    for _ in range(2):  # a notebook cell run twice: the model and optimizer built anew
        model = nj.serial(counted_dense(6, 8), nj.relu(), nj.dense(8, 3))
        fitted = nj.fit(
            model, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0), epochs=2,
            batch_size=16, progress=False,
        )  # fmt: skip
        results.append(fitted)
        traces.append(dict(TRACES))
    assert traces[0]["init"] == 1 and traces[0]["apply"] >= 1
    assert traces[1] == traces[0], f"recompiled: {traces[0]} -> {traces[1]}"
    np.testing.assert_array_equal(results[0].history["loss"], results[1].history["loss"])
