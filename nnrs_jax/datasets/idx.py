"""The idx format (LeCun's MNIST files): reading, validating and decoding an images/labels pair.

An idx file is a 4-byte big-endian magic number (``0x00000803`` for unsigned-byte images of 3
dimensions, ``0x00000801`` for unsigned-byte labels of 1 dimension), one 4-byte big-endian size
per dimension, then the values. :func:`load_idx` reads any such pair, gzipped or raw.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nnrs_jax._validate import check_bool
from nnrs_jax.datasets.store import _check_sha256, _read

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
_MAGICS = (_IMAGES_MAGIC, _LABELS_MAGIC)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _idx_shape(buf: bytes, where: str, *, images: bool) -> tuple[int, ...]:
    """Validate an idx header against the payload; return ``(n, rows, cols)`` or ``(n,)``."""
    magic, ndim, kind = (_IMAGES_MAGIC, 3, "images") if images else (_LABELS_MAGIC, 1, "labels")
    header = 4 + 4 * ndim
    # The magic number is checked first: it tells a swapped or foreign file apart best.
    got = int.from_bytes(buf[:4], "big") if len(buf) >= 4 else None
    if got != magic:
        found = f"got only {len(buf)} bytes" if got is None else f"got {got} (0x{got:08x})"
        raise ValueError(
            f"{where}: not an idx {kind} file: expected magic number {magic} (0x{magic:08x}, "
            f"unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}), {found}"
            + (" — were the images and labels files swapped?" if got in _MAGICS else "")
        )
    if len(buf) < header:
        raise ValueError(
            f"{where}: too short for an idx {kind} file: expected a {header}-byte header, "
            f"got {len(buf)} bytes"
        )
    dims = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    shape = " x ".join(map(str, dims))
    if 0 in dims:
        raise ValueError(
            f"{where}: the idx header declares {shape} {kind}: expected every dimension >= 1"
        )
    # Python ints: three declared 32-bit dimensions can overflow int64.
    payload = math.prod(dims)
    if len(buf) - header != payload:
        raise ValueError(
            f"{where}: the idx header declares {shape} = {payload} bytes of {kind}, "
            f"the file holds {len(buf) - header}"
            + (" (truncated)" if len(buf) - header < payload else " (trailing bytes)")
        )
    return dims


ALIGNMENT = 64
"""Byte alignment of the arrays the loaders return: what XLA's CPU client needs to use a NumPy
array in place, so ``jax.device_put(x)`` (as ``nj.fit`` calls it) makes no second copy."""


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized array whose data starts on an `ALIGNMENT`-byte boundary.

    NumPy's allocator aligns to 16 bytes; a 64-byte aligned array is taken by JAX's CPU client
    without a copy (``jax.device_put(x).unsafe_buffer_pointer() == x.ctypes.data``).
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + size].view(dtype).reshape(shape)


def _to_unit_float32(pixels: np.ndarray) -> np.ndarray:
    """``float32(pixel) / 255``: one aligned float32 copy, divided in place (no float64)."""
    x = _aligned_empty(pixels.shape, np.float32)
    x[...] = pixels
    x /= np.float32(255)
    return x


def _parse_pair(
    func: str,
    images: bytes,
    images_where: str,
    labels: bytes,
    labels_where: str,
    flatten: bool,
    side: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a validated images/labels pair into ``(x, y)``; ``side`` requires square images
    of that size."""
    n, rows, cols = _idx_shape(images, images_where, images=True)
    (m,) = _idx_shape(labels, labels_where, images=False)
    if n != m:
        raise ValueError(
            f"{func}: image and label counts differ: {images_where} holds {n} images, "
            f"{labels_where} holds {m} labels"
        )
    if side is not None and (rows, cols) != (side, side):
        raise ValueError(
            f"{images_where}: expected images of {side} x {side} pixels, got {rows} x {cols}; "
            "load other sizes with load_idx"
        )
    shape = (n, rows * cols) if flatten else (n, rows, cols, 1)
    # frombuffer views the decompressed bytes, so the float32 result is the only copy made.
    x = _to_unit_float32(np.frombuffer(images, np.uint8, offset=16).reshape(shape))
    y = _aligned_empty((m,), np.int32)
    y[...] = np.frombuffer(labels, np.uint8, offset=8)
    return x, y


def _check_sums(func: str, sha256: Any) -> tuple[str, str]:
    """``sha256`` as a lower-case ``(images, labels)`` pair of 64-digit hex strings."""
    if isinstance(sha256, (str, bytes)) or not (
        isinstance(sha256, Sequence) and all(isinstance(s, str) for s in sha256)
    ):
        raise TypeError(
            f"{func}: sha256 must be a pair of hex strings (images, labels), got {sha256!r} "
            f"({type(sha256).__name__})"
        )
    if len(sha256) != 2:
        raise ValueError(
            f"{func}: sha256 must hold 2 sums (images, labels), got {len(sha256)}: {sha256!r}"
        )
    sums = (sha256[0].lower(), sha256[1].lower())
    for which, s in zip(("images", "labels"), sums):
        if not _SHA256_HEX.fullmatch(s):
            raise ValueError(
                f"{func}: sha256 of the {which} must be 64 hexadecimal digits, got {s!r}"
            )
    return sums


def load_idx(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    sha256: Sequence[str] | None = None,
    flatten: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load any MNIST-format idx pair (MNIST, Fashion-MNIST, KMNIST, …), gzipped or raw.

    Gzip is detected by the magic bytes ``1f 8b``, whatever the file name. The images file must
    have magic number 2051 (unsigned bytes, 3 dimensions ``(N, rows, cols)``), the labels file
    2049 (unsigned bytes, 1 dimension ``(N,)``); every dimension must be at least 1, the
    declared sizes must match the bytes present, and both files must hold the same ``N``. These
    structural checks always run; a checksum is checked only when ``sha256`` is given.

    Args:
        images_path: the idx3 images file.
        labels_path: the idx1 labels file.
        sha256: optional ``(images_sum, labels_sum)``, the SHA-256 hex digests of the two files'
            *decompressed* content (``gunzip -c FILE | sha256sum``), as in :data:`MNIST_SHA256`;
            a file compressed any way then verifies. Case is ignored.
        flatten: ``True`` gives ``x`` of shape ``(N, rows·cols)``, ``False`` gives
            ``(N, rows, cols, 1)`` (NHWC).

    Returns:
        ``(x, y)``: ``x`` float32 equal to ``float32(pixel) / 255``, ``y`` int32 ``(N,)``.

    Raises:
        ValueError: naming ``load_idx`` and the file, for a bad magic number, an empty
            dimension, a truncated or oversized payload, corrupt gzip data, image and label
            counts that differ, a checksum mismatch (expected and actual sum), or a malformed
            ``sha256``.
        TypeError: ``sha256`` is not a pair of strings, or ``flatten`` is not a bool.
        FileNotFoundError: if a file does not exist.

    Examples:
        >>> import gzip, hashlib, tempfile
        >>> from pathlib import Path
        >>> tmp = tempfile.TemporaryDirectory()
        >>> images = np.array([2051, 2, 2, 3], ">u4").tobytes() + bytes(range(0, 240, 20))
        >>> labels = np.array([2049, 2], ">u4").tobytes() + bytes([3, 7])
        >>> _ = (Path(tmp.name) / "images.gz").write_bytes(gzip.compress(images))
        >>> _ = (Path(tmp.name) / "labels").write_bytes(labels)
        >>> sums = (hashlib.sha256(images).hexdigest(), hashlib.sha256(labels).hexdigest())
        >>> x, y = load_idx(Path(tmp.name) / "images.gz", Path(tmp.name) / "labels",
        ...                 sha256=sums, flatten=False)
        >>> x.shape, x.dtype, y.tolist()
        ((2, 2, 3, 1), dtype('float32'), [3, 7])
        >>> bool(x[1, 1, 2, 0] == np.float32(220) / np.float32(255))
        True
        >>> tmp.cleanup()
    """
    func = "load_idx"
    flatten = check_bool(func, "flatten", flatten)
    sums = None if sha256 is None else _check_sums(func, sha256)
    paths = (Path(images_path), Path(labels_path))
    wheres = tuple(f"{func}: {path}" for path in paths)
    bufs = tuple(_read(path, where) for path, where in zip(paths, wheres))
    if sums is not None:
        hint = "The file is corrupt or is not the file these sums describe."
        for buf, expected, where in zip(bufs, sums, wheres):
            _check_sha256(buf, expected, where, hint)
    return _parse_pair(func, bufs[0], wheres[0], bufs[1], wheres[1], flatten)
