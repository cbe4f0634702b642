"""Search for the sequence recipes: LSTMs and small vision transformers on MNIST, one table.

Each candidate reads the digits as images, NHWC ``(batch, 28, 28, 1)``
(``nj.datasets.mnist(split, flatten=False)``, as the CNN recipe does), and makes its own
sequence: an LSTM reads 28 rows of 28 pixels, a transformer 16 patches of 7×7 pixels (a
stride-7 convolution embeds each patch, as in ViT). Each is trained and scored as
``docs/image_search.py`` describes.

Usage::

    NNRS_JAX_DATA=/path/to/data python docs/sequence_recipe_search.py --list
    NNRS_JAX_DATA=/path/to/data python docs/sequence_recipe_search.py --only lstm128_e8 \\
        --seeds 0 1 2

The results are discussed in ``docs/sequence_recipes.md``.
"""

from __future__ import annotations

import functools

from image_search import Candidate, search

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


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("lstm64_e8", functools.partial(lstm, 64), 3e-3, 8, 128),
    Candidate("lstm128_e6", functools.partial(lstm, 128), 3e-3, 6, 128),
    Candidate("lstm128_e8", functools.partial(lstm, 128), 3e-3, 8, 128),
    Candidate("lstm128_lr2e-3_e8", functools.partial(lstm, 128), 2e-3, 8, 128),
    Candidate("lstm128x2_e6", functools.partial(lstm, 128, 2), 3e-3, 6, 128),
    # transformers: one epoch of warm-up
    Candidate("vit64_d2_e10", functools.partial(transformer, 64, 2, 4, 128), 1e-3, 10, 128, 1),
    Candidate("vit64_d4_e10", functools.partial(transformer, 64, 4, 4, 128), 1e-3, 10, 128, 1),
    Candidate("vit64_d4_lr2e-3_e10", functools.partial(transformer, 64, 4, 4, 128), 2e-3, 10,
              128, 1),
    Candidate("vit96_d4_e10", functools.partial(transformer, 96, 4, 4, 192), 1e-3, 10, 128, 1),
    Candidate("vit64_p4_d4_e10", functools.partial(transformer, 64, 4, 4, 128, 4), 1e-3, 10,
              128, 1),
    Candidate("vit64_d4_e20", functools.partial(transformer, 64, 4, 4, 128), 1e-3, 20, 128, 1),
    Candidate("vit64_d4_lr2e-3_e20", functools.partial(transformer, 64, 4, 4, 128), 2e-3, 20,
              128, 1),
    Candidate("vit64_d4_shift1_e20", functools.partial(transformer, 64, 4, 4, 128), 2e-3, 20,
              128, 1, shift=1),
    Candidate("vit128_d4_shift1_e15", functools.partial(transformer, 128, 4, 4, 256), 1e-3, 15,
              128, 1, shift=1),
)  # fmt: skip


if __name__ == "__main__":
    search(__doc__.splitlines()[0], CANDIDATES)
