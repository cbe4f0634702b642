"""Weight regularizers: L1 (lasso), L2 (ridge) and elastic net (both)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nnrs_jax._validate import check_float

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


def l1(lam: float) -> Regularizer:
    """Lasso: ``lam·Σ|w|``, gradient ``lam·sign(w)``. Reference: Tibshirani 1996.

    Args:
        lam: the strength, a finite float >= 0 (a NumPy scalar is fine).

    Raises:
        TypeError: ``lam`` is not a real number.
        ValueError: ``lam`` is negative, ``inf`` or ``NaN``.

    Examples:
        >>> import nnrs_jax as nj
        >>> nj.l1(1e-4)
        Regularizer(l1=0.0001, l2=0.0)
    """
    return Regularizer(l1=check_float("l1", "lam", lam, low=0.0))


def l2(lam: float) -> Regularizer:
    """Ridge (weight decay): ``lam·Σw²``, gradient ``2·lam·w``. Reference: Hoerl & Kennard 1970.

    Args:
        lam: the strength, a finite float >= 0 (a NumPy scalar is fine).

    Raises:
        TypeError: ``lam`` is not a real number.
        ValueError: ``lam`` is negative, ``inf`` or ``NaN``.

    Examples:
        >>> import numpy as np, nnrs_jax as nj
        >>> nj.l2(np.float32(0.5))
        Regularizer(l1=0.0, l2=0.5)
    """
    return Regularizer(l2=check_float("l2", "lam", lam, low=0.0))


def elastic_net(l1: float, l2: float) -> Regularizer:
    """Elastic net: ``l1·Σ|w| + l2·Σw²``, gradient ``l1·sign(w) + 2·l2·w``.

    Reference: Zou & Hastie 2005. ``nj.elastic_net(1e-4, 1e-4)`` is the seed's setting.

    Args:
        l1: the strength of ``Σ|w|``, a finite float >= 0 (may be 0).
        l2: the strength of ``Σw²``, a finite float >= 0 (may be 0).

    Raises:
        TypeError: a strength is not a real number.
        ValueError: a strength is negative, ``inf`` or ``NaN``.

    Examples:
        >>> import jax.numpy as jnp, nnrs_jax as nj
        >>> reg = nj.elastic_net(0.25, 0.5)
        >>> float(reg.value(jnp.array([1.0, -2.0])))  # 0.25·3 + 0.5·5
        3.25
    """
    return Regularizer(
        l1=check_float("elastic_net", "l1", l1, low=0.0),
        l2=check_float("elastic_net", "l2", l2, low=0.0),
    )
