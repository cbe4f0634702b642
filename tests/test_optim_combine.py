"""`chain`, and optimizers composed of others, against independent NumPy code; equality.

The compositions: `chain`, the seven optimizers as their documented chains, and `ema` and
`accumulate` around a whole optimizer (their own behaviour is tested in test_optim_wrappers.py).
Then equality: equal settings give equal (and equally hashed) optimizers.

``pytest tests/test_optim_combine.py -s -k numpy`` prints the table
"transformation | mode | max deviation".
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from optim_helpers import (
    LR,
    BadHyperparameter,
    Case,
    NpAccumulate,
    NpAdam,
    NpChain,
    NpDecay,
    NpEma,
    NpGlobalNorm,
    NpLearningRate,
    NpMomentum,
    TransformContract,
    jax_schedule,
    np_constant,
    np_schedule,
    problem,
)

from nnrs_jax.optim.adaptive import AdamState, RmspropState, adam, adamax, adamw, nadam, rmsprop
from nnrs_jax.optim.base import Optimizer, apply_updates
from nnrs_jax.optim.clipping import clip, clip_by_global_norm
from nnrs_jax.optim.combine import chain
from nnrs_jax.optim.gradient_descent import MomentumState, SgdState, momentum, nesterov, sgd
from nnrs_jax.optim.scaling import (
    scale_by_adam,
    scale_by_adamax,
    scale_by_learning_rate,
    scale_by_momentum,
    scale_by_rms,
)
from nnrs_jax.optim.weight_decay import add_decayed_weights, matrices_only
from nnrs_jax.optim.wrappers import accumulate, ema


class TestCombine(TransformContract):
    """`chain`, and `ema` and `accumulate` wrapped around whole optimizers."""

    CASES: ClassVar[dict[str, Case]] = {
        "chain": (
            lambda: chain(
                clip_by_global_norm(3.0),
                scale_by_adam(0.85, 0.99, 1e-6),
                add_decayed_weights(0.1, mask={"w": True, "b": False}),
                scale_by_learning_rate(jax_schedule),
            ),
            lambda: NpChain(
                NpGlobalNorm(3.0),
                NpAdam(0.85, 0.99, 1e-6),
                NpDecay(0.1, ("w",)),
                NpLearningRate(np_schedule),
            ),
        ),
        "ema": (
            lambda: ema(adam(LR, b1=0.85, b2=0.99, eps=1e-6), decay=0.9),
            lambda: NpEma(NpChain(NpAdam(0.85, 0.99, 1e-6), NpLearningRate(np_constant)), 0.9),
        ),
        "accumulate": (
            lambda: accumulate(adam(LR, b1=0.85, b2=0.99, eps=1e-6), every=4),
            lambda: NpAccumulate(NpChain(NpAdam(0.85, 0.99, 1e-6), NpLearningRate(np_constant)), 4),
        ),
        "accumulate(ema)": (
            lambda: accumulate(ema(nesterov(LR, momentum=0.8), decay=0.5), every=3),
            lambda: NpAccumulate(
                NpEma(NpChain(NpMomentum(0.8, True), NpLearningRate(np_constant)), 0.5), 3
            ),
        ),
    }
    BAD_HYPERPARAMETERS: ClassVar[list[BadHyperparameter]] = [
        (lambda: chain(clip(1.0), 0.1), TypeError, "chain: argument 1 must be an Optimizer"),
        (lambda: ema(adam(0.1), 1.0), ValueError, "ema: decay must be a finite float >= 0 and < 1"),
        (lambda: ema(adam(0.1), True), TypeError, "ema: decay must be a float"),
        (lambda: ema("adam", 0.9), TypeError, "ema: optimizer must be an Optimizer"),
        (
            lambda: accumulate(sgd(0.1), every=0),
            ValueError,
            "accumulate: every must be an int >= 1",
        ),
        (
            lambda: accumulate(sgd(0.1), every=2.0),
            TypeError,
            r"every must be an int, got 2.0 \(float\)",
        ),
        (lambda: accumulate(sgd, every=2), TypeError, "accumulate: optimizer must be an Optimiz"),
    ]


# --- the seven optimizers are the documented chains -------------------------------------------

Composition = tuple[Callable[[], Optimizer], Callable[[], Optimizer], type]


def _adam_family(
    make: Callable[..., Optimizer], direction: Callable[..., Optimizer], **extra: bool
) -> Composition:
    """``make`` with β1 = 0.8, β2 = 0.99, eps = 1e-6, and its chain of ``direction`` and the lr."""
    return (
        lambda: make(LR, b1=0.8, b2=0.99, eps=1e-6),
        lambda: chain(direction(0.8, 0.99, 1e-6, **extra), scale_by_learning_rate(LR)),
        AdamState,
    )


COMPOSITIONS: dict[str, Composition] = {
    "sgd": (lambda: sgd(LR), lambda: chain(scale_by_learning_rate(LR)), SgdState),
    "momentum": (
        lambda: momentum(LR, momentum=0.8),
        lambda: chain(scale_by_momentum(0.8), scale_by_learning_rate(LR)),
        MomentumState,
    ),
    "nesterov": (
        lambda: nesterov(LR, momentum=0.8),
        lambda: chain(scale_by_momentum(0.8, nesterov=True), scale_by_learning_rate(LR)),
        MomentumState,
    ),
    "rmsprop": (
        lambda: rmsprop(LR, decay=0.95, eps=1e-6),
        lambda: chain(scale_by_rms(0.95, 1e-6), scale_by_learning_rate(LR)),
        RmspropState,
    ),
    "adam": _adam_family(adam, scale_by_adam),
    "nadam": _adam_family(nadam, scale_by_adam, nesterov=True),
    "adamax": _adam_family(adamax, scale_by_adamax),
    "adamw": (
        lambda: adamw(LR, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1, mask=matrices_only),
        lambda: chain(
            scale_by_adam(0.8, 0.99, 1e-6),
            add_decayed_weights(0.1, mask=matrices_only),
            scale_by_learning_rate(LR),
        ),
        AdamState,
    ),
}


@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_optimizer_is_its_documented_chain(name: str) -> None:
    """Bit for bit the chain's updates; the state is one NamedTuple holding the chain's fields."""
    make, make_chain, state_type = COMPOSITIONS[name]
    opt, chained = make(), make_chain()
    params, grads = problem(seed=5, steps=10)
    p = jax.tree.map(jnp.asarray, params)
    state, chain_state = opt.init(p), chained.init(p)
    for t in range(10):
        g = {k: jnp.asarray(v[t]) for k, v in grads.items()}
        updates, state = opt.update(g, state, p)
        chain_updates, chain_state = chained.update(g, chain_state, p)
        chex.assert_trees_all_equal(updates, chain_updates)
        p = apply_updates(p, updates)
    assert type(state) is state_type
    assert int(state.timestep) == 10
    for child in chain_state:
        for field, value in child._asdict().items():
            chex.assert_trees_all_equal(getattr(state, field), value)


# --- equality: equal settings give equal optimizers -------------------------------------------

FACTORIES: list[Callable[[], Optimizer]] = [
    lambda: sgd(0.1),
    lambda: nadam(0.1, b1=0.8),
    lambda: adamw(np.float32(0.5), weight_decay=1e-3, mask=matrices_only),
    lambda: chain(clip_by_global_norm(1.0), scale_by_adam(), scale_by_learning_rate(0.1)),
    lambda: accumulate(ema(momentum(0.1), decay=0.99), every=4),
]


@pytest.mark.parametrize("make", FACTORIES)
def test_equal_settings_give_equal_optimizers(make: Callable[[], Optimizer]) -> None:
    a, b = make(), make()
    assert a is not b
    assert a == b
    assert hash(a) == hash(b)


def test_different_settings_give_different_optimizers() -> None:
    assert adam(0.1) != adam(0.2)
    assert adam(0.1) != nadam(0.1)
    assert adam(0.1, b1=0.8) != adam(0.1, b1=0.85)
    assert momentum(0.1) != nesterov(0.1)
    assert add_decayed_weights(0.1) != add_decayed_weights(0.1, mask=matrices_only)
    assert accumulate(sgd(0.1), every=2) != accumulate(sgd(0.1), every=3)
    assert chain(clip(1.0), sgd(0.1)) != chain(sgd(0.1), clip(1.0))


def test_unhashable_hyperparameters_compare_by_identity() -> None:
    """A concrete array is read as a float; a traced one and a dict compare by identity."""
    assert scale_by_learning_rate(jnp.asarray(0.1)) == scale_by_learning_rate(0.1)

    def compare(lr, other):
        same = scale_by_learning_rate(lr)
        hash(same)  # hashable all the same, e.g. as a key of a cache of compiled steps
        equal = same == scale_by_learning_rate(lr)
        return jnp.asarray([equal, same != scale_by_learning_rate(other)])

    assert jax.jit(compare)(0.1, 0.1).tolist() == [True, True]
    mask = {"w": True}
    assert add_decayed_weights(0.1, mask) == add_decayed_weights(0.1, mask)
    assert add_decayed_weights(0.1, mask) != add_decayed_weights(0.1, {"w": True})


def test_an_equal_optimizer_reuses_compiled_code() -> None:
    """As a static argument of ``jax.jit`` a new but equal optimizer hits the compilation cache."""
    chex.clear_trace_counter()

    @functools.partial(jax.jit, static_argnums=0)
    @chex.assert_max_traces(n=1)
    def update(opt, g, state, p):
        return opt.update(g, state, p)

    p = {"x": jnp.ones(3)}
    for _ in range(3):
        opt = adamw(1e-3, weight_decay=1e-2, mask=matrices_only)
        update(opt, p, opt.init(p), p)
    with pytest.raises(AssertionError, match="traced > 1"):
        opt = adamw(2e-3, weight_decay=1e-2, mask=matrices_only)
        update(opt, p, opt.init(p), p)


def test_numpy_scalars_are_accepted_and_equal_python_numbers() -> None:
    assert clip(np.float32(0.5)) == clip(0.5)
    assert accumulate(sgd(0.1), every=np.int64(2)) == accumulate(sgd(0.1), every=2)
    assert adamw(np.float64(1e-3), weight_decay=np.float64(1e-4)) == adamw(1e-3, weight_decay=1e-4)
    opt, params = add_decayed_weights(0.1, mask={"w": np.bool_(True)}), {"w": jnp.ones(2)}
    assert opt.update(params, opt.init(params), params)[0]["w"].tolist() == [1.1, 1.1]


def test_wrong_states_raise_type_error() -> None:
    params = {"w": jnp.ones(2)}
    with pytest.raises(TypeError, match=r"the tuple of the 2 children's states, got a 1-tuple"):
        chain(clip(1.0), sgd(0.1)).update(params, (None,), params)
    with pytest.raises(TypeError, match="adam: state must be of type AdamState, got tuple"):
        adam(0.1).update(params, chain(scale_by_adam()).init(params), params)
