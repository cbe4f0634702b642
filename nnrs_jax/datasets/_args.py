"""Argument checks shared by the dataset loaders."""

from __future__ import annotations

from typing import Any

import numpy as np


def _check_flag(func: str, arg: str, value: Any) -> bool:
    """``value`` as a ``bool`` (Python or NumPy); a `TypeError` naming ``func`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{func}: {arg} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)
