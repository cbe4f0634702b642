"""layers/_random.py: the fused Threefry-2x32 bits equal jax.random.bits, key by key."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnrs_jax.layers._random import random_bits, threefry2x32


@pytest.mark.parametrize("shape", [(), (1,), (7,), (128, 1600), (2, 3, 4, 5)], ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2**31 + 5])
def test_equals_jax_random_bits(shape, seed):
    key = jax.random.fold_in(jax.random.key(seed), 17)
    got = jax.jit(random_bits, static_argnums=1)(key, shape)
    assert got.dtype == jnp.uint32 and got.shape == shape
    np.testing.assert_array_equal(got, jax.random.bits(key, shape, jnp.uint32))


def test_legacy_key_and_vmap_over_keys():
    legacy = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(
        random_bits(legacy, (4, 5)), jax.random.bits(legacy, (4, 5), jnp.uint32)
    )
    keys = jax.random.split(jax.random.key(4), 3)
    got = jax.vmap(lambda k: random_bits(k, (6,)))(keys)
    want = jnp.stack([jax.random.bits(k, (6,), jnp.uint32) for k in keys])
    np.testing.assert_array_equal(got, want)


def test_other_key_kinds_fall_back_to_jax():
    key = jax.random.key(5, impl="rbg")
    np.testing.assert_array_equal(random_bits(key, (9,)), jax.random.bits(key, (9,), jnp.uint32))


def test_known_answer():
    # Salmon et al. 2011, Threefry-2x32 with 20 rounds: the published test vector for the key
    # and counter (0x13198a2e 0x03707344, 0x243f6a88 0x85a308d3).
    key = (jnp.uint32(0x13198A2E), jnp.uint32(0x03707344))
    count = (jnp.full((1,), 0x243F6A88, jnp.uint32), jnp.full((1,), 0x85A308D3, jnp.uint32))
    got = [int(v[0]) for v in threefry2x32(key, count)]
    assert got == [0xC4923A9C, 0x483DF7A0]
