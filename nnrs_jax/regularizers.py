"""Weight regularizers: L1 (lasso), L2 (ridge) and elastic net (both)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["Regularizer", "elastic_net", "l1", "l2"]


class Regularizer(NamedTuple):
    """Elastic-net penalty ``l1·Σ|w| + l2·Σw²`` on a weight array; ``l1`` or ``l2`` may be 0.

    Gradient: ``l1·sign(w) + 2·l2·w`` (``sign(0) = 0``). Applied to weights only, never to
    biases. Reference: Zou & Hastie 2005, "Regularization and variable selection via the
    elastic net".
    """

    l1: float = 0.0
    l2: float = 0.0

    def value(self, w: jax.Array) -> jax.Array:
        """The penalty ``l1·Σ|w| + l2·Σw²`` as a scalar of ``w``'s dtype."""
        return self.l1 * jnp.sum(jnp.abs(w)) + self.l2 * jnp.sum(w * w)

    def grad(self, w: jax.Array) -> jax.Array:
        """The gradient ``l1·sign(w) + 2·l2·w``, same shape and dtype as ``w``."""
        return self.l1 * jnp.sign(w) + (2.0 * self.l2) * w


def _check(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def l1(lam: float) -> Regularizer:
    """Lasso: ``lam·Σ|w|``, gradient ``lam·sign(w)``. Reference: Tibshirani 1996."""
    return Regularizer(l1=_check("lam", lam))


def l2(lam: float) -> Regularizer:
    """Ridge (weight decay): ``lam·Σw²``, gradient ``2·lam·w``. Reference: Hoerl & Kennard 1970."""
    return Regularizer(l2=_check("lam", lam))


def elastic_net(l1: float, l2: float) -> Regularizer:
    """Elastic net: ``l1·Σ|w| + l2·Σw²``, gradient ``l1·sign(w) + 2·l2·w``.

    Reference: Zou & Hastie 2005. ``nj.elastic_net(1e-4, 1e-4)`` is the seed's setting.
    """
    return Regularizer(l1=_check("l1", l1), l2=_check("l2", l2))
