"""Datasets as NumPy arrays: MNIST (found locally or downloaded, checksummed), idx pairs, CSV.

Every loader returns ``(x, y)``. ``x`` is float32 in ``[0, 1]``, each value the float32 quotient
``float32(pixel) / 255`` (the same bits from every loader), of shape ``(N, rows·cols)`` with
``flatten=True`` (the default) or ``(N, rows, cols, 1)`` with ``flatten=False`` (NHWC, channel
last, as convolution layers take it); ``y`` is int32 of shape ``(N,)``. The arrays stay on the
host; the training code moves them to the device once.

What is verified:

* :func:`mnist` checks the SHA-256 of each file's decompressed content against
  :data:`MNIST_SHA256` (unless ``verify=False``), then the idx structure.
* :func:`load_idx` checks the idx structure: magic numbers, declared dimensions against the bytes
  present, equal image and label counts. It checks SHA-256 sums only when given ``sha256=``.
* :func:`load_csv` checks the structure: a ``label`` column and 784 pixel columns, rows of
  equal length, numbers only, labels that are non-negative integers, pixels in ``[0, 255]``. A
  CSV file carries no checksum.

Every failed check raises `ValueError` naming the function, the file, and the expected and
actual values.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import re
import sys
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nnrs_jax._validate import check_choice, check_float

__all__ = ["MNIST_MIRRORS", "MNIST_SHA256", "load_csv", "load_idx", "mnist"]

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
"""Base URLs serving the four gzipped MNIST files, tried in order."""

MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""SHA-256 of each file's decompressed content, so a copy compressed any way still verifies."""

_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Only a source checkout has a project data/ folder; an installed package has none.
_PROJECT_DATA = _PROJECT_ROOT / "data" if (_PROJECT_ROOT / "pyproject.toml").is_file() else None
_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (count, rows, cols)
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (count)
_MAGICS = (_IMAGES_MAGIC, _LABELS_MAGIC)
_MNIST_SIDE = 28
_MNIST_CLASSES = 10
_CSV_PIXELS = _MNIST_SIDE * _MNIST_SIDE
_CHUNK = 1 << 16
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class _MirrorsFailed(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _check_flag(func: str, arg: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{func}: {arg} must be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def _read(path: Path, where: str) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic ``1f 8b``."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{where}: corrupt or truncated gzip data ({err})") from None


def _check_sha256(buf: bytes, expected: str, where: str, hint: str) -> None:
    got = hashlib.sha256(buf).hexdigest()
    if got != expected:
        raise ValueError(
            f"{where}: SHA-256 checksum mismatch of the decompressed content: expected "
            f"{expected}, got {got}. {hint}"
        )


_MNIST_HINT = (
    "The file is corrupt or is not the canonical MNIST file; delete it to download it again, or "
    "pass verify=False (--no-verify) for another MNIST-format dataset such as Fashion-MNIST."
)


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


def _to_unit_float32(pixels: np.ndarray) -> np.ndarray:
    """``float32(pixel) / 255``: one float32 copy, divided in place with no float64 temporary."""
    x = pixels.astype(np.float32)
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
    y = np.frombuffer(labels, np.uint8, offset=8).astype(np.int32)
    return x, y


def _check_sums(func: str, sha256: Any) -> tuple[str, str]:
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

    Example:
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
    flatten = _check_flag(func, "flatten", flatten)
    sums = None if sha256 is None else _check_sums(func, sha256)
    paths = (Path(images_path), Path(labels_path))
    wheres = tuple(f"{func}: {path}" for path in paths)
    bufs = tuple(_read(path, where) for path, where in zip(paths, wheres))
    if sums is not None:
        hint = "The file is corrupt or is not the file these sums describe."
        for buf, expected, where in zip(bufs, sums, wheres):
            _check_sha256(buf, expected, where, hint)
    return _parse_pair(func, bufs[0], wheres[0], bufs[1], wheres[1], flatten)


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

    Example:
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
    flatten = _check_flag(func, "flatten", flatten)
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
        pixels = pixels.reshape(-1, _MNIST_SIDE, _MNIST_SIDE, 1)
    return pixels, y


def _cache_dir() -> Path:
    # Imported here, not at the top: pooch (and the HTTP stack behind it) is needed only to find
    # the cache and to download, and importing nnrs_jax should stay light.
    import pooch

    return Path(pooch.os_cache("nnrs_jax"))


def _project_data() -> Path | None:
    return _PROJECT_DATA if _PROJECT_DATA is not None and _PROJECT_DATA.is_dir() else None


def _search_folders(data_dir: str | os.PathLike[str] | None) -> Iterator[Path]:
    """The folders to search, in order; lazily, so pooch is imported only if the cache is."""
    if data_dir is not None:
        yield Path(data_dir).expanduser()
        return
    if os.environ.get("NNRS_JAX_DATA"):
        yield Path(os.environ["NNRS_JAX_DATA"]).expanduser()
    if (project := _project_data()) is not None:
        yield project
    yield _cache_dir()


def _download_folder(data_dir: str | os.PathLike[str] | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("NNRS_JAX_DATA"):
        return Path(os.environ["NNRS_JAX_DATA"]).expanduser()
    project = _project_data()
    if project is not None and os.access(project, os.W_OK | os.X_OK):
        return project
    return _cache_dir()


def _find(folder: Path, name: str) -> Path | None:
    """The first copy of ``name`` in ``folder`` or ``folder/mnist``: raw, dotted, then gzipped."""
    dotted = name.replace("-idx", ".idx")
    for where in (folder, folder / "mnist"):
        for candidate in (name, dotted, f"{name}.gz", f"{dotted}.gz"):
            if (where / candidate).is_file():
                return where / candidate
    return None


def _load_mnist_file(path: Path, name: str, verify: bool) -> tuple[bytes, str]:
    where = f"mnist: {path}"
    buf = _read(path, where)
    if verify:
        _check_sha256(buf, MNIST_SHA256[name], where, _MNIST_HINT)
    return buf, where


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """Hide pooch's INFO lines: its advice to record the hash is meant for pooch's own users."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fetch(
    name: str,
    folder: Path,
    mirrors: Sequence[str],
    verify: bool,
    progress: bool,
    timeout: float,
) -> None:
    """Download ``name.gz`` into ``folder`` from the first mirror serving a valid copy.

    pooch streams each attempt into a temp file beside the final one and renames it only after
    the downloader below returns, so a copy that fails the checksum or the idx check, or an
    interrupted transfer, never becomes a file that a later call would trust.
    """
    import pooch

    def download(url: str, output_file: str, caller: pooch.Pooch | None) -> None:
        if progress:
            print(f"mnist: downloading {url} into {folder}", file=sys.stderr)
        pooch.HTTPDownloader(progressbar=progress, chunk_size=_CHUNK, timeout=timeout)(
            url, output_file, caller
        )
        buf = _read(Path(output_file), url)
        if verify:
            _check_sha256(buf, MNIST_SHA256[name], url, "The mirror serves a corrupt copy.")
        _idx_shape(buf, url, images="images" in name)

    errors = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{name}.gz"
        try:
            with _quiet(pooch.get_logger()):
                # No known_hash: the downloader checks the decompressed content instead, the
                # sum that holds however a copy was compressed.
                pooch.retrieve(url, None, fname=f"{name}.gz", path=folder, downloader=download)
            return
        except (OSError, ValueError) as err:  # requests' errors are OSErrors
            errors.append(f"{url}: {err}")
    raise _MirrorsFailed(errors or ["no mirrors given"])


def _new_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a file did arrive) or already gone
            return


def _not_found(
    split: str, names: tuple[str, str], folders: list[Path], target: Path | None, errors: list[str]
) -> str:
    lines = [
        f"mnist: MNIST {split} split not found: looked for {names[0]} and {names[1]} (raw or "
        ".gz, directly or in a mnist/ subfolder) in:",
        *(f"  {folder}" for folder in folders),
        "Set NNRS_JAX_DATA to a folder holding these files (export NNRS_JAX_DATA=/path/to/data), "
        "or pass data_dir=.",
    ]
    if target is None:
        lines.append("Downloading is off (download=False).")
    else:
        lines.append(f"Downloading into {target} failed:")
        lines.extend(f"  {error}" for error in errors)
    return "\n".join(lines)


def mnist(
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    *,
    flatten: bool = True,
    verify: bool = True,
    progress: bool = True,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    timeout: float = 30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Load MNIST (LeCun et al. 1998): 60000 training or 10000 test digits of 28 x 28 pixels.

    Where it looks, in order, taking the first folder that holds both files of the split:

    1. ``data_dir`` when given — and then *only* there: a folder named explicitly is never
       silently replaced by another copy.
    2. ``$NNRS_JAX_DATA`` when set.
    3. The project's ``data/`` folder, in a source checkout where it exists.
    4. The per-user cache, ``pooch.os_cache("nnrs_jax")``: ``~/.cache/nnrs_jax`` on Linux
       (``$XDG_CACHE_HOME/nnrs_jax`` when set), ``~/Library/Caches/nnrs_jax`` on macOS,
       ``%LOCALAPPDATA%\\nnrs_jax\\nnrs_jax\\Cache`` on Windows.

    In each folder a file may sit directly or in a ``mnist/`` subfolder, raw
    (``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte``) or gzipped (the same names with
    ``.gz``; gzip is detected by content). With ``verify=True`` the SHA-256 of the decompressed
    content is checked against :data:`MNIST_SHA256`, so any compression verifies; the idx
    structure (see :func:`load_idx`), the 28 x 28 size and the labels ``0..9`` are always
    checked.

    When no folder holds the split and ``download`` is true, the missing ``.gz`` files are
    downloaded with pooch directly into one folder: ``data_dir`` if given, else
    ``$NNRS_JAX_DATA`` if set, else the project's ``data/`` if it exists and is writable, else
    the per-user cache. A file of the split already in that folder is reused. The mirrors are
    tried in turn; each download goes to a temp file in that folder and is renamed into place
    only once its checksum and idx structure are verified. A failed download leaves nothing
    behind: no partial file, and no folder that the call created.

    Args:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000).
        data_dir: a folder to use instead of the default search (see above).
        download: download missing files from ``mirrors``.
        flatten: ``True`` gives images of shape ``(N, 784)``, ``False`` gives
            ``(N, 28, 28, 1)`` (NHWC, channel last).
        verify: check the SHA-256 sums. ``False`` loads any MNIST-format idx folder with the
            MNIST file names (Fashion-MNIST, KMNIST); the structure is still checked.
        progress: show a download progress bar on stderr.
        mirrors: base URLs tried in order; defaults to :data:`MNIST_MIRRORS`.
        timeout: seconds to wait on a mirror before trying the next one.

    Returns:
        ``(x, y)``: ``x`` float32 ``(N, 784)`` or ``(N, 28, 28, 1)`` equal to
        ``float32(pixel) / 255`` in ``[0, 1]``, ``y`` int32 ``(N,)`` in ``0..9``, as NumPy
        arrays.

    Raises:
        FileNotFoundError: no folder holds the split and downloading is off or failed; the
            message lists the folders searched, how to set ``NNRS_JAX_DATA``, and each mirror's
            error.
        ValueError: a local file fails its checksum or is not a valid MNIST idx file (the
            message names the file, the expected and the actual value), or ``split`` or
            ``timeout`` is invalid.
        TypeError: ``mirrors`` is not a sequence of URL strings, ``split`` is not a string,
            ``flatten``, ``verify``, ``download`` or ``progress`` is not a bool.

    Example:
        >>> x, y = mnist("test", flatten=False)  # doctest: +SKIP
        >>> x.shape, x.dtype, y.shape, y.dtype  # doctest: +SKIP
        ((10000, 28, 28, 1), dtype('float32'), (10000,), dtype('int32'))
    """
    func = "mnist"
    check_choice(func, "split", split, tuple(_SPLITS))
    flatten = _check_flag(func, "flatten", flatten)
    verify = _check_flag(func, "verify", verify)
    download = _check_flag(func, "download", download)
    progress = _check_flag(func, "progress", progress)
    if isinstance(mirrors, str) or not (
        isinstance(mirrors, Sequence) and all(isinstance(m, str) for m in mirrors)
    ):
        raise TypeError(
            f"{func}: mirrors must be a sequence of base URL strings, got {mirrors!r} "
            f"({type(mirrors).__name__})"
        )
    timeout = check_float(func, "timeout", timeout, low=0.0, low_open=True)
    names = _SPLITS[split]
    folders: list[Path] = []  # those searched, for the error message
    paths: list[Path | None] = [None, None]
    for folder in _search_folders(data_dir):
        folders.append(folder)
        paths = [_find(folder, name) for name in names]
        if paths[0] is not None and paths[1] is not None:
            break
    else:
        if not download:
            raise FileNotFoundError(_not_found(split, names, folders, None, []))
        target = _download_folder(data_dir)
        created = _new_folders(target)
        try:
            for i, name in enumerate(names):
                paths[i] = _find(target, name)
                if paths[i] is None:
                    _fetch(name, target, mirrors, verify, progress, timeout)
                    paths[i] = target / f"{name}.gz"
        except _MirrorsFailed as err:
            _remove_if_empty(created)
            raise FileNotFoundError(_not_found(split, names, folders, target, err.errors)) from None
        except BaseException:
            _remove_if_empty(created)
            raise
    images, images_where = _load_mnist_file(paths[0], names[0], verify)
    labels, labels_where = _load_mnist_file(paths[1], names[1], verify)
    x, y = _parse_pair(func, images, images_where, labels, labels_where, flatten, _MNIST_SIDE)
    if y.max() >= _MNIST_CLASSES:
        raise ValueError(
            f"{labels_where}: expected labels in 0..{_MNIST_CLASSES - 1}, got labels up to "
            f"{y.max()}; load other label sets with load_idx"
        )
    return x, y
