"""serial and residual under the layer contract: state trees, per-child keys, nesting, a
user-written plain layer among context layers, and whole models with dense, batch_norm, dropout,
residual and relu checked against jax.vjp / jax.grad (float64 and float32, jit, vmap, scan)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import TOL, rel_err

import nnrs_jax as nj


def _double() -> nj.Layer:
    """A user-written plain layer of the original two-function contract."""
    return nj.Layer(lambda key: (), lambda p, x: 2.0 * x, lambda p, x, g: ((), 2.0 * g))


def _mixed(dtype) -> nj.Layer:
    """dense, relu, batch_norm, a residual block with dropout inside, dropout, dense."""
    block = nj.serial(
        nj.dense(8, 8, dtype=dtype), nj.relu(), nj.batch_norm(8, dtype=dtype), nj.dropout(0.3)
    )
    return nj.serial(
        nj.dense(6, 8, dtype=dtype),
        nj.relu(),
        nj.batch_norm(8, dtype=dtype),
        nj.residual(block),
        nj.dropout(0.2),
        nj.dense(8, 3, dtype=dtype),
    )


def _data(dtype, seed=0, batch=12):
    k_x, k_dy = jax.random.split(jax.random.key(50 + seed))
    x = 1.0 + jax.random.normal(k_x, (batch, 6), dtype)
    dy = jax.random.normal(k_dy, (batch, 3), dtype)
    return x, dy


def _reference(model, params, x, dy, **context):
    _, vjp = jax.vjp(lambda p, a: nj.forward(model, p, a, **context)[0], params, x)
    return vjp(dy)


def _nontrivial_state(model, key):
    """``model.init_state()`` with every running mean and variance moved off 0 and 1."""
    leaves, tree = jax.tree.flatten(model.init_state())
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + 0.5 * jax.random.uniform(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)
    ]
    return jax.tree.unflatten(tree, leaves)


def test_serial_init_state_tree_and_has_state(key):
    model = nj.serial(
        nj.dense(3, 4), nj.batch_norm(4), nj.dropout(0.5), nj.serial(nj.batch_norm(4), nj.relu())
    )
    state = model.init_state()
    assert isinstance(state, tuple) and len(state) == 4
    assert state[0] == () and state[2] == ()
    assert isinstance(state[1], nj.BatchNormState) and isinstance(state[3][0], nj.BatchNormState)
    assert state[3][1] == ()
    assert nj.has_state(model)
    assert nj.has_state(nj.residual(nj.batch_norm(4)))
    assert not nj.has_state(nj.serial(nj.dense(3, 4), nj.relu(), nj.dropout(0.5)))
    assert not nj.has_state(nj.residual(nj.dense(4, 4)))


def test_serial_returns_each_childs_new_state(key):
    bn1, bn2 = nj.batch_norm(4, dtype=jnp.float64), nj.batch_norm(4, dtype=jnp.float64)
    model = nj.serial(nj.dense(3, 4, dtype=jnp.float64), bn1, nj.relu(), nj.serial(bn2))
    params, state = model.init(key), model.init_state()
    x = jax.random.normal(key, (5, 3), jnp.float64)
    y, new_state = nj.forward(model, params, x, state=state, train=True)

    h = nj.dense(3, 4).apply(params[0], x)
    h, s1 = nj.forward(bn1, params[1], h, state=state[1], train=True)
    h = jnp.maximum(h, 0.0)
    h, s2 = nj.forward(bn2, params[3][0], h, state=state[3][0], train=True)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert rel_err(new_state, ((), s1, (), (s2,))) == 0.0
    assert rel_err(y, h) == 0.0
    # Inference leaves the state as it was.
    _, same = nj.forward(model, params, x, state=state)
    assert rel_err(same, state) == 0.0


def test_serial_gives_child_i_key_split_i(key):
    drop1, drop2 = nj.dropout(0.5), nj.dropout(0.3)
    d1, d2 = nj.dense(3, 40, dtype=jnp.float64), nj.dense(40, 40, dtype=jnp.float64)
    model = nj.serial(d1, drop1, d2, drop2)
    params = model.init(key)
    x = jax.random.normal(key, (4, 3), jnp.float64)
    dy = jax.random.normal(jax.random.key(9), (4, 40), jnp.float64)
    keys = jax.random.split(key, 4)

    h1 = d1.apply(params[0], x)
    h2 = drop1.apply((), h1, key=keys[1], train=True)
    h3 = d2.apply(params[2], h2)
    y = drop2.apply((), h3, key=keys[3], train=True)
    np.testing.assert_array_equal(model.apply(params, x, key=key, train=True), y)

    _, g3 = drop2.backward((), h3, dy, key=keys[3], train=True)
    gp2, g2 = d2.backward(params[2], h2, g3)
    _, g1 = drop1.backward((), h1, g2, key=keys[1], train=True)
    gp0, g0 = d1.backward(params[0], x, g1)
    got = model.backward(params, x, dy, key=key, train=True)
    assert rel_err(got, ((gp0, (), gp2, ()), g0)) == 0.0
    # A different key draws different masks.
    other = model.apply(params, x, key=jax.random.key(1), train=True)
    assert not np.array_equal(np.asarray(other) == 0, np.asarray(y) == 0)


def test_nested_serial_and_residual_split_keys_and_thread_state(key):
    f64 = jnp.float64
    bn, drop_in, dense_in = nj.batch_norm(4, dtype=f64), nj.dropout(0.5), nj.dense(4, 4, dtype=f64)
    drop_out, first = nj.dropout(0.25), nj.dense(4, 4, dtype=f64)
    model = nj.serial(first, nj.residual(nj.serial(bn, drop_in, dense_in)), drop_out)
    params, state = model.init(key), model.init_state()
    assert jax.tree.structure(state) == jax.tree.structure(((), (bn.init_state(), (), ()), ()))
    x = jax.random.normal(key, (6, 4), f64)
    outer = jax.random.split(key, 3)
    inner = jax.random.split(outer[1], 3)  # residual hands its key to its block unchanged

    h = first.apply(params[0], x)
    b, s_bn = nj.forward(bn, params[1][0], h, state=state[1][0], train=True)
    b = drop_in.apply((), b, key=inner[1], train=True)
    b = dense_in.apply(params[1][2], b)
    want = drop_out.apply((), h + b, key=outer[2], train=True)
    y, new_state = nj.forward(model, params, x, state=state, key=key, train=True)
    assert rel_err(y, want) == 0.0
    assert rel_err(new_state, ((), (s_bn, (), ()), ())) == 0.0

    report = nj.check_layer(model, x, params=params, key=key, state=state, train=True, rtol=1e-10)
    assert report.ok, str(report)


def test_residual_adds_the_skip_connection(key):
    block = nj.serial(nj.dense(5, 5, dtype=jnp.float64), nj.tanh())
    model = nj.residual(block)
    params = model.init(key)
    x = jax.random.normal(key, (3, 5), jnp.float64)
    np.testing.assert_array_equal(model.apply(params, x), x + block.apply(params, x))
    report = nj.check_layer(model, x, params=params, key=jax.random.key(4), rtol=1e-10)
    assert report.ok, str(report)
    dy = jax.random.normal(jax.random.key(4), (3, 5), jnp.float64)
    got = model.backward(params, x, dy)
    grads_block, dx_block = block.backward(params, x, dy)
    assert rel_err(got, (grads_block, dy + dx_block)) == 0.0
    assert model.name == "residual(serial(dense(5, 5), tanh))"


def test_residual_penalty_is_the_blocks(key):
    inner = nj.dense(4, 4, regularizer=nj.l2(0.1), dtype=jnp.float64)
    model = nj.serial(nj.residual(inner), nj.dense(4, 2, regularizer=nj.l1(0.2), dtype=jnp.float64))
    params = model.init(key)
    value, grads = model.penalty(params)
    want = 0.1 * jnp.sum(params[0].w ** 2) + 0.2 * jnp.sum(jnp.abs(params[1].w))
    np.testing.assert_allclose(value, want, rtol=1e-14)
    assert rel_err(grads[0], inner.penalty(params[0])[1]) == 0.0


def test_user_plain_layer_among_context_layers(key):
    double = _double()
    x = jax.random.normal(key, (5, 3), jnp.float64)
    # Called directly, the keywords are accepted and ignored.
    y, state = nj.forward(double, (), x, state=(), key=key, train=True)
    assert rel_err(y, 2.0 * x) == 0.0 and state == ()
    assert rel_err(nj.backward(double, (), x, x, key=key, train=True), ((), 2.0 * x)) == 0.0

    model = nj.serial(
        double,
        nj.batch_norm(3, dtype=jnp.float64),
        nj.dropout(0.4),
        nj.dense(3, 2, dtype=jnp.float64),
    )
    params, state = model.init(key), model.init_state()
    dy = jax.random.normal(jax.random.key(5), (5, 2), jnp.float64)
    for train in (True, False):
        context = dict(state=state, key=key, train=train)
        y, new_state = nj.forward(model, params, x, **context)
        assert y.shape == (5, 2)
        assert jax.tree.structure(new_state) == jax.tree.structure(state)
        report = nj.check_layer(model, x, params=params, rtol=1e-10, **context)
        assert report.ok, str(report)
        got = nj.backward(model, params, x, dy, **context)
        got_jit = jax.jit(
            lambda p, a, s, k, t=train: nj.backward(model, p, a, dy, state=s, key=k, train=t)
        )(params, x, state, key)
        assert rel_err(got_jit, got) <= 1e-12


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
def test_mixed_model_backward_matches_vjp(train, dtype, key):
    model = _mixed(dtype)
    params = model.init(key)
    state = _nontrivial_state(model, jax.random.key(7))
    x, dy = _data(dtype)
    context = dict(state=state, key=jax.random.key(3), train=train)
    report = nj.check_layer(model, x, params=params, rtol=TOL[dtype], **context)
    assert report.ok, str(report)
    got = nj.backward(model, params, x, dy, **context)
    assert jax.tree.structure(got[0]) == jax.tree.structure(params)
    assert all(g.dtype == dtype for g in jax.tree.leaves(got))


@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
def test_mixed_model_check_grads(train, key):
    targets = jnp.arange(12) % 3
    for dtype, tol in [(jnp.float64, 1e-10), (jnp.float32, 1e-5)]:
        model = _mixed(dtype)
        params = model.init(key)
        state = _nontrivial_state(model, jax.random.key(7))
        x, _ = _data(dtype)
        err = nj.check_grads(
            model, nj.cross_entropy, params, x, targets, state=state, key=key, train=train
        )
        assert err < tol, (dtype, err)


def test_mixed_model_under_jit_vmap_and_scan(key):
    model = _mixed(jnp.float64)
    params, state = model.init(key), _nontrivial_state(model, jax.random.key(7))
    data = [_data(jnp.float64, seed) for seed in range(3)]
    xs, dys = jnp.stack([d[0] for d in data]), jnp.stack([d[1] for d in data])
    keys = jax.random.split(jax.random.key(11), 3)

    def step(s, x, dy, k):
        _, new_s = nj.forward(model, params, x, state=s, key=k, train=True)
        return new_s, nj.backward(model, params, x, dy, state=s, key=k, train=True)

    # The reference: a Python loop threading the state, each step's gradient from jax.vjp.
    # Compiled once, run six times below.
    reference = jax.jit(
        lambda x, dy, s, k: _reference(model, params, x, dy, state=s, key=k, train=True)
    )
    new_state = jax.jit(lambda x, s, k: nj.forward(model, params, x, state=s, key=k, train=True)[1])
    states, want = [state], []
    for x, dy, k in zip(xs, dys, keys):
        want.append(reference(x, dy, states[-1], k))
        states.append(new_state(x, states[-1], k))
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *want)

    got_state, got_grads = jax.jit(step)(state, xs[0], dys[0], keys[0])
    assert rel_err(got_grads, want[0]) <= 1e-10
    assert rel_err(got_state, states[1]) <= 1e-12

    got_scan_state, got_scan = jax.lax.scan(
        lambda c, inputs: step(c, *inputs), state, (xs, dys, keys)
    )
    assert rel_err(got_scan, stacked) <= 1e-10
    assert rel_err(got_scan_state, states[-1]) <= 1e-12

    # vmap: the same starting state for every batch, a key and a batch each.
    want_vmap = [reference(x, dy, state, k) for x, dy, k in zip(xs, dys, keys)]
    want_vmap = jax.tree.map(lambda *leaves: jnp.stack(leaves), *want_vmap)
    _, got_vmap = jax.vmap(step, in_axes=(None, 0, 0, 0))(state, xs, dys, keys)
    assert rel_err(got_vmap, want_vmap) <= 1e-10


def test_output_shape_of_a_model_with_state():
    model = nj.serial(
        nj.dense(6, 8),
        nj.batch_norm(8),
        nj.dropout(0.5),
        nj.residual(nj.dense(8, 8)),
        nj.dense(8, 3),
    )
    assert nj.output_shape(model, (5, 6)) == (5, 3)
    assert nj.output_shape(nj.serial(nj.batch_norm(2), _double()), (7, 3, 2)) == (7, 3, 2)


def test_serial_errors_name_the_child_and_the_fix(key):
    model = _mixed(jnp.float32)
    params, state = model.init(key), model.init_state()
    x, _ = _data(jnp.float32)
    with pytest.raises(TypeError, match=r"dropout\(0\.3\): training needs a PRNG key; pass key="):
        model.apply(params, x, state=state, train=True)
    with pytest.raises(
        TypeError, match=r"batch_norm\(8\): needs its state .*state=model\.init_state"
    ):
        model.apply(params, x, key=key, train=True)
    with pytest.raises(TypeError, match=r"state must be a tuple of 6 entries .*got 2 entries"):
        model.apply(params, x, state=state[:2])
    with pytest.raises(TypeError, match=r"state must be a tuple of 6 entries .*got list"):
        model.apply(params, x, state=list(state))
    with pytest.raises(TypeError, match=r"params must be a tuple of 6 entries .*got 5 entries"):
        model.apply(params[:5], x, state=state)
    with pytest.raises(
        ValueError, match=r"dense\(6, 8\): x must have shape \(batch, 6\), got \(12, 5\)"
    ):
        model.apply(params, x[:, :5], state=state)


def test_residual_errors(key):
    with pytest.raises(TypeError, match=r"residual: argument 0 must be a Layer .*got function"):
        nj.residual(nj.relu)
    model = nj.residual(nj.dense(4, 3))
    with pytest.raises(
        ValueError,
        match=r"residual\(dense\(4, 3\)\): the block must keep its input's shape \(2, 4\), "
        r"got output shape \(2, 3\)",
    ):
        model.apply(model.init(key), jnp.ones((2, 4), jnp.float32))
