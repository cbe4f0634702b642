"""The CSV data format of the seed: a header row, a ``label`` column and 784 pixel columns."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from nnrs_jax._validate import check_bool

_CSV_SIDE = 28  # the rows hold 28 x 28 MNIST-sized images
_CSV_PIXELS = _CSV_SIDE * _CSV_SIDE


def load_csv(
    path: str | os.PathLike[str], *, flatten: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load the seed's CSV format: a header row, a ``label`` column and 784 pixel columns.

    The label column is found by its header name (``label``, any case; usually the first
    column); the other 784 columns are the pixels of a 28 x 28 image in row-major order, in
    ``[0, 255]``. Values already scaled to ``[0, 1]`` cannot be told apart and would be divided
    by 255 again. The structure is checked (see Raises); a CSV file carries no checksum.

    Args:
        path: the CSV file.
        flatten: ``True`` gives ``x`` of shape ``(N, 784)``, ``False`` gives
            ``(N, 28, 28, 1)`` (NHWC).

    Returns:
        ``(x, y)``: ``x`` float32 equal to ``float32(pixel) / 255``, ``y`` int32 ``(N,)``.

    Raises:
        ValueError: naming ``load_csv`` and the file, for a file that is not text, an empty file,
            a header without a ``label`` column or without 785 columns, rows of another length,
            non-numeric values, labels that are not non-negative integers, or pixels outside
            ``[0, 255]`` (NaN included).
        TypeError: ``flatten`` is not a bool.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = Path(tmp.name) / "digits.csv"
        >>> rows = np.zeros((3, 785), int)
        >>> rows[:, 0], rows[1, 1:] = [4, 0, 9], 255
        >>> header = ",".join(["label"] + [f"pixel{i}" for i in range(784)])
        >>> np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")
        >>> x, y = load_csv(path, flatten=False)
        >>> x.shape, x.dtype, y.tolist(), float(x[1].min()), float(x[2].max())
        ((3, 28, 28, 1), dtype('float32'), [4, 0, 9], 1.0, 0.0)
        >>> tmp.cleanup()
    """
    func = "load_csv"
    flatten = check_bool(func, "flatten", flatten)
    path = Path(path)
    where = f"{func}: {path}"
    try:
        with path.open() as f:
            header = f.readline()
            if not header.strip():
                raise ValueError(f"{where}: empty CSV file, expected a header row then data rows")
            names = [h.strip().strip("\"'").lower() for h in header.split(",")]
            if "label" not in names:
                raise ValueError(
                    f"{where}: no 'label' column in the header, got columns {names[:5]}"
                    + (" …" if len(names) > 5 else "")
                )
            if len(names) != _CSV_PIXELS + 1:
                raise ValueError(
                    f"{where}: expected {_CSV_PIXELS + 1} columns (label + {_CSV_PIXELS} "
                    f"pixels) in the header, got {len(names)}"
                )
            try:
                with warnings.catch_warnings():
                    # A header-only file is reported below as a ValueError rather than a warning.
                    warnings.simplefilter("ignore", UserWarning)
                    data = np.loadtxt(f, delimiter=",", dtype=np.float32, ndmin=2)
            except ValueError as err:
                raise ValueError(
                    f"{where}: malformed data (rows counted after the header): {err}"
                ) from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not a text CSV file ({err})") from None
    if data.shape[0] == 0:
        raise ValueError(f"{where}: the CSV file has a header but no data rows")
    if data.shape[1] != len(names):
        raise ValueError(
            f"{where}: expected {len(names)} values per row like the header, got {data.shape[1]}"
        )
    col = names.index("label")
    labels = data[:, col]
    if not (np.all(labels >= 0) and np.all(labels == np.floor(labels))):
        raise ValueError(
            f"{where}: labels must be non-negative integers, got {labels[:10]}"
            + (" …" if len(labels) > 10 else "")
        )
    y = labels.astype(np.int32)
    pixels = np.delete(data, col, axis=1)
    del data, labels
    if not np.all((pixels >= 0) & (pixels <= 255)):
        raise ValueError(
            f"{where}: pixel values must lie in [0, 255], got min {pixels.min()} and max "
            f"{pixels.max()}"
        )
    # The parsed floats are already the single float32 copy: divide them in place.
    pixels /= np.float32(255)
    if not flatten:
        pixels = pixels.reshape(-1, _CSV_SIDE, _CSV_SIDE, 1)
    return pixels, y
