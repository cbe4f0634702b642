"""Search for the default MNIST recipe: train candidate MLPs, print a markdown table.

Each candidate is trained once per seed with `nnrs_jax.fit` on the 60000 training digits and
scored on the 10000 test digits. ``train s`` is the wall time of `fit` alone, compilation
included (the first epoch compiles the scanned step); data loading and evaluation are not
counted. Rows are printed as soon as each run ends, so a partial run still leaves a table.

Usage::

    NNRS_JAX_DATA=/path/to/data python docs/recipe_search.py  # every candidate, seed 0
    python docs/recipe_search.py --only w1024x512_l2_b256_e12 --seeds 0 1 2  # robustness
    python docs/recipe_search.py --list  # candidate names and settings

``cpu s`` is the process CPU time over the same span (all threads) and ``load`` the 1-minute
load average when the run ended: on a shared machine they tell a slow run from a busy one.

The results and the chosen recipe are discussed in ``docs/recipe.md``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import jax

import nnrs_jax as nj

N_TRAIN = 60000


class Candidate(NamedTuple):
    """One training configuration; ``schedule`` is ``"constant"``, ``"cosine"`` or ``"warmup"``.

    ``"cosine"`` decays ``lr`` to 0 over all steps; ``"warmup"`` warms up linearly from 0 over
    ``warmup_epochs`` epochs and then decays to 0 by the last step.
    """

    name: str
    hidden: tuple[int, ...] = (512, 256)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"
    batch_size: int = 128
    epochs: int = 10
    l2: float = 0.0
    warmup_epochs: int = 1


# The setting most candidates share: Adam at 2e-3 decayed to 0 by a cosine, batches of 256.
COSINE = {"schedule": "cosine", "batch_size": 256, "lr": 2e-3}
WIDE = (1024, 512)

CANDIDATES: tuple[Candidate, ...] = (
    Candidate("baseline_const_b128_e10"),
    Candidate("cosine_b128_e10", schedule="cosine"),
    Candidate("cosine_b256_e20", epochs=20, **COSINE),
    Candidate("nadam_b256_e20", optimizer="nadam", epochs=20, **COSINE),
    Candidate("elu_b256_e20", activation="elu", epochs=20, **COSINE),
    Candidate("l2_b256_e20", epochs=20, l2=5e-5, **COSINE),
    Candidate("l2_1e-4_b256_e20", epochs=20, l2=1e-4, **COSINE),
    Candidate("l2_1e-4_b256_e30", epochs=30, l2=1e-4, **COSINE),
    Candidate("l2_b256_e15", epochs=15, l2=5e-5, **COSINE),
    Candidate("w1024x512_b256_e15", hidden=WIDE, epochs=15, **COSINE),
    Candidate("w800x800_b256_e15", hidden=(800, 800), epochs=15, **COSINE),
    Candidate(
        "w1024x1024_b512_e12",
        hidden=(1024, 1024),
        schedule="cosine",
        batch_size=512,
        lr=2e-3,
        epochs=12,
    ),
    Candidate("w1024x512_l2_b256_e15", hidden=WIDE, epochs=15, l2=5e-5, **COSINE),
    Candidate("w1024x512_l2_b256_e12", hidden=WIDE, epochs=12, l2=5e-5, **COSINE),
    Candidate(
        "w1024x512_l2_warmup_e12",
        hidden=WIDE,
        schedule="warmup",
        batch_size=256,
        lr=2e-3,
        epochs=12,
        l2=5e-5,
    ),
)
"""Every candidate of ``docs/recipe.md``; the chosen default is ``w1024x512_l2_b256_e12``."""

ACTIVATIONS = {"relu": nj.relu, "elu": nj.elu}
OPTIMIZERS = {"adam": nj.adam, "nadam": nj.nadam}


def build(c: Candidate) -> tuple[nj.Layer, nj.Optimizer]:
    """The ``784-hidden-10`` MLP (He init) and the optimizer with its schedule."""
    sizes = (784, *c.hidden, 10)
    regularizer = nj.l2(c.l2) if c.l2 > 0 else None
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nj.dense(n_in, n_out, init="he", regularizer=regularizer))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[c.activation]())
    steps = c.epochs * (N_TRAIN // c.batch_size)
    if c.schedule == "constant":
        lr = c.lr
    elif c.schedule == "cosine":
        lr = nj.schedules.cosine_decay(c.lr, decay_steps=steps)
    elif c.schedule == "warmup":
        warmup = c.warmup_epochs * (N_TRAIN // c.batch_size)
        lr = nj.schedules.warmup_cosine_decay(c.lr, warmup_steps=warmup, decay_steps=steps)
    else:
        raise ValueError(f"unknown schedule {c.schedule!r}")
    return nj.serial(*layers), OPTIMIZERS[c.optimizer](lr)


def describe(c: Candidate) -> str:
    """A one-line summary such as ``784-512-256-10 relu, adam 0.002 cosine→0, batch 256, 20 ep``."""
    arch = "-".join(str(n) for n in (784, *c.hidden, 10))
    l2 = f", l2 {c.l2:g}" if c.l2 > 0 else ""
    schedule = {"constant": "const", "cosine": "cosine→0", "warmup": "warmup+cosine→0"}
    return (
        f"{arch} {c.activation}, {c.optimizer} {c.lr:g} {schedule[c.schedule]}, "
        f"batch {c.batch_size}, {c.epochs} ep{l2}"
    )


Named = TypeVar("Named", bound=tuple)  # a NamedTuple with a ``name`` field


def choose(
    description: str, candidates: Sequence[Named], summary: Callable[[Named], str]
) -> tuple[list[Named], list[int]] | None:
    """The command line of the recipe searches: ``--only NAME…``, ``--seeds SEED…``, ``--list``.

    Returns the chosen candidates (all of them without ``--only``; an unknown name is a usage
    error) and the seeds (``[0]`` by default); or, with ``--list``, prints one line
    ``name: summary(candidate)`` per candidate and returns None.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--only", nargs="+", help="names of the candidates to run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="PRNG seeds")
    parser.add_argument("--list", action="store_true", help="print candidate names and exit")
    args = parser.parse_args()
    if args.list:
        for c in candidates:
            print(f"{c.name}: {summary(c)}")
        return None
    chosen = [c for c in candidates if args.only is None or c.name in args.only]
    unknown = set(args.only or ()) - {c.name for c in chosen}
    if unknown:
        parser.error(f"unknown candidates: {sorted(unknown)}")
    return chosen, args.seeds


def main() -> None:
    """Run the chosen candidates for each seed and print one table row per run."""
    choice = choose(__doc__.splitlines()[0], CANDIDATES, describe)
    if choice is None:
        return
    chosen, seeds = choice

    x, y = nj.datasets.mnist("train", progress=False)
    xt, yt = nj.datasets.mnist("test", progress=False)
    # One-time backend start-up, so that it is not charged to the first row.
    jax.block_until_ready(jax.numpy.ones(1) + 1)
    load = os.getloadavg()[0]
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores, "
        f"1-min load {load:.2f} at start\n"
    )
    print("| name | config | seed | train s | cpu s | test acc | load |")
    print("|---|---|---|---|---|---|---|")
    for c in chosen:
        model, optimizer = build(c)
        for seed in seeds:
            start, cpu_start = time.perf_counter(), time.process_time()
            result = nj.fit(
                model,
                nj.cross_entropy,
                optimizer,
                x,
                y,
                key=jax.random.key(seed),
                epochs=c.epochs,
                batch_size=c.batch_size,
                progress=False,
            )
            jax.block_until_ready(result.params)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            accuracy = nj.evaluate(model, result.params, xt, yt).accuracy
            print(
                f"| {c.name} | {describe(c)} | {seed} | {seconds:.1f} | {cpu:.1f} "
                f"| {100 * accuracy:.2f} % | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
