"""Shared fixtures. Strict dtype promotion and rank promotion catch silent broadcasting bugs."""

import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "NNRS_JAX_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["NNRS_JAX_DATA"] = str(SHARED_DATA)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)
