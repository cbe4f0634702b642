"""Search for the fast recipe: small CNNs that reach 99 % MNIST test accuracy within seconds.

Each candidate is trained and scored as ``docs/image_search.py`` describes (Adam,
cosine-decayed; ``train s`` is the wall time of `fit`, compilation included). Each row compiles
its own program: no compilation cache is used.

Usage::

    NNRS_JAX_DATA=/path/to/data python docs/fast_recipe_search.py --list
    NNRS_JAX_DATA=/path/to/data python docs/fast_recipe_search.py --only c16c32_b64_e2 --seeds 0

The results are discussed in ``docs/fast_recipe.md``.
"""

from __future__ import annotations

import functools

from image_search import Candidate, search

import nnrs_jax as nj


def small_cnn(c1: int, c2: int, hidden: int, dropout: float = 0.0) -> nj.Layer:
    """conv 3×3 1→c1, ReLU, pool 2, conv 3×3 c1→c2, ReLU, pool 2, dense → hidden → 10."""
    head = [nj.dropout(dropout)] if dropout else []
    return nj.serial(
        nj.conv2d(1, c1, 3), nj.relu(), nj.max_pool(2),
        nj.conv2d(c1, c2, 3), nj.relu(), nj.max_pool(2),
        nj.flatten(), *head, nj.dense(25 * c2, hidden), nj.relu(), nj.dense(hidden, 10),
    )  # fmt: skip


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("c16c32_b64_e2", functools.partial(small_cnn, 16, 32, 128), 2e-3, 2, 64),
    Candidate("c16c32_b64_lr3e-3_e2", functools.partial(small_cnn, 16, 32, 128), 3e-3, 2, 64),
    Candidate("c16c32_b128_lr3e-3_e2", functools.partial(small_cnn, 16, 32, 128), 3e-3, 2, 128),
    Candidate("c16c32_b64_e3", functools.partial(small_cnn, 16, 32, 128), 2e-3, 3, 64),
    Candidate("c16c32_b64_warm_e2", functools.partial(small_cnn, 16, 32, 128), 3e-3, 2, 64,
              warmup=0.2),
    Candidate("c32c64_b128_e1", functools.partial(small_cnn, 32, 64, 128), 3e-3, 1, 128),
    Candidate("c16c32_drop_b64_e2", functools.partial(small_cnn, 16, 32, 128, 0.25), 2e-3, 2,
              64),
    Candidate("c16c32_b64_shift1_e3", functools.partial(small_cnn, 16, 32, 128), 2e-3, 3, 64,
              shift=1),
    Candidate("c16c32_b64_warm_shift1_e3", functools.partial(small_cnn, 16, 32, 128), 3e-3, 3,
              64, warmup=0.2, shift=1),
    Candidate("c16c32_b64_warm1_shift1_e3", functools.partial(small_cnn, 16, 32, 128), 3e-3, 3,
              64, warmup=1, shift=1),
    Candidate("c16c32_b32_warm1_shift1_e2", functools.partial(small_cnn, 16, 32, 128), 2e-3, 2,
              32, warmup=1, shift=1),
    Candidate("c16c32_b64_warm_shift1_e2", functools.partial(small_cnn, 16, 32, 128), 3e-3, 2,
              64, warmup=0.2, shift=1),
    Candidate("c8c16_b64_e3", functools.partial(small_cnn, 8, 16, 64), 2e-3, 3, 64),
    Candidate("c12c24_b32_warm1_shift1_e2", functools.partial(small_cnn, 12, 24, 128), 2e-3, 2,
              32, warmup=1, shift=1),
    Candidate("c16c24_b32_warm1_shift1_e2", functools.partial(small_cnn, 16, 24, 128), 2e-3, 2,
              32, warmup=1, shift=1),
    Candidate("c8c16_b32_warm1_shift1_e2", functools.partial(small_cnn, 8, 16, 128), 2e-3, 2,
              32, warmup=1, shift=1),
    Candidate("c16c32_b64_warm1_shift1_e2", functools.partial(small_cnn, 16, 32, 128), 2e-3, 2,
              64, warmup=1, shift=1),
    Candidate("c16c32h64_b32_warm1_shift1_e2", functools.partial(small_cnn, 16, 32, 64), 2e-3,
              2, 32, warmup=1, shift=1),
    Candidate("c24c48_b128_e2", functools.partial(small_cnn, 24, 48, 128), 3e-3, 2, 128),
)  # fmt: skip


if __name__ == "__main__":
    search(__doc__.splitlines()[0], CANDIDATES)
