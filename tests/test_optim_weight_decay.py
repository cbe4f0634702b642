"""`add_decayed_weights` and `adamw` against independent NumPy code, and their checks.

``pytest tests/test_optim_weight_decay.py -s -k numpy`` prints the table
"transformation | mode | max deviation".
"""

from __future__ import annotations

import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import pytest
from optim_helpers import (
    LR,
    BadHyperparameter,
    Case,
    NpAdam,
    NpChain,
    NpDecay,
    NpLearningRate,
    TransformContract,
    np_constant,
)

from nnrs_jax.optim import adamw, add_decayed_weights, matrices_only


class TestWeightDecay(TransformContract):
    """`add_decayed_weights`, with and without a mask, and `adamw`, Adam with decoupled decay."""

    CASES: ClassVar[dict[str, Case]] = {
        "add_decayed_weights": (
            lambda: add_decayed_weights(0.02),
            lambda: NpDecay(0.02, ("w", "b")),
        ),
        "add_decayed_weights(mask)": (
            lambda: add_decayed_weights(0.02, mask=matrices_only),
            lambda: NpDecay(0.02, ("w",)),
        ),
        "adamw": (
            lambda: adamw(LR, b1=0.85, b2=0.99, eps=1e-6, weight_decay=0.1),
            lambda: NpChain(
                NpAdam(0.85, 0.99, 1e-6), NpDecay(0.1, ("w", "b")), NpLearningRate(np_constant)
            ),
        ),
        "adamw(mask)": (
            lambda: adamw(LR, weight_decay=0.1, mask=matrices_only),
            lambda: NpChain(
                NpAdam(0.9, 0.999, 1e-7), NpDecay(0.1, ("w",)), NpLearningRate(np_constant)
            ),
        ),
    }
    BAD_HYPERPARAMETERS: ClassVar[list[BadHyperparameter]] = [
        (
            lambda: add_decayed_weights(-1e-4),
            ValueError,
            "add_decayed_weights: rate must be a finite float",
        ),
        (lambda: add_decayed_weights(math.inf), ValueError, "add_decayed_weights: rate must be"),
        (
            lambda: add_decayed_weights(0.1, mask={"w": 1}),
            TypeError,
            r"mask\['w'\] must be a bool, got int",
        ),
        (lambda: adamw(0.0), ValueError, "adamw: learning_rate must be"),
        (lambda: adamw(0.1, b1=1.0), ValueError, "adamw: b1 must be"),
        (
            lambda: adamw(0.1, weight_decay=-1.0),
            ValueError,
            "adamw: weight_decay must be a finite float",
        ),
        (lambda: adamw(0.1, weight_decay="1e-4"), TypeError, "adamw: weight_decay must be a float"),
    ]


def test_add_decayed_weights_needs_params_and_a_matching_mask() -> None:
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    opt = add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="add_decayed_weights: update needs params"):
        opt.update(params, opt.init(params))
    opt = add_decayed_weights(0.1, mask={"w": True})
    with pytest.raises(TypeError, match="the mask tree does not match the params tree"):
        opt.update(params, opt.init(params), params)
    opt = add_decayed_weights(0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    assert opt.update(params, opt.init(params), params)[0]["b"].tolist() == [1.0, 1.0]
    opt = add_decayed_weights(0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > jnp.ones(()), p))
    with pytest.raises(TypeError, match=r"mask\['b'\] must be a bool"):
        jax.jit(opt.update)(params, opt.init(params), params)


def test_adamw_needs_params() -> None:
    params = {"w": jnp.ones((2, 2))}
    opt = adamw(0.1)
    with pytest.raises(ValueError, match="add_decayed_weights: update needs params"):
        opt.update(params, opt.init(params))
