"""One validator per rule for hyperparameters given to factories and functions.

Rules, the same everywhere:

* a NumPy scalar is accepted wherever a Python number is (``np.float32(1e-4)``,
  ``np.int64(3)``); a ``bool`` is never a number;
* a wrong *type* raises `TypeError`, a wrong *value* (out of range, ``inf``, ``NaN``) raises
  `ValueError`;
* every message names the function, the argument, what was expected and what was given:
  ``"l2: lam must be a finite float >= 0, got inf"``.

The checkers return the value converted to a plain Python ``float`` or ``int``, so that a
factory stores hashable, comparable hyperparameters (equal settings give equal objects).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_bool", "check_choice", "check_float", "check_int", "check_probability"]


def _shown(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_float(
    name: str,
    arg: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` within the given bounds.

    Args:
        name: the function or factory, e.g. ``"adam"``.
        arg: the argument, e.g. ``"eps"``.
        low, high: optional bounds; ``low_open`` / ``high_open`` make them strict.

    Raises:
        TypeError: ``value`` is not a real number (``bool`` included).
        ValueError: ``value`` is ``inf``, ``NaN`` or outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: {arg} must be a float, got {_shown(value)}")
    value = float(value)
    lo = "" if low is None else (f"> {low:g}" if low_open else f">= {low:g}")
    hi = "" if high is None else (f"< {high:g}" if high_open else f"<= {high:g}")
    want = " and ".join(part for part in (lo, hi) if part)
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(
            f"{name}: {arg} must be a finite float{' ' + want if want else ''}, got {value!r}"
        )
    return value


def check_bool(name: str, arg: str, value: Any) -> bool:
    """``value`` as a ``bool`` (Python or NumPy ``bool_``; never an int such as 0 or 1)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: {arg} must be a bool, got {_shown(value)}")
    return bool(value)


def check_int(name: str, arg: str, value: Any, *, low: int | None = None) -> int:
    """``value`` as an ``int`` (Python or NumPy integer, never ``bool``) with ``value >= low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: {arg} must be an int, got {_shown(value)}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name}: {arg} must be an int >= {low}, got {value}")
    return value


def check_probability(name: str, arg: str, value: Any) -> float:
    """A rate or coefficient in ``[0, 1)`` (dropout rate, momentum, decay)."""
    return check_float(name, arg, value, low=0.0, high=1.0, high_open=True)


def check_choice(name: str, arg: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` is one of the strings ``choices``."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: {arg} must be one of {choices}, got {_shown(value)}")
    if value not in choices:
        raise ValueError(f"{name}: {arg} must be one of {choices}, got {value!r}")
    return value
