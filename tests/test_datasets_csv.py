"""Tests for nnrs_jax.datasets.csv: the CSV data format."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from datasets_helpers import _ALL_PIXELS

from nnrs_jax.datasets import load_csv


def _write_csv(path: Path, header: list[str], rows: np.ndarray | list[list[object]]) -> None:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


_HEADER = ["label"] + [f"pixel{i}" for i in range(784)]


@pytest.mark.parametrize("label_at", [0, 300])
def test_load_csv_round_trip(tmp_path: Path, label_at: int) -> None:
    rng = np.random.default_rng(label_at)
    pixels, labels = rng.integers(0, 256, (6, 784)), rng.integers(0, 10, 6)
    header = [*_HEADER[1 : label_at + 1], "label", *_HEADER[label_at + 1 :]]
    rows = np.insert(pixels, label_at, labels, axis=1)
    path = tmp_path / "digits.csv"
    _write_csv(path, header, rows)
    x, y = load_csv(path)
    assert x.dtype == np.float32 and y.dtype == np.int32
    np.testing.assert_array_equal(x, pixels.astype(np.float32) / 255)
    np.testing.assert_array_equal(y, labels)


def _row(label: object = 1, pixel: object = 0, n: int = 784) -> list[object]:
    return [label] + [pixel] * n


@pytest.mark.parametrize(
    ("header", "rows", "match"),
    [
        (None, [], "empty"),
        (["digit", *_HEADER[1:]], [_row()], "no 'label' column"),
        (_HEADER[:-1], [_row(n=783)], "expected 785 columns"),
        (_HEADER, [_row(), _row(n=783)], "number of columns changed"),
        (_HEADER, [_row(n=783), _row(n=783)], "expected 785 values per row"),
        (_HEADER, [_row(), _row(pixel="dark")], "could not convert"),
        (_HEADER, [], "no data rows"),
        (_HEADER, [_row(pixel=256)], r"\[0, 255\]"),
        (_HEADER, [_row(label=-1)], "non-negative integers"),
        (_HEADER, [_row(label=1.5)], "non-negative integers"),
        (_HEADER, [_row(label="nan")], "non-negative integers"),
        (_HEADER, [_row(pixel="nan")], r"\[0, 255\], got min nan"),
        (_HEADER, [_row(pixel="inf")], r"\[0, 255\], got min inf"),
        (_HEADER, [_row(pixel=-1)], r"\[0, 255\], got min -1"),
        (_HEADER, [_row(), _row()[:400]], "number of columns changed"),  # a truncated last row
        (_HEADER, [_row(), [1, 2]], "number of columns changed"),
    ],
)
def test_load_csv_errors(
    tmp_path: Path, header: list[str] | None, rows: list[list[object]], match: str
) -> None:
    path = tmp_path / "bad.csv"
    if header is None:
        path.write_text("")
    else:
        _write_csv(path, header, rows)
    with pytest.raises(ValueError, match=match) as info:
        load_csv(path)
    assert str(info.value).startswith(f"load_csv: {path}: ")


def test_load_csv_rejects_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "digits.csv"
    path.write_bytes(gzip.compress(b"label,pixel0\n1,0\n"))  # a gzipped CSV is not read as text
    with pytest.raises(ValueError, match="not a text CSV file") as info:
        load_csv(path)
    assert str(info.value).startswith(f"load_csv: {path}: ")


def test_load_csv_scaling_is_bit_exact(tmp_path: Path) -> None:
    pixels = np.resize(_ALL_PIXELS, 784)  # every value 0..255, repeated
    path = tmp_path / "digits.csv"
    _write_csv(path, _HEADER, [[5, *pixels]])
    x, _ = load_csv(path)
    expected = (pixels.astype(np.float64) / 255).astype(np.float32)
    np.testing.assert_array_equal(x[0].view(np.uint32), expected.view(np.uint32))


def test_load_csv_flatten_false_is_nhwc(tmp_path: Path) -> None:
    pixels = np.arange(2 * 784).reshape(2, 784) % 256
    path = tmp_path / "digits.csv"
    _write_csv(path, _HEADER, np.insert(pixels, 0, [4, 2], axis=1))
    x, y = load_csv(path, flatten=False)
    assert x.shape == (2, 28, 28, 1) and x.dtype == np.float32
    # Row-major: pixel k of a row is image row k // 28, column k % 28.
    np.testing.assert_array_equal(x[..., 0], pixels.reshape(2, 28, 28).astype(np.float32) / 255)
    np.testing.assert_array_equal(y, [4, 2])
    with pytest.raises(TypeError, match="load_csv: flatten must be a bool"):
        load_csv(path, flatten="no")  # type: ignore[arg-type]
