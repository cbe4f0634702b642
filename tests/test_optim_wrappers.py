"""`accumulate` and `ema` beyond the rule: large-batch equivalence, reading and saving the average.

``pytest tests/test_optim_wrappers.py -s -k large_batch`` prints the accumulation figure.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnrs_jax as nj
from nnrs_jax.optim import (
    AccumulateState,
    EmaState,
    Optimizer,
    accumulate,
    adam,
    apply_updates,
    chain,
    ema,
    ema_params,
    momentum,
    nadam,
    sgd,
)

EVERY, BATCH, BIG_STEPS = 4, 8, 10


def _model() -> nj.Layer:
    return nj.serial(
        nj.dense(5, 16, dtype=jnp.float64, regularizer=nj.l2(1e-3)),
        nj.tanh(),
        nj.dense(16, 3, dtype=jnp.float64),
    )


def _data() -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    n = EVERY * BATCH * BIG_STEPS
    x = rng.normal(size=(n, 5))
    y = rng.integers(0, 3, size=n).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.parametrize(
    "make",
    [lambda: sgd(0.5), lambda: momentum(0.1), lambda: adam(1e-2)],
    ids=["sgd", "momentum", "adam"],
)
def test_accumulated_small_batches_equal_one_large_batch(make: Callable[[], Optimizer]) -> None:
    """k mini-batches of B rows through accumulate(opt, k) = opt on one batch of k·B, float64."""
    model, loss = _model(), nj.cross_entropy
    x, y = _data()
    start = model.init(jax.random.key(1))
    grad = jax.jit(lambda p, xb, yb: nj.loss_and_grad(model, loss, p, xb, yb)[1])
    large, small = make(), accumulate(make(), every=EVERY)
    large_update, small_update = jax.jit(large.update), jax.jit(small.update)
    p_large, s_large = start, large.init(start)
    p_small, s_small = start, small.init(start)
    worst = 0.0
    for big in range(BIG_STEPS):
        rows = slice(big * EVERY * BATCH, (big + 1) * EVERY * BATCH)
        updates, s_large = large_update(grad(p_large, x[rows], y[rows]), s_large, p_large)
        p_large = apply_updates(p_large, updates)
        for micro in range(EVERY):
            lo = big * EVERY * BATCH + micro * BATCH
            before = (p_small, s_small.inner)
            g = grad(p_small, x[lo : lo + BATCH], y[lo : lo + BATCH])
            updates, s_small = small_update(g, s_small, p_small)
            p_small = apply_updates(p_small, updates)
            if micro < EVERY - 1:  # between applied updates: nothing moves
                assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
                chex.assert_trees_all_equal((p_small, s_small.inner), before)
        assert int(s_small.timestep) == (big + 1) * EVERY
        assert all(bool(jnp.all(s == 0)) for s in jax.tree.leaves(s_small.grad_sum))
        worst = max(
            worst,
            max(
                float(jnp.max(jnp.abs(a - b)))
                for a, b in zip(jax.tree.leaves(p_small), jax.tree.leaves(p_large), strict=True)
            ),
        )
    moved = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(p_large), jax.tree.leaves(start), strict=True)
    )
    print(
        f"\naccumulate({EVERY}) x batch {BATCH} vs batch {EVERY * BATCH}, {BIG_STEPS} updates: "
        f"max |Δparams| = {worst:.2e} (params moved by up to {moved:.2e})"
    )
    assert moved > 1e-2
    assert worst <= 1e-13
    chex.assert_trees_all_close(s_small.inner, s_large, rtol=1e-12, atol=1e-15)


def test_every_one_is_the_inner_optimizer_bit_for_bit() -> None:
    rng = np.random.default_rng(2)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)))}
    opt, wrapped = nadam(1e-2), accumulate(nadam(1e-2), every=1)
    state, wrapped_state = opt.init(params), wrapped.init(params)
    for _ in range(5):
        g = {"w": jnp.asarray(rng.normal(size=(3, 4)))}
        updates, state = opt.update(g, state, params)
        wrapped_updates, wrapped_state = wrapped.update(g, wrapped_state, params)
        chex.assert_trees_all_equal(updates, wrapped_updates)
    chex.assert_trees_all_equal(wrapped_state.inner, state)


def test_ema_starts_at_the_params_and_decay_zero_follows_them() -> None:
    params = {"w": jnp.array([1.0, 2.0])}
    opt = ema(sgd(0.5), decay=0.0)
    state = opt.init(params)
    chex.assert_trees_all_equal(ema_params(state), params)
    for _ in range(3):
        updates, state = opt.update({"w": jnp.array([1.0, -1.0])}, state, params)
        params = apply_updates(params, updates)
        chex.assert_trees_all_equal(ema_params(state), params)
    assert int(state.timestep) == 3 and int(state.inner.timestep) == 3


def test_ema_leaves_the_updates_of_the_optimizer_unchanged() -> None:
    params = {"w": jnp.array([1.0, 2.0])}
    opt, wrapped = adam(0.1), ema(adam(0.1), decay=0.9)
    state, wrapped_state = opt.init(params), wrapped.init(params)
    for g in ([1.0, -1.0], [0.5, 2.0]):
        updates, state = opt.update({"w": jnp.array(g)}, state, params)
        wrapped_updates, wrapped_state = wrapped.update({"w": jnp.array(g)}, wrapped_state, params)
        chex.assert_trees_all_equal(updates, wrapped_updates)
        params = apply_updates(params, updates)


def test_ema_params_finds_the_average_or_says_why_not() -> None:
    params = {"w": jnp.ones(2)}
    nested = accumulate(ema(sgd(0.1), decay=0.9), every=2).init(params)
    assert isinstance(nested, AccumulateState) and isinstance(nested.inner, EmaState)
    chex.assert_trees_all_equal(ema_params(nested), params)
    with pytest.raises(ValueError, match="found 0 in opt_state of type AdamState"):
        ema_params(adam(0.1).init(params))
    two = chain(ema(sgd(0.1), 0.9), ema(sgd(0.1), 0.9)).init(params)
    with pytest.raises(
        ValueError, match=r"exactly one EmaState .* found 2 in opt_state of type tuple"
    ):
        ema_params(two)


def test_ema_params_keeps_the_model_axis_under_vmap() -> None:
    opt = ema(adam(0.1), decay=0.9)
    stacked = {"w": jnp.arange(6.0).reshape(3, 2)}
    state = jax.vmap(opt.init)(stacked)
    assert ema_params(state)["w"].shape == (3, 2)


def test_ema_needs_params() -> None:
    opt = ema(sgd(0.1), decay=0.9)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="ema: update needs params"):
        opt.update(params, opt.init(params))


def test_average_and_partial_sums_survive_a_checkpoint(tmp_path) -> None:
    """Saved with the optimizer state and restored exactly: resuming continues the same run."""
    opt = accumulate(ema(adam(0.05), decay=0.8), every=3)
    rng = np.random.default_rng(4)
    params = {"w": jnp.asarray(rng.normal(size=(2, 3))), "b": jnp.zeros(3)}
    grads = [
        {"w": jnp.asarray(rng.normal(size=(2, 3))), "b": jnp.asarray(rng.normal(size=3))}
        for _ in range(10)
    ]
    step = jax.jit(lambda p, s, g: (lambda u, s: (apply_updates(p, u), s))(*opt.update(g, s, p)))
    state = opt.init(params)
    for g in grads[:5]:  # mid-accumulation: two gradients pending
        params, state = step(params, state, g)
    nj.save(tmp_path / "ckpt.npz", params, state)
    restored = nj.load(tmp_path / "ckpt.npz", params=params, opt_state=opt.init(params))
    chex.assert_trees_all_equal(restored.opt_state, state)
    resumed_params, resumed_state = restored.params, restored.opt_state
    for g in grads[5:]:
        params, state = step(params, state, g)
        resumed_params, resumed_state = step(resumed_params, resumed_state, g)
    chex.assert_trees_all_equal((resumed_params, resumed_state), (params, state))
    assert not np.allclose(ema_params(state)["w"], params["w"])
