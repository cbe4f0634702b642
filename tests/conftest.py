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
if os.environ.get("NNRS_JAX_DATA"):
    # Absolute, so that subprocesses and notebook kernels started in other folders find it too.
    os.environ["NNRS_JAX_DATA"] = str(Path(os.environ["NNRS_JAX_DATA"]).resolve())


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


def _mnist(split: str):
    from nnrs_jax import datasets

    try:
        return datasets.mnist(split, download=False)
    except FileNotFoundError as error:
        if os.environ.get("CI"):
            pytest.fail(f"MNIST must be present in CI (set NNRS_JAX_DATA): {error}")
        pytest.skip(f"MNIST is absent (set NNRS_JAX_DATA to a folder holding it): {error}")


@pytest.fixture(scope="session")
def mnist_train():
    """The MNIST training split ``(x (60000, 784) float32, y (60000,) int32)``."""
    return _mnist("train")


@pytest.fixture(scope="session")
def mnist_test():
    """The MNIST test split ``(x (10000, 784) float32, y (10000,) int32)``."""
    return _mnist("test")
