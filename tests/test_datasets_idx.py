"""Tests for nnrs_jax.datasets.idx: parsing, validating and verifying idx pairs."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from datasets_helpers import (
    _ALL_PIXELS,
    _EXPECTED_SCALED,
    SHARED_MNIST,
    TEST_IMAGES,
    TEST_LABELS,
    _idx_images,
    _idx_labels,
    requires_mnist,
)

from nnrs_jax.datasets import load_idx


@requires_mnist
def test_load_idx_detects_gzip_by_content(
    tmp_path: Path, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    assert SHARED_MNIST is not None
    images, labels = tmp_path / "images.bin", tmp_path / "labels"  # gzipped, no .gz suffix
    shutil.copy(SHARED_MNIST / f"{TEST_IMAGES}.gz", images)
    shutil.copy(SHARED_MNIST / f"{TEST_LABELS}.gz", labels)
    x, y = load_idx(images, labels)
    np.testing.assert_array_equal(x, reference[0])
    np.testing.assert_array_equal(y, reference[1])


def test_load_idx_synthetic_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels, labels = rng.integers(0, 256, (5, 3, 4)), rng.integers(0, 10, 5)
    (tmp_path / "i").write_bytes(_idx_images(pixels))
    (tmp_path / "l.gz").write_bytes(gzip.compress(_idx_labels(labels)))
    x, y = load_idx(tmp_path / "i", tmp_path / "l.gz")
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, pixels.reshape(5, 12).astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels)


_PIXELS = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
_LABELS = np.array([3, 7])


_BAD_IDX = {
    "swapped": (_idx_labels(_LABELS), _idx_labels(_LABELS), "images", "magic number 2051.*swapped"),
    "labels-magic": (_idx_images(_PIXELS), _idx_images(_PIXELS), "labels", "magic number 2049"),
    "two-bytes": (b"\x00\x00", _idx_labels(_LABELS), "images", "got only 2 bytes"),
    "short-header": (b"\x00\x00\x08\x03\x00", _idx_labels(_LABELS), "images", "16-byte header"),
    "truncated-images": (_idx_images(_PIXELS)[:-10], _idx_labels(_LABELS), "images", "truncated"),
    "truncated-labels": (_idx_images(_PIXELS), _idx_labels(_LABELS)[:-1], "labels", "truncated"),
    "trailing": (_idx_images(_PIXELS) + b"\x00", _idx_labels(_LABELS), "images", "trailing bytes"),
    "bad-gzip": (gzip.compress(_idx_images(_PIXELS))[:-20], _idx_labels(_LABELS), "images", "gzip"),
    "counts": (_idx_images(_PIXELS), _idx_labels(np.array([3])), "both", "2 images.*1 labels"),
    "empty-file": (b"", _idx_labels(_LABELS), "images", "got only 0 bytes"),
    "no-examples": (_idx_images(_PIXELS[:0]), _idx_labels(_LABELS[:0]), "images", "0 x 28 x 28"),
    "zero-width": (
        np.array([2051, 2, 28, 0], ">u4").tobytes(),
        _idx_labels(_LABELS),
        "images",
        "every dimension >= 1",
    ),
    # Three 32-bit dimensions whose product overflows int64: still compared exactly.
    "absurd-header": (
        np.array([2051, 2**32 - 1, 2**32 - 1, 2**32 - 1], ">u4").tobytes() + b"\x00" * 64,
        _idx_labels(_LABELS),
        "images",
        "declares 4294967295 x 4294967295 x 4294967295",
    ),
    "text-file": (b"<html>404 Not Found</html>", _idx_labels(_LABELS), "images", "2051"),
    # A float (0x0d) idx file is a valid idx file but not the unsigned-byte type MNIST uses.
    "float-type": (
        b"\x00\x00\x0d\x03" + _idx_images(_PIXELS)[4:],
        _idx_labels(_LABELS),
        "images",
        "2051",
    ),
}


@pytest.mark.parametrize(
    ("images", "labels", "bad", "match"), list(_BAD_IDX.values()), ids=list(_BAD_IDX)
)
def test_load_idx_rejects_bad_files(
    tmp_path: Path, images: bytes, labels: bytes, bad: str, match: str
) -> None:
    images_path, labels_path = tmp_path / "images-idx3-ubyte", tmp_path / "labels-idx1-ubyte"
    images_path.write_bytes(images)
    labels_path.write_bytes(labels)
    with pytest.raises(ValueError, match=match) as info:
        load_idx(images_path, labels_path)
    assert str(info.value).startswith("load_idx: ")
    if bad in ("images", "both"):
        assert str(images_path) in str(info.value)
    if bad in ("labels", "both"):
        assert str(labels_path) in str(info.value)


def test_load_idx_scaling_is_bit_exact(tmp_path: Path) -> None:
    (tmp_path / "i").write_bytes(_idx_images(_ALL_PIXELS.reshape(1, 16, 16)))
    (tmp_path / "l").write_bytes(_idx_labels(np.array([0])))
    x, _ = load_idx(tmp_path / "i", tmp_path / "l")
    np.testing.assert_array_equal(x[0].view(np.uint32), _EXPECTED_SCALED.view(np.uint32))


def test_load_idx_flatten_false_is_nhwc(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pixels, labels = rng.integers(0, 256, (5, 3, 4)), rng.integers(0, 10, 5)
    (tmp_path / "i").write_bytes(_idx_images(pixels))
    (tmp_path / "l").write_bytes(_idx_labels(labels))
    x, y = load_idx(tmp_path / "i", tmp_path / "l", flatten=False)
    assert x.shape == (5, 3, 4, 1) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[..., 0], pixels.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels)
    with pytest.raises(TypeError, match="load_idx: flatten must be a bool, got 0 \\(int\\)"):
        load_idx(tmp_path / "i", tmp_path / "l", flatten=0)  # type: ignore[arg-type]


def _sums(images: bytes, labels: bytes) -> tuple[str, str]:
    return hashlib.sha256(images).hexdigest(), hashlib.sha256(labels).hexdigest()


def test_load_idx_verifies_given_sums(tmp_path: Path) -> None:
    images, labels = _idx_images(_PIXELS), _idx_labels(_LABELS)
    images_path, labels_path = tmp_path / "images.gz", tmp_path / "labels"
    images_path.write_bytes(gzip.compress(images))  # the sums are of the decompressed content
    labels_path.write_bytes(labels)
    good = _sums(images, labels)
    x, y = load_idx(images_path, labels_path, sha256=good)
    np.testing.assert_array_equal(y, _LABELS)
    x_upper, _ = load_idx(images_path, labels_path, sha256=[s.upper() for s in good])
    np.testing.assert_array_equal(x_upper, x)

    other = _idx_labels(np.array([3, 8]))
    expected = hashlib.sha256(other).hexdigest()
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        load_idx(images_path, labels_path, sha256=(good[0], expected))
    message = str(info.value)
    assert message.startswith(f"load_idx: {labels_path}: ")
    assert f"expected {expected}, got {good[1]}" in message


@pytest.mark.parametrize(
    ("sha256", "error", "match"),
    [
        ("ab" * 32, TypeError, "load_idx: sha256 must be a pair of hex strings"),
        (123, TypeError, r"load_idx: sha256 must be a pair of hex strings .*123 \(int\)"),
        ((b"a" * 64, b"b" * 64), TypeError, "load_idx: sha256 must be a pair of hex strings"),
        (("a" * 64,), ValueError, "load_idx: sha256 must hold 2 sums .*got 1"),
        (("a" * 64, "b" * 63), ValueError, "sha256 of the labels must be 64 hexadecimal digits"),
        (("g" * 64, "b" * 64), ValueError, "sha256 of the images must be 64 hexadecimal digits"),
    ],
)
def test_load_idx_rejects_malformed_sums(
    tmp_path: Path, sha256: object, error: type[Exception], match: str
) -> None:
    (tmp_path / "i").write_bytes(_idx_images(_PIXELS))
    (tmp_path / "l").write_bytes(_idx_labels(_LABELS))
    with pytest.raises(error, match=match):
        load_idx(tmp_path / "i", tmp_path / "l", sha256=sha256)  # type: ignore[arg-type]


def test_idx_conversion_makes_no_temporary_copy(tmp_path: Path) -> None:
    n = 2000
    rng = np.random.default_rng(2)
    images = _idx_images(rng.integers(0, 256, (n, 28, 28)))
    (tmp_path / "i").write_bytes(images)
    (tmp_path / "l").write_bytes(_idx_labels(rng.integers(0, 10, n)))
    tracemalloc.start()
    try:
        x, _ = load_idx(tmp_path / "i", tmp_path / "l")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The file's bytes and the float32 result (NumPy reports its buffers to tracemalloc); a
    # float64 temporary would add 2 * x.nbytes, a second float32 copy x.nbytes.
    assert peak < len(images) + x.nbytes + x.nbytes // 4, (peak, len(images), x.nbytes)


@pytest.mark.parametrize("n", [1, 3, 7])
def test_loaded_arrays_are_aligned_so_jax_takes_them_without_a_copy(tmp_path: Path, n) -> None:
    """64-byte aligned (NumPy's own arrays are 16): on the CPU ``jax.device_put``, as ``nj.fit``
    calls it, then uses the loader's buffer instead of a second copy of the data set."""
    import jax

    rng = np.random.default_rng(n)
    pixels, labels = rng.integers(0, 256, (n, 5, 3)), rng.integers(0, 10, n)
    (tmp_path / "i").write_bytes(_idx_images(pixels))
    (tmp_path / "l").write_bytes(_idx_labels(labels))
    for flatten in (True, False):
        x, y = load_idx(tmp_path / "i", tmp_path / "l", flatten=flatten)
        for a in (x, y):
            assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.flags.writeable
        np.testing.assert_array_equal(
            x.reshape(n, 15), pixels.reshape(n, 15).astype(np.float32) / np.float32(255)
        )
        np.testing.assert_array_equal(y, labels)
        if jax.default_backend() == "cpu":
            assert jax.device_put(x).unsafe_buffer_pointer() == x.ctypes.data
