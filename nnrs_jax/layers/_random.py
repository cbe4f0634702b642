"""Random bits for masks: JAX's Threefry-2x32 bits, computed as one fused element-wise kernel.

`random_bits` returns the same uint32 array as ``jax.random.bits(key, shape, jnp.uint32)`` for a
Threefry key (JAX's default) with ``jax_threefry_partitionable`` on (JAX's default): word ``i``
(row-major index) is ``a ^ b`` for ``(a, b) = Threefry-2x32(key, (i >> 32, i & 0xFFFFFFFF))``.
JAX's CPU lowering runs the hash's 20 rounds as a rolled loop of separate kernels, each reading
and writing the whole array; written out round by round, XLA fuses the hash into one pass,
about 5× faster for a dropout mask (128×1600 words: 0.35 ms against 1.8 ms on a 2-core CPU).
Other keys (``rbg``, ``philox``), the other bit layout and arrays of 2³² words or more fall back
to ``jax.random.bits``.

Reference: Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3"
(Threefry-2x32, 20 rounds, rotations 13 15 26 6 / 17 29 16 24, key-schedule parity 0x1BD11BDA).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(v: jax.Array, r: int) -> jax.Array:
    return lax.shift_left(v, np.uint32(r)) | lax.shift_right_logical(v, np.uint32(32 - r))


def threefry2x32(
    key: tuple[jax.Array, jax.Array], count: tuple[jax.Array, jax.Array]
) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 (20 rounds) of the uint32 word pairs ``count`` under the uint32 pair ``key``.

    ``count`` words share one shape; ``key`` words are scalars. Returns two uint32 arrays of
    that shape.
    """
    schedule = (key[0], key[1], key[0] ^ key[1] ^ PARITY)
    x0, x1 = count[0] + schedule[0], count[1] + schedule[1]
    for group in range(5):
        for r in ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = _rotate_left(x1, r) ^ x0
        x0 = x0 + schedule[(group + 1) % 3]
        x1 = x1 + schedule[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def _threefry_words(key: Any) -> jax.Array | None:
    """The key's two uint32 words, or None where `random_bits` must use ``jax.random.bits``."""
    if not jax.config.jax_threefry_partitionable:
        return None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key) if jax.random.key_impl(key) == "threefry2x32" else None
    return key if jax.config.jax_default_prng_impl == "threefry2x32" else None


def random_bits(key: Any, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.bits(key, shape, jnp.uint32)``, fused into one pass for Threefry keys.

    Args:
        key: a typed PRNG key (``jax.random.key``) or a legacy uint32 ``(2,)`` key, unbatched
            (``vmap`` over keys works as for ``jax.random.bits``).
        shape: the shape of the result.

    Returns:
        uint32 array of ``shape``.
    """
    words = _threefry_words(key)
    size = math.prod(shape)
    if words is None or size >= 2**32:
        return jax.random.bits(key, shape, jnp.uint32)
    index = lax.iota(jnp.uint32, size)
    high, low = threefry2x32((words[0], words[1]), (jnp.zeros_like(index), index))
    return (high ^ low).reshape(shape)
