"""Search for the sequence recipes: LSTMs and small vision transformers on MNIST, one table.

Each candidate reads the digits as images, NHWC ``(batch, 28, 28, 1)``
(``nj.datasets.mnist(split, flatten=False)``, as the CNN recipe does), and makes its own
sequence: an LSTM reads 28 rows of 28 pixels, a transformer 16 patches of 7×7 pixels (a
stride-7 convolution embeds each patch, as in ViT). It trains with `nnrs_jax.fit` on the
60000 training digits, Adam with a cosine-decayed learning rate (after a linear warmup of
``warmup`` epochs where given), random shifts of ``shift`` pixels on every batch where given,
and is scored with `nnrs_jax.evaluate` on the 10000 test
digits. ``train s`` is the wall time of `fit` alone, compilation included; ``cpu s`` the
process CPU time over the same span and ``load`` the 1-minute load average at its end.

Usage::

    NNRS_JAX_DATA=/path/to/data python docs/sequence_recipe_search.py --list
    NNRS_JAX_DATA=/path/to/data python docs/sequence_recipe_search.py --only lstm128_e8 \\
        --seeds 0 1 2

The results are discussed in ``docs/sequence_recipes.md``.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
from recipe_search import choose

import nnrs_jax as nj


def lstm(hidden: int, layers: int = 1) -> nj.Layer:
    """``layers`` stacked LSTMs of ``hidden`` units over the 28 rows, the last step classified."""
    stack = [nj.lstm(28 if i == 0 else hidden, hidden, return_sequences=i < layers - 1)
             for i in range(layers)]  # fmt: skip
    return nj.serial(nj.reshape((28, 28)), *stack, nj.dense(hidden, 10))


def transformer(dim: int, depth: int, heads: int, mlp: int, patch: int = 7) -> nj.Layer:
    """A ViT: patches embedded, learned positions, ``depth`` pre-norm blocks, mean-pooled."""
    tokens = (28 // patch) ** 2
    block = [
        nj.residual(nj.serial(nj.layer_norm(dim), nj.multi_head_attention(dim, heads))),
        nj.residual(nj.serial(nj.layer_norm(dim), nj.dense(dim, mlp), nj.relu(),
                              nj.dense(mlp, dim))),
    ]  # fmt: skip
    return nj.serial(
        nj.conv2d(1, dim, patch, stride=patch),
        nj.reshape((tokens, dim)), nj.positional_embedding(tokens, dim),
        *(block * depth), nj.layer_norm(dim), nj.mean_over_time(), nj.dense(dim, 10),
    )  # fmt: skip


class Candidate(NamedTuple):
    name: str
    model: Callable[[], nj.Layer]
    lr: float = 3e-3
    epochs: int = 8
    batch_size: int = 128
    warmup: float = 0.0
    """Epochs of linear warmup before the cosine decay (0: none)."""
    shift: int = 0
    """Random shifts of up to this many pixels on every training batch (0: none)."""


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("lstm64_e8", functools.partial(lstm, 64)),
    Candidate("lstm128_e6", functools.partial(lstm, 128), epochs=6),
    Candidate("lstm128_e8", functools.partial(lstm, 128)),
    Candidate("lstm128_lr2e-3_e8", functools.partial(lstm, 128), lr=2e-3),
    Candidate("lstm128x2_e6", functools.partial(lstm, 128, 2), epochs=6),
    Candidate("vit64_d2_e10", functools.partial(transformer, 64, 2, 4, 128), lr=1e-3, epochs=10,
              warmup=1),
    Candidate("vit64_d4_e10", functools.partial(transformer, 64, 4, 4, 128), lr=1e-3, epochs=10,
              warmup=1),
    Candidate("vit64_d4_lr2e-3_e10", functools.partial(transformer, 64, 4, 4, 128), lr=2e-3,
              epochs=10, warmup=1),
    Candidate("vit96_d4_e10", functools.partial(transformer, 96, 4, 4, 192), lr=1e-3,
              epochs=10, warmup=1),
    Candidate("vit64_p4_d4_e10", functools.partial(transformer, 64, 4, 4, 128, 4), lr=1e-3,
              epochs=10, warmup=1),
    Candidate("vit64_d4_e20", functools.partial(transformer, 64, 4, 4, 128), lr=1e-3,
              epochs=20, warmup=1),
    Candidate("vit64_d4_lr2e-3_e20", functools.partial(transformer, 64, 4, 4, 128), lr=2e-3,
              epochs=20, warmup=1),
    Candidate("vit64_d4_shift1_e20", functools.partial(transformer, 64, 4, 4, 128), lr=2e-3,
              epochs=20, warmup=1, shift=1),
    Candidate("vit128_d4_shift1_e15", functools.partial(transformer, 128, 4, 4, 256), lr=1e-3,
              epochs=15, warmup=1, shift=1),
)  # fmt: skip


def run(candidate: Candidate, seed: int, data) -> str:
    (x, y), (xt, yt) = data
    model = candidate.model()
    per_epoch = x.shape[0] // candidate.batch_size
    steps = candidate.epochs * per_epoch
    warmup = round(candidate.warmup * per_epoch)
    schedule = (nj.schedules.warmup_cosine_decay(candidate.lr, warmup, steps) if warmup
                else nj.schedules.cosine_decay(candidate.lr, steps))  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    result = nj.fit(model, nj.cross_entropy, nj.adam(schedule), x, y, key=jax.random.key(seed),
                    epochs=candidate.epochs, batch_size=candidate.batch_size,
                    augment=nj.augment.random_shift(candidate.shift) if candidate.shift else None,
                    progress=False)  # fmt: skip
    jax.block_until_ready(result.params)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    accuracy = nj.evaluate(model, result.params, xt, yt, state=result.state).accuracy
    load = os.getloadavg()[0]
    return (f"| {candidate.name} | {seed} | {candidate.epochs} | {candidate.lr:g} | "
            f"{100 * accuracy:.2f} | {wall:.0f} | {cpu:.0f} | {load:.1f} |")  # fmt: skip


def describe(c: Candidate) -> str:
    """A one-line summary such as ``lstm(128), lr 0.003, 8 epochs of 128``."""
    args = ", ".join(map(str, c.model.args))
    warmup = f", {c.warmup:g} warmup" if c.warmup else ""
    shift = f", shifts of {c.shift}" if c.shift else ""
    return (f"{c.model.func.__name__}({args}), lr {c.lr:g}{warmup}, "
            f"{c.epochs} epochs of {c.batch_size}{shift}")  # fmt: skip


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
