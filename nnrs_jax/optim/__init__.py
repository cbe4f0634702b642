"""Optimizers as pure state transitions over pytrees: ``Optimizer(init, update)``.

Three layers, each made of `Optimizer` values:

* transformations: `scale_by_learning_rate`, `scale_by_momentum`, `scale_by_rms`,
  `scale_by_adam`, `scale_by_adamax` (`nnrs_jax.optim.scaling`), `clip`, `clip_by_global_norm`
  (`nnrs_jax.optim.clipping`), `add_decayed_weights` (`nnrs_jax.optim.weight_decay`), composed
  by `chain` (`nnrs_jax.optim.combine`);
* the classic optimizers (`nnrs_jax.optim.gradient_descent`, `nnrs_jax.optim.adaptive`):
  `sgd`, `momentum`, `nesterov`, `rmsprop`, `adam`, `nadam`, `adamax`, `adamw`, each a chain of
  transformations whose state is kept as one NamedTuple with an int32 ``timestep`` (0 before the
  first update, incremented before it is used, so ``t = 1`` on the first step) and, where the
  rule needs them, ``velocity`` (first moment / momentum buffer) and ``scaling_factor`` (second
  moment / infinity norm) with the tree, shapes and dtypes of the params;
* wrappers (`nnrs_jax.optim.wrappers`): `ema` (an average of the params, read with
  `ema_params`) and `accumulate` (gradient accumulation over several steps).

Factories bind their hyperparameters to module-level functions (`bind`), so equal settings give
equal optimizers: ``adam(1e-3) == adam(1e-3)``.

Examples:
    >>> import jax, jax.numpy as jnp
    >>> from nnrs_jax.optim import adam, apply_updates
    >>> opt = adam(0.1)
    >>> params = {"x": jnp.array([1.0, -2.0], jnp.float32)}
    >>> state = opt.init(params)
    >>> @jax.jit
    ... def step(params, state):
    ...     grads = jax.grad(lambda p: jnp.sum(p["x"] ** 2))(params)
    ...     updates, state = opt.update(grads, state, params)
    ...     return apply_updates(params, updates), state
    >>> for _ in range(100):
    ...     params, state = step(params, state)
    >>> int(state.timestep), bool(jnp.max(jnp.abs(params["x"])) < 0.1)
    (100, True)
"""

from nnrs_jax.optim.adaptive import (
    AdamState,
    RmspropState,
    adam,
    adamax,
    adamw,
    nadam,
    rmsprop,
)
from nnrs_jax.optim.base import Optimizer, apply_updates
from nnrs_jax.optim.clipping import ClipByGlobalNormState, ClipState, clip, clip_by_global_norm
from nnrs_jax.optim.combine import chain
from nnrs_jax.optim.gradient_descent import MomentumState, SgdState, momentum, nesterov, sgd
from nnrs_jax.optim.scaling import (
    ScaleByAdamaxState,
    ScaleByAdamState,
    ScaleByLearningRateState,
    ScaleByMomentumState,
    ScaleByRmsState,
    scale_by_adam,
    scale_by_adamax,
    scale_by_learning_rate,
    scale_by_momentum,
    scale_by_rms,
)
from nnrs_jax.optim.weight_decay import AddDecayedWeightsState, add_decayed_weights, matrices_only
from nnrs_jax.optim.wrappers import AccumulateState, EmaState, accumulate, ema, ema_params

__all__ = [
    "AccumulateState",
    "AdamState",
    "AddDecayedWeightsState",
    "ClipByGlobalNormState",
    "ClipState",
    "EmaState",
    "MomentumState",
    "Optimizer",
    "RmspropState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByLearningRateState",
    "ScaleByMomentumState",
    "ScaleByRmsState",
    "SgdState",
    "accumulate",
    "adam",
    "adamax",
    "adamw",
    "add_decayed_weights",
    "apply_updates",
    "chain",
    "clip",
    "clip_by_global_norm",
    "ema",
    "ema_params",
    "matrices_only",
    "momentum",
    "nadam",
    "nesterov",
    "rmsprop",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_momentum",
    "scale_by_rms",
    "sgd",
]
