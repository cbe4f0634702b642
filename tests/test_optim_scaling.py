"""The scalings of `nnrs_jax.optim.scaling` against independent NumPy code, and their checks.

``pytest tests/test_optim_scaling.py -s -k numpy`` prints the table
"transformation | mode | max deviation".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import chex
import jax
import jax.numpy as jnp
import pytest
from helpers import take
from optim_helpers import (
    LR,
    BadHyperparameter,
    Case,
    NpAdam,
    NpLearningRate,
    NpMomentum,
    NpRms,
    TransformContract,
    jax_schedule,
    np_constant,
    np_schedule,
    problem,
)

from nnrs_jax.optim import (
    Optimizer,
    accumulate,
    adam,
    adamw,
    apply_updates,
    chain,
    clip,
    ema,
    matrices_only,
    nadam,
    sgd,
)
from nnrs_jax.optim.scaling import (
    scale_by_adam,
    scale_by_adamax,
    scale_by_learning_rate,
    scale_by_momentum,
    scale_by_rms,
)


class TestScaling(TransformContract):
    """The learning rate, momentum (heavy-ball and Nesterov), RMS, Adam (and Nadam's), AdaMax."""

    CASES: ClassVar[dict[str, Case]] = {
        "scale_by_learning_rate": (
            lambda: scale_by_learning_rate(LR),
            lambda: NpLearningRate(np_constant),
        ),
        "scale_by_learning_rate(schedule)": (
            lambda: scale_by_learning_rate(jax_schedule),
            lambda: NpLearningRate(np_schedule),
        ),
        "scale_by_momentum": (
            lambda: scale_by_momentum(0.8),
            lambda: NpMomentum(0.8, nesterov=False),
        ),
        "scale_by_momentum(nesterov)": (
            lambda: scale_by_momentum(0.85, nesterov=True),
            lambda: NpMomentum(0.85, nesterov=True),
        ),
        "scale_by_rms": (lambda: scale_by_rms(0.95, 1e-6), lambda: NpRms(0.95, 1e-6)),
        "scale_by_adam": (
            lambda: scale_by_adam(0.85, 0.99, 1e-6),
            lambda: NpAdam(0.85, 0.99, 1e-6),
        ),
        "scale_by_adam(nesterov)": (
            lambda: scale_by_adam(0.85, 0.99, 1e-6, nesterov=True),
            lambda: NpAdam(0.85, 0.99, 1e-6, "nadam"),
        ),
        "scale_by_adamax": (
            lambda: scale_by_adamax(0.85, 0.99, 1e-6),
            lambda: NpAdam(0.85, 0.99, 1e-6, "adamax"),
        ),
    }
    BAD_HYPERPARAMETERS: ClassVar[list[BadHyperparameter]] = [
        (lambda: sgd(0.0), ValueError, r"sgd: learning_rate must be a finite float > 0, got 0.0"),
        (lambda: scale_by_learning_rate(-1.0), ValueError, r"scale_by_learning_rate: learning_r"),
        (
            lambda: scale_by_learning_rate(math.inf),
            ValueError,
            "learning_rate must be a finite float > 0, got inf",
        ),
        (
            lambda: scale_by_learning_rate("0.1"),
            TypeError,
            "learning_rate must be a positive float or a schedule",
        ),
        (
            lambda: adam(jnp.ones(2)),
            TypeError,
            r"adam: an array learning_rate must be a floating scalar",
        ),
        (
            lambda: scale_by_momentum(1.0),
            ValueError,
            r"momentum must be a finite float >= 0 and < 1, got 1.0",
        ),
        (
            lambda: scale_by_momentum(0.9, nesterov=1),
            TypeError,
            "scale_by_momentum: nesterov must be a bool, got 1",
        ),
        (lambda: scale_by_rms(decay=-0.1), ValueError, "scale_by_rms: decay must be"),
        (
            lambda: scale_by_rms(eps=0.0),
            ValueError,
            r"scale_by_rms: eps must be a finite float > 0, got 0.0",
        ),
        (lambda: scale_by_rms(eps=math.nan), ValueError, "eps must be a finite float > 0, got nan"),
        (lambda: scale_by_adam(b1=1.0), ValueError, "scale_by_adam: b1 must be"),
        (lambda: scale_by_adam(b2=math.nan), ValueError, "scale_by_adam: b2 must be"),
        (
            lambda: scale_by_adam(eps="1e-8"),
            TypeError,
            r"scale_by_adam: eps must be a float, got '1e-8'",
        ),
        (lambda: scale_by_adam(nesterov=None), TypeError, "nesterov must be a bool"),
        (lambda: scale_by_adamax(b2=1.5), ValueError, "scale_by_adamax: b2 must be"),
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda lr: scale_by_learning_rate(lr),
        lambda lr: chain(clip(1.0), scale_by_learning_rate(lr)),
        lambda lr: adamw(lr, mask=matrices_only),
        lambda lr: accumulate(ema(nadam(lr), decay=0.9), every=2),
    ],
    ids=["scale_by_learning_rate", "chain", "adamw", "accumulate_ema_nadam"],
)
def test_learning_rate_traced_under_vmap(make: Callable[[Any], Optimizer]) -> None:
    """``jax.vmap(lambda lr: make(lr).update(...))`` equals one run per learning rate."""
    params, grads = problem(seed=4, steps=6)
    p0 = jax.tree.map(jnp.asarray, params)
    lrs = jnp.array([1e-3, 1e-2, 1e-1])

    def run(lr):
        opt = make(lr)

        def body(carry, g):
            p, state = carry
            updates, state = opt.update(g, state, p)
            return (apply_updates(p, updates), state), None

        return jax.lax.scan(body, (p0, opt.init(p0)), jax.tree.map(jnp.asarray, grads))[0][0]

    together = jax.jit(jax.vmap(run))(lrs)
    for i, lr in enumerate([1e-3, 1e-2, 1e-1]):
        chex.assert_trees_all_close(
            take(together, i), jax.jit(functools.partial(run, lr))(), rtol=1e-13
        )
