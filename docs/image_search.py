"""What the searches over image models share: a candidate, one training run, the table.

A candidate is a model builder and its training settings: Adam with the learning rate
cosine-decayed to 0 (after a linear warm-up of ``warmup`` epochs where given), random shifts
of up to ``shift`` pixels on every training batch where given. `run` trains it with
`nnrs_jax.fit` on the 60000 training digits as NHWC images and scores it with
`nnrs_jax.evaluate` on the 10000 test digits. ``train s`` is the wall time of `fit` alone,
compilation included; ``cpu s`` the process CPU time over the same span and ``load`` the
1-minute load average at its end, so that a slow run can be told from a busy machine.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
from recipe_search import choose

import nnrs_jax as nj


class Candidate(NamedTuple):
    name: str
    model: functools.partial
    """The builder with its arguments, ``functools.partial(builder, ...)``."""
    lr: float
    epochs: int
    batch_size: int
    warmup: float = 0.0
    """Epochs of linear warm-up before the cosine decay (0: none)."""
    shift: int = 0
    """Random shifts of up to this many pixels on every training batch (0: none)."""


def run(candidate: Candidate, seed: int, data) -> str:
    """Train and score ``candidate`` with ``seed``; one markdown table row."""
    (x, y), (xt, yt) = data
    model = candidate.model()
    per_epoch = x.shape[0] // candidate.batch_size
    steps = candidate.epochs * per_epoch
    warmup = round(candidate.warmup * per_epoch)
    schedule = (nj.schedules.warmup_cosine_decay(candidate.lr, warmup, steps) if warmup
                else nj.schedules.cosine_decay(candidate.lr, steps))  # fmt: skip
    augment = nj.augment.random_shift(candidate.shift) if candidate.shift else None
    wall, cpu = time.perf_counter(), time.process_time()
    result = nj.fit(model, nj.cross_entropy, nj.adam(schedule), x, y, key=jax.random.key(seed),
                    epochs=candidate.epochs, batch_size=candidate.batch_size, augment=augment,
                    progress=False)  # fmt: skip
    jax.block_until_ready(result.params)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    accuracy = nj.evaluate(model, result.params, xt, yt, state=result.state).accuracy
    load = os.getloadavg()[0]
    return (f"| {candidate.name} | {seed} | {candidate.epochs} | {candidate.lr:g} | "
            f"{100 * accuracy:.2f} | {wall:.1f} | {cpu:.1f} | {load:.1f} |")  # fmt: skip


def describe(c: Candidate) -> str:
    """A one-line summary such as ``lstm(128), lr 0.003, 8 epochs of 128``."""
    args = ", ".join(map(str, c.model.args))
    extras = (f", {c.warmup:g} epoch warm-up" if c.warmup else "") + (
        f", shifts of {c.shift}" if c.shift else ""
    )
    return (f"{c.model.func.__name__}({args}), lr {c.lr:g}, "
            f"{c.epochs} epochs of {c.batch_size}{extras}")  # fmt: skip


def search(description: str, candidates: Sequence[Candidate]) -> None:
    """The command line (`recipe_search.choose`): run each chosen candidate for each seed."""
    choice = choose(description, candidates, describe)
    if choice is None:
        return
    chosen, seeds = choice
    data = nj.datasets.mnist("train", flatten=False), nj.datasets.mnist("test", flatten=False)
    jax.block_until_ready(jax.numpy.ones(1) + 1)  # backend start-up, not charged to a row
    print("| candidate | seed | epochs | lr | test % | train s | cpu s | load |")
    print("|---|---|---|---|---|---|---|---|")
    for candidate in chosen:
        for seed in seeds:
            print(run(candidate, seed, data), flush=True)
