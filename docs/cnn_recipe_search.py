"""Search for the CNN recipe: train candidate CNNs on MNIST, print a markdown table.

Each candidate trains with `nnrs_jax.fit` on the 60000 training digits (NHWC,
``nj.datasets.mnist(split, flatten=False)``) and is scored with `nnrs_jax.evaluate` on the
10000 test digits (inference mode: running batch-norm statistics, no dropout). ``train s`` is
the wall time of `fit` alone, compilation included; ``cpu s`` the process CPU time over the
same span and ``load`` the 1-minute load average at its end, so that a slow run can be told
from a busy machine.

Usage::

    NNRS_JAX_DATA=/path/to/data python docs/cnn_recipe_search.py --list
    NNRS_JAX_DATA=/path/to/data python docs/cnn_recipe_search.py --only wide_dropout_e10 \\
        --seeds 0 1 2

The results are discussed in ``docs/cnn_recipe.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
from recipe_search import choose

import nnrs_jax as nj


def plain() -> nj.Layer:
    """The benchmark net: conv 1→32, pool, conv 32→64, pool, dense 1600→128→10."""
    return nj.serial(
        nj.conv2d(1, 32, 3), nj.relu(), nj.max_pool(2),
        nj.conv2d(32, 64, 3), nj.relu(), nj.max_pool(2),
        nj.flatten(), nj.dense(1600, 128), nj.relu(), nj.dense(128, 10),
    )  # fmt: skip


def _dropout_net(hidden: int, before: float, after: float) -> nj.Layer:
    """`plain` with ``hidden`` dense units and dropout ``before`` and ``after`` that layer."""
    return nj.serial(
        nj.conv2d(1, 32, 3), nj.relu(), nj.max_pool(2),
        nj.conv2d(32, 64, 3), nj.relu(), nj.max_pool(2),
        nj.flatten(), nj.dropout(before), nj.dense(1600, hidden), nj.relu(), nj.dropout(after),
        nj.dense(hidden, 10),
    )  # fmt: skip


def with_dropout() -> nj.Layer:
    """`plain` with dropout 0.25 before and 0.5 after the 128-unit dense layer."""
    return _dropout_net(128, 0.25, 0.5)


class Candidate(NamedTuple):
    name: str
    model: Callable[[], nj.Layer]
    lr: float = 2e-3
    epochs: int = 8
    batch_size: int = 128
    augment: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    ema: float | None = None
    """Evaluate an exponential moving average of the params with this decay (`nj.ema`)."""


def wide_dropout() -> nj.Layer:
    """`with_dropout` with a 256-unit hidden dense layer: the recipe, ``nj.recipes.cnn``."""
    return nj.recipes.cnn()


def light_dropout() -> nj.Layer:
    """`wide_dropout` with lighter dropout (0.1 and 0.25), for use with augmentation."""
    return _dropout_net(256, 0.1, 0.25)


def batch_norm() -> nj.Layer:
    """`with_dropout` with batch norm after each convolution."""
    return nj.serial(
        nj.conv2d(1, 32, 3), nj.batch_norm(32), nj.relu(), nj.max_pool(2),
        nj.conv2d(32, 64, 3), nj.batch_norm(64), nj.relu(), nj.max_pool(2),
        nj.flatten(), nj.dropout(0.25), nj.dense(1600, 128), nj.relu(), nj.dropout(0.5),
        nj.dense(128, 10),
    )  # fmt: skip


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("plain_e8", plain),
    Candidate("plain_e10", plain, epochs=10),
    Candidate("dropout_e6", with_dropout, epochs=6),
    Candidate("dropout_e8", with_dropout),
    Candidate("dropout_e10", with_dropout, epochs=10),
    Candidate("dropout_e12", with_dropout, epochs=12),
    Candidate("dropout_lr3e-3_e8", with_dropout, lr=3e-3),
    Candidate("dropout_b256_e10", with_dropout, lr=3e-3, epochs=10, batch_size=256),
    Candidate("wide_dropout_e8", wide_dropout),
    Candidate("wide_dropout_e10", wide_dropout, epochs=10),
    Candidate("batch_norm_e8", batch_norm),
    Candidate("batch_norm_e6", batch_norm, epochs=6),
    Candidate("batch_norm_lr1e-3_e8", batch_norm, lr=1e-3),
    Candidate("batch_norm_e10", batch_norm, epochs=10),
    # With in-graph augmentation (nj.augment), on every training batch:
    Candidate("wide_shift1_e10", wide_dropout, epochs=10, augment=nj.augment.random_shift(1)),
    Candidate("wide_shift2_e10", wide_dropout, epochs=10, augment=nj.augment.random_shift(2)),
    Candidate(
        "wide_shift2_rot10_e10",
        wide_dropout,
        epochs=10,
        augment=nj.augment.chain(nj.augment.random_shift(2), nj.augment.random_rotation(10.0)),
    ),
    Candidate("light_shift2_e10", light_dropout, epochs=10, augment=nj.augment.random_shift(2)),
    Candidate(
        "wide_shift2_ema_e10",
        wide_dropout,
        epochs=10,
        augment=nj.augment.random_shift(2),
        ema=0.999,
    ),
    Candidate(
        "wide_shift2_b64_e10",
        wide_dropout,
        epochs=10,
        batch_size=64,
        augment=nj.augment.random_shift(2),
    ),
    Candidate("wide_shift2_e9", wide_dropout, epochs=9, augment=nj.augment.random_shift(2)),
    Candidate(
        "wide_shift2_lr3e-3_e10",
        wide_dropout,
        lr=3e-3,
        epochs=10,
        augment=nj.augment.random_shift(2),
    ),
)


def run(candidate: Candidate, seed: int, data) -> str:
    (x, y), (xt, yt) = data
    model = candidate.model()
    steps = candidate.epochs * (x.shape[0] // candidate.batch_size)
    optimizer = nj.adam(nj.schedules.cosine_decay(candidate.lr, steps))
    if candidate.ema is not None:
        optimizer = nj.ema(optimizer, candidate.ema)
    wall, cpu = time.perf_counter(), time.process_time()
    result = nj.fit(model, nj.cross_entropy, optimizer, x, y, key=jax.random.key(seed),
                    epochs=candidate.epochs, batch_size=candidate.batch_size,
                    augment=candidate.augment, progress=False)  # fmt: skip
    jax.block_until_ready(result.params)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    params = result.params if candidate.ema is None else nj.ema_params(result.opt_state)
    accuracy = nj.evaluate(model, params, xt, yt, state=result.state).accuracy
    load = os.getloadavg()[0]
    return (f"| {candidate.name} | {seed} | {candidate.epochs} | {candidate.lr:g} | "
            f"{100 * accuracy:.2f} | {wall:.0f} | {cpu:.0f} | {load:.1f} |")  # fmt: skip


def describe(c: Candidate) -> str:
    """A one-line summary such as ``plain, lr 0.002, 8 epochs of 128``."""
    return f"{c.model.__name__}, lr {c.lr:g}, {c.epochs} epochs of {c.batch_size}"


def main() -> None:
    """Run the chosen candidates for each seed and print one table row per run."""
    choice = choose(__doc__.splitlines()[0], CANDIDATES, describe)
    if choice is None:
        return
    chosen, seeds = choice
    data = nj.datasets.mnist("train", flatten=False), nj.datasets.mnist("test", flatten=False)
    print("| candidate | seed | epochs | lr | test % | train s | cpu s | load |")
    print("|---|---|---|---|---|---|---|---|")
    for candidate in chosen:
        for seed in seeds:
            print(run(candidate, seed, data), flush=True)


if __name__ == "__main__":
    main()
