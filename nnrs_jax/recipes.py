"""Documented training recipes for MNIST: the models and settings behind ``nnrs-jax train``.

Each recipe is a model builder plus a `Recipe` of training settings, found by experiment
(``docs/recipe.md`` for the MLP, ``docs/cnn_recipe.md`` for the CNN,
``docs/sequence_recipes.md`` for the LSTM and the transformer, ``docs/fast_recipe.md`` for the
fast CNN). `RECIPES` maps the names of ``nnrs-jax train --model`` to them: ``mlp`` (the
default) is `mlp` and `MLP`, whose flags default to `MLP_MODEL`; ``cnn``, ``fast``, ``lstm``
and ``transformer`` are `cnn` and `CNN`, `fast` and `FAST`, `lstm` and `LSTM`, `transformer`
and `TRANSFORMER`. The MLP reads flat digits ``(batch, 784)``, the
others images ``(batch, 28, 28, 1)`` (``nj.datasets.mnist(split, flatten=False)``).

`MLP_MODEL` is the one definition of the default MLP, a model spec (`nnrs_jax.specs`): `mlp`
builds it, the command line takes its flag defaults and help text from it, and a checkpoint
records it in its metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from nnrs_jax import layers as nl
from nnrs_jax.augment import random_shift
from nnrs_jax.layers import (
    Layer,
    conv2d,
    dense,
    dropout,
    flatten,
    max_pool,
    relu,
    serial,
)
from nnrs_jax.specs import build_model

__all__ = [
    "CNN",
    "FAST",
    "FAST_WIDTHS",
    "LSTM",
    "MLP",
    "MLP_MODEL",
    "RECIPES",
    "TRANSFORMER",
    "Recipe",
    "cnn",
    "fast",
    "lstm",
    "mlp",
    "transformer",
]


class Recipe(NamedTuple):
    """Training settings: Adam, learning rate cosine-decayed from ``lr`` to 0 over the run.

    ``augment``: the in-graph augmentation of every training batch (`nnrs_jax.augment`), or
    ``None``.
    """

    optimizer: str
    lr: float
    schedule: str
    epochs: int
    batch_size: int
    augment: Any = None


MLP_MODEL: dict[str, Any] = {
    "kind": "mlp",
    "arch": [784, 1024, 512, 10],
    "activation": "relu",
    "init": "he",
    "regularizer": "l2:5e-5",
    "loss": "cross_entropy",
}
"""The default MLP as a model spec (format in `nnrs_jax.specs`); ``docs/recipe.md`` has the
experiments behind it. Treat it as read-only: copy it (``dict(MLP_MODEL)``) to vary it."""

MLP = Recipe(optimizer="adam", lr=2e-3, schedule="cosine", epochs=12, batch_size=256)
"""The default recipe's training (``nnrs-jax train``): Adam 2e-3 cosine-decayed to 0, 12 epochs
of batch 256; ~98.6 % test accuracy with `mlp`."""

CNN = Recipe(
    optimizer="adam", lr=2e-3, schedule="cosine", epochs=10, batch_size=128,
    augment=random_shift(1),
)  # fmt: skip
"""The CNN recipe's training (``nnrs-jax train --model cnn``): Adam 2e-3 cosine-decayed to 0,
10 epochs of batch 128, random shifts of one pixel; ~99.5 % test accuracy with `cnn`
(``docs/cnn_recipe.md``)."""

FAST_WIDTHS = (16, 32, 128)
"""The fast CNN's widths: channels of its two convolutions and units of its hidden layer."""

FAST = Recipe(
    optimizer="adam", lr=2e-3, schedule="warmup_cosine", epochs=2, batch_size=32,
    augment=random_shift(1),
)  # fmt: skip
"""The fast recipe's training (``nnrs-jax train --model fast``): Adam, warmed up linearly to
2e-3 over the first epoch and cosine-decayed to 0, 2 epochs of batch 32, random shifts of one
pixel; 99.1–99.3 % test accuracy with `fast` in 6–8 s on a 2-core CPU
(``docs/fast_recipe.md``)."""

LSTM = Recipe(optimizer="adam", lr=3e-3, schedule="cosine", epochs=8, batch_size=128)
"""The LSTM recipe's training (``nnrs-jax train --model lstm``): Adam 3e-3 cosine-decayed to 0,
8 epochs of batch 128; ~98.9 % test accuracy with `lstm` (``docs/sequence_recipes.md``)."""

TRANSFORMER = Recipe(
    optimizer="adam", lr=2e-3, schedule="warmup_cosine", epochs=20, batch_size=128,
    augment=random_shift(1),
)  # fmt: skip
"""The transformer recipe's training (``nnrs-jax train --model transformer``): Adam, warmed up
linearly to 2e-3 over the first epoch and cosine-decayed to 0, 20 epochs of batch 128, random
shifts of one pixel; ~99.2 % test accuracy with `transformer` (``docs/sequence_recipes.md``)."""


def mlp() -> Layer:
    """The default MLP, built from `MLP_MODEL`: 784-1024-512-10, ReLU, He init, L2 5e-5.

    ``serial(dense(784, 1024), relu(), dense(1024, 512), relu(), dense(512, 10))``, each dense
    layer He-initialized (He et al. 2015) with the penalty ``5e-5·Σ W²`` on its weights. Input
    ``(batch, 784)``, output ``(batch, 10)`` logits; train it with the loss ``MLP_MODEL["loss"]``
    (cross-entropy). With `MLP` it reaches ~98.6 % test accuracy on MNIST in ~35 s on a 2-core
    CPU.

    Examples:
        >>> import nnrs_jax as nj
        >>> nj.output_shape(nj.recipes.mlp(), (2, 784))
        (2, 10)
    """
    return build_model(MLP_MODEL)


def cnn() -> Layer:
    """The CNN recipe: two 3×3 convolutions with max-pooling, then two dense layers with dropout.

    ``conv3×3 1→32, ReLU, max-pool 2, conv3×3 32→64, ReLU, max-pool 2, flatten, dropout 0.25,
    dense 1600→256, ReLU, dropout 0.5, dense 256→10`` on NHWC input ``(batch, 28, 28, 1)``
    (``nj.datasets.mnist(split, flatten=False)``), output ``(batch, 10)`` logits. It needs a key
    in training (dropout), which `nnrs_jax.fit` provides. With `CNN` (random shifts of one pixel
    on every batch) it reaches 99.56 % test accuracy on MNIST on average over three seeds, in
    70–80 s on a 2-core CPU (``docs/cnn_recipe.md``).

    Examples:
        >>> import nnrs_jax as nj
        >>> nj.output_shape(nj.recipes.cnn(), (2, 28, 28, 1))
        (2, 10)
    """
    return serial(
        conv2d(1, 32, 3), relu(), max_pool(2),
        conv2d(32, 64, 3), relu(), max_pool(2),
        flatten(), dropout(0.25),
        dense(1600, 256), relu(), dropout(0.5),
        dense(256, 10),
    )  # fmt: skip


def fast() -> Layer:
    """The fast recipe: a small CNN that trains to 99 % MNIST test accuracy in seconds.

    ``conv3×3 1→16, ReLU, max-pool 2, conv3×3 16→32, ReLU, max-pool 2, flatten,
    dense 800→128, ReLU, dense 128→10`` (widths `FAST_WIDTHS`) on NHWC input
    ``(batch, 28, 28, 1)``, output ``(batch, 10)`` logits. With `FAST` it reaches 99.1–99.3 %
    test accuracy on MNIST in 6–8 s of training on a 2-core CPU, compilation included
    (``docs/fast_recipe.md``).

    Examples:
        >>> import nnrs_jax as nj
        >>> nj.output_shape(nj.recipes.fast(), (2, 28, 28, 1))
        (2, 10)
    """
    c1, c2, hidden = FAST_WIDTHS
    return serial(
        conv2d(1, c1, 3), relu(), max_pool(2),
        conv2d(c1, c2, 3), relu(), max_pool(2),
        flatten(), dense(25 * c2, hidden), relu(), dense(hidden, 10),
    )  # fmt: skip


def lstm() -> Layer:
    """The LSTM recipe: MNIST read row by row, 28 steps of 28 pixels, by one LSTM of 128 units.

    ``reshape((28, 28)), lstm(28, 128), dense(128, 10)`` on NHWC input ``(batch, 28, 28, 1)``
    (``nj.datasets.mnist(split, flatten=False)``): the image's rows are the time steps, and the
    last hidden state is classified. Output ``(batch, 10)`` logits. With `LSTM` it reaches
    ~98.9 % test accuracy on MNIST in ~45 s on a 2-core CPU (``docs/sequence_recipes.md``).

    Examples:
        >>> import nnrs_jax as nj
        >>> nj.output_shape(nj.recipes.lstm(), (2, 28, 28, 1))
        (2, 10)
    """
    return serial(nl.reshape((28, 28)), nl.lstm(28, 128), dense(128, 10))


def transformer() -> Layer:
    """The transformer recipe: a small vision transformer (ViT) over 16 patches of 7×7 pixels.

    On NHWC input ``(batch, 28, 28, 1)``: ``conv2d(1, 64, 7, stride=7)`` embeds each 7×7
    patch in 64 features (ViT's patch embedding), ``reshape((16, 64))`` makes them a sequence
    of 16 tokens, ``positional_embedding(16, 64)`` adds learned positions; then 4 pre-norm
    blocks, each ``x + attention(layer_norm(x))`` (4 heads) and
    ``x + dense(relu(dense(layer_norm(x))))`` (64 → 128 → 64); a final ``layer_norm``, the mean
    over the tokens and ``dense(64, 10)``. Output ``(batch, 10)`` logits. With `TRANSFORMER` it
    reaches ~99.2 % test accuracy on MNIST in ~2 min on a 2-core CPU
    (``docs/sequence_recipes.md``). Reference:
    Dosovitskiy et al. 2021, "An image is worth 16x16 words" (without the class token: the
    tokens are mean-pooled).

    Examples:
        >>> import nnrs_jax as nj
        >>> nj.output_shape(nj.recipes.transformer(), (2, 28, 28, 1))
        (2, 10)
    """
    dim, tokens = 64, 16
    attention = nl.residual(serial(nl.layer_norm(dim), nl.multi_head_attention(dim, 4)))
    mlp_block = nl.residual(
        serial(nl.layer_norm(dim), dense(dim, 2 * dim), relu(), dense(2 * dim, dim))
    )
    return serial(
        conv2d(1, dim, 7, stride=7), nl.reshape((tokens, dim)),
        nl.positional_embedding(tokens, dim),
        *(attention, mlp_block) * 4,
        nl.layer_norm(dim), nl.mean_over_time(), dense(dim, 10),
    )  # fmt: skip


RECIPES: dict[str, tuple[Callable[[], Layer], Recipe]] = {
    "mlp": (mlp, MLP),
    "cnn": (cnn, CNN),
    "fast": (fast, FAST),
    "lstm": (lstm, LSTM),
    "transformer": (transformer, TRANSFORMER),
}
"""The recipes by their ``nnrs-jax train --model`` name: ``(model builder, training)``."""
