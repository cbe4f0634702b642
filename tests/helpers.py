"""Small utilities shared by the tests."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax.layers.check import relative_error


def rel_err(a, b) -> float:
    """Largest `relative_error` ``max|a − b| / max|b|`` over matching leaves (check_layer's)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.shape(x) == np.shape(y)
        worst = max(worst, relative_error(x, y))
    return worst


TOL = {jnp.float64: 1e-10, jnp.float32: 1e-5}


def take(tree, i: int):
    """Entry ``i`` of every leaf: one model's tree out of a stacked one."""
    return jax.tree.map(lambda x: x[i], tree)


def check_vmap_equals_loop(opt, steps: int):
    """Four models updated under ``jax.vmap`` equal four separate runs of ``opt``, leaf for leaf.

    Float64 params and gradients from a fixed NumPy seed; returns the stacked final state.
    """
    import chex

    from nnrs_jax.optim import apply_updates

    rng = np.random.default_rng(3)
    stacked = {
        "w": jnp.asarray(rng.normal(size=(4, 3, 4))),
        "b": jnp.asarray(rng.normal(size=(4, 4))),
    }
    grads = [
        {k: jnp.asarray(rng.normal(size=v.shape)) for k, v in stacked.items()} for _ in range(steps)
    ]

    def step(p, state, g):
        updates, state = opt.update(g, state, p)
        return apply_updates(p, updates), state

    vstep = jax.jit(jax.vmap(step))
    p, state = stacked, jax.vmap(opt.init)(stacked)
    for g in grads:
        p, state = vstep(p, state, g)
    one_step = jax.jit(step)
    for i in range(4):
        p_i, state_i = take(stacked, i), opt.init(take(stacked, i))
        for g in grads:
            p_i, state_i = one_step(p_i, state_i, take(g, i))
        chex.assert_trees_all_close(p_i, take(p, i), rtol=1e-13)
        chex.assert_trees_all_close(state_i, take(state, i), rtol=1e-13)
    return state


def check_vmap_and_scan(layer, params, xs, dys, reference) -> None:
    """``layer.backward`` under jitted ``vmap`` and ``lax.scan`` equals ``reference`` per input.

    ``xs``, ``dys``: inputs and output gradients stacked on a leading axis; ``params`` shared.
    ``reference(params, x, dy)`` gives one input's expected ``(dparams, dx)`` (float64: 1e-10).
    """
    want = [reference(params, x, dy) for x, dy in zip(xs, dys)]
    want = jax.tree.map(lambda *leaves: jnp.stack(leaves), *want)
    got_vmap = jax.jit(jax.vmap(layer.backward, in_axes=(None, 0, 0)))(params, xs, dys)
    assert rel_err(got_vmap, want) <= 1e-10

    def body(carry, inputs):
        return carry, layer.backward(params, *inputs)

    _, got_scan = jax.jit(lambda xs, dys: jax.lax.scan(body, None, (xs, dys)))(xs, dys)
    assert rel_err(got_scan, want) <= 1e-10


# Not @jax.jit(static_argnums=0): jax before 0.8.1 rejects that decorator form.
@functools.partial(jax.jit, static_argnums=0)
def vjp_of_apply(apply, x, dy):
    """``(dparams, dx)`` of a parameterless ``apply((), x)`` by ``jax.vjp``, jitted."""
    _, pullback = jax.vjp(apply, (), x)
    return pullback(dy)


def toy_classes(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` points in 6-D and 3 classes read off two coordinates: a quick training set."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return x, y


def assert_trees_equal(a, b) -> None:
    """Bit for bit, leaf by leaf; PRNG keys compared by their data."""

    def host(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        return np.asarray(leaf)

    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(host(u), host(v))


def fenced_blocks(path, lang: str) -> list[str]:
    """The fenced code blocks of a markdown file whose opening fence names ``lang``."""
    blocks, current, fence = [], [], None
    for line in Path(path).read_text().splitlines():
        if fence is None and line.startswith("```"):
            fence, current = line[3:].strip(), []
        elif fence is not None and line.startswith("```"):
            if fence == lang:
                blocks.append("\n".join(current) + "\n")
            fence = None
        elif fence is not None:
            current.append(line)
    return blocks
