"""Tests for nnrs_jax.datasets.mnist: the real splits, file layouts, arguments."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from datasets_helpers import (
    SHARED_MNIST,
    TEST_IMAGES,
    TEST_LABELS,
    _gunzip,
    _idx_images,
    _idx_labels,
    _write_synthetic_test_split,
    requires_mnist,
)

from nnrs_jax.datasets import MNIST_SHA256, mnist


@requires_mnist
@pytest.mark.parametrize(
    ("split", "counts"),
    [
        ("train", [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
        ("test", [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    ],
)
def test_mnist_real_split(split: str, counts: list[int]) -> None:
    assert SHARED_MNIST is not None
    x, y = mnist(split, data_dir=SHARED_MNIST.parent, download=False)
    n = sum(counts)
    assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
    assert x.shape == (n, 784) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.round(x * 255) / 255, x)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), counts)


@requires_mnist
def test_mnist_matches_independent_decoding(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = mnist("test")  # found through $NNRS_JAX_DATA, set by conftest.py when unset
    np.testing.assert_array_equal(x, reference[0])
    np.testing.assert_array_equal(y, reference[1])


@requires_mnist
def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    assert SHARED_MNIST is not None
    shutil.copy(SHARED_MNIST / f"{TEST_IMAGES}.gz", tmp_path)
    labels = bytearray(_gunzip(TEST_LABELS))
    labels[8] = (labels[8] + 1) % 10  # still a valid idx file, but not the canonical one
    bad = tmp_path / f"{TEST_LABELS}.gz"
    bad.write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(ValueError, match="checksum") as info:
        mnist("test", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert message.startswith(f"mnist: {bad}: ")
    assert f"expected {MNIST_SHA256[TEST_LABELS]}, got {hashlib.sha256(labels).hexdigest()}" in (
        message
    )
    _, y = mnist("test", data_dir=tmp_path, download=False, verify=False)
    assert y[0] == labels[8]


@requires_mnist
@pytest.mark.parametrize(
    ("subfolder", "images_name", "labels_name", "compress"),
    [
        ("", TEST_IMAGES, TEST_LABELS, False),
        ("", "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte", False),
        ("mnist", TEST_IMAGES, TEST_LABELS, False),
        ("mnist", "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte", True),
        ("", TEST_IMAGES, TEST_LABELS, True),
    ],
)
def test_mnist_file_layouts(
    tmp_path: Path,
    reference: tuple[np.ndarray, np.ndarray],
    subfolder: str,
    images_name: str,
    labels_name: str,
    compress: bool,
) -> None:
    folder = tmp_path / subfolder
    folder.mkdir(exist_ok=True)
    for name, original in ((images_name, TEST_IMAGES), (labels_name, TEST_LABELS)):
        content = _gunzip(original)
        if compress:
            (folder / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1))
        else:
            (folder / name).write_bytes(content)
    x, y = mnist("test", data_dir=tmp_path, download=False)
    np.testing.assert_array_equal(x, reference[0])
    np.testing.assert_array_equal(y, reference[1])


@requires_mnist
def test_mnist_truncated_real_file_without_verify(tmp_path: Path) -> None:
    (tmp_path / TEST_IMAGES).write_bytes(_gunzip(TEST_IMAGES)[:-784])
    (tmp_path / TEST_LABELS).write_bytes(_gunzip(TEST_LABELS))
    with pytest.raises(ValueError, match="truncated") as info:
        mnist("test", data_dir=tmp_path, download=False, verify=False)
    assert str(info.value).startswith(f"mnist: {tmp_path / TEST_IMAGES}: ")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"split": "validation"}, ValueError, r"mnist: split must be one of .*'validation'"),
        ({"split": 0}, TypeError, r"mnist: split must be one of .*0 \(int\)"),
        ({"timeout": 0}, ValueError, "mnist: timeout must be a finite float > 0, got 0.0"),
        (
            {"timeout": float("nan")},
            ValueError,
            "mnist: timeout must be a finite float > 0, got nan",
        ),
        ({"timeout": "5"}, TypeError, "mnist: timeout must be a float, got '5'"),
        ({"mirrors": "http://example.com/"}, TypeError, "mnist: mirrors must be a sequence"),
        ({"mirrors": [None]}, TypeError, r"mnist: mirrors must be a sequence .*\[None\]"),
        ({"flatten": "no"}, TypeError, "mnist: flatten must be a bool, got 'no' \\(str\\)"),
        ({"verify": 1}, TypeError, "mnist: verify must be a bool, got 1 \\(int\\)"),
        ({"download": None}, TypeError, "mnist: download must be a bool, got None"),
        ({"progress": "yes"}, TypeError, "mnist: progress must be a bool, got 'yes'"),
    ],
)
def test_mnist_rejects_bad_arguments(
    isolated: Path, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    kwargs = {"split": "test", **kwargs}
    with pytest.raises(error, match=match):
        mnist(**kwargs)  # type: ignore[arg-type]
    assert not (isolated / ".cache").exists()  # rejected before any folder is touched


def test_mnist_accepts_numpy_scalars(tmp_path: Path) -> None:
    _write_synthetic_test_split(tmp_path, 4)
    x, _ = mnist(
        "test", tmp_path, np.bool_(False), verify=np.bool_(False), flatten=np.bool_(False),
        timeout=np.float32(2.5),
    )  # fmt: skip
    assert x.shape == (4, 28, 28, 1)


@requires_mnist
def test_mnist_flatten_false(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = mnist("test", download=False, flatten=False)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x.reshape(10000, 784), reference[0])
    np.testing.assert_array_equal(y, reference[1])


@pytest.mark.parametrize(
    ("pixels", "labels", "match"),
    [
        (np.zeros((2, 27, 27)), np.array([1, 2]), "expected images of 28 x 28 pixels, got 27 x 27"),
        (
            np.zeros((2, 28, 28)),
            np.array([1, 10]),
            r"expected labels in 0\.\.9, got labels up to 10",
        ),
    ],
)
def test_mnist_rejects_other_datasets_shapes(
    tmp_path: Path, pixels: np.ndarray, labels: np.ndarray, match: str
) -> None:
    (tmp_path / TEST_IMAGES).write_bytes(_idx_images(pixels))
    (tmp_path / TEST_LABELS).write_bytes(_idx_labels(labels))
    with pytest.raises(ValueError, match=match) as info:
        mnist("test", data_dir=tmp_path, download=False, verify=False)
    assert str(info.value).startswith(f"mnist: {tmp_path}")
