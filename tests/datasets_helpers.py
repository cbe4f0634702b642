"""What the dataset tests share: MNIST test data and synthetic idx files.

Their fixtures, ``reference`` and ``isolated``, are in ``conftest.py``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from nnrs_jax.datasets import MNIST_SHA256

TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def _find_shared_mnist() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"]
    if os.environ.get("NNRS_JAX_DATA"):
        env = Path(os.environ["NNRS_JAX_DATA"])
        candidates += [env / "mnist", env]
    for folder in candidates:
        if all((folder / f"{name}.gz").is_file() for name in MNIST_SHA256):
            return folder
    return None


SHARED_MNIST = _find_shared_mnist()
requires_mnist = pytest.mark.skipif(
    SHARED_MNIST is None,
    reason="the four MNIST .gz files are absent from ../shared/data/mnist and $NNRS_JAX_DATA",
)


def _gunzip(name: str) -> bytes:
    assert SHARED_MNIST is not None
    return gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes())


def _idx_images(pixels: np.ndarray) -> bytes:
    n, rows, cols = pixels.shape
    return np.array([2051, n, rows, cols], ">u4").tobytes() + pixels.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return np.array([2049, len(labels)], ">u4").tobytes() + labels.astype(np.uint8).tobytes()


def _write_synthetic_test_split(folder: Path, n: int) -> None:
    """A tiny MNIST-format test split holding ``n`` examples, so ``len(y)`` tells folders apart."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    (folder / TEST_IMAGES).write_bytes(_idx_images(rng.integers(0, 256, (n, 28, 28))))
    (folder / TEST_LABELS).write_bytes(_idx_labels(rng.integers(0, 10, n)))


# Pixel scaling: every loader gives float32(pixel) / 255, the correctly rounded quotient. Dividing
# in float64 and rounding once to float32 gives the same bits (53 >= 2·24 + 2 bits, so the
# double rounding is harmless), an independent way to compute the expected values.
_ALL_PIXELS = np.arange(256)
_EXPECTED_SCALED = (_ALL_PIXELS.astype(np.float64) / 255).astype(np.float32)
