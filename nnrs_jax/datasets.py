"""Datasets as numpy arrays: MNIST (found locally or downloaded, checksummed), idx pairs, CSV.

Every loader returns ``(x, y)`` with ``x`` float32 of shape ``(N, features)`` scaled to
``[0, 1]`` (``pixel / 255``) and ``y`` int32 of shape ``(N,)``. The arrays stay on the host; the
training code moves them to the device once.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

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
_CSV_PIXELS = 784
_CHUNK = 1 << 16


class _MirrorsFailed(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _read(path: Path, source: str) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic ``1f 8b``."""
    data = path.read_bytes()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{source}: corrupt or truncated gzip data ({err})") from None


def _check_sha256(buf: bytes, name: str, source: str) -> None:
    got = hashlib.sha256(buf).hexdigest()
    if got != MNIST_SHA256[name]:
        raise ValueError(
            f"{source}: SHA-256 checksum mismatch for {name}: expected {MNIST_SHA256[name]}, "
            f"got {got}. The file is corrupt or is not the canonical MNIST file; delete it to "
            "download it again, or pass verify=False (--no-verify) for another MNIST-format "
            "dataset such as Fashion-MNIST."
        )


def _idx_shape(buf: bytes, source: str, *, images: bool) -> tuple[int, ...]:
    """Validate an idx header against the payload; return ``(n, rows, cols)`` or ``(n,)``."""
    magic, ndim, kind = (_IMAGES_MAGIC, 3, "images") if images else (_LABELS_MAGIC, 1, "labels")
    header = 4 + 4 * ndim
    # The magic number is checked first: it tells a swapped or foreign file apart best.
    got = int.from_bytes(buf[:4], "big") if len(buf) >= 4 else None
    if got != magic:
        found = f"got only {len(buf)} bytes" if got is None else f"got {got} (0x{got:08x})"
        raise ValueError(
            f"{source}: not an idx {kind} file: expected magic number {magic} (0x{magic:08x}, "
            f"unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}), {found}"
            + (" — were the images and labels files swapped?" if got in _MAGICS else "")
        )
    if len(buf) < header:
        raise ValueError(
            f"{source}: too short for an idx {kind} file: expected a {header}-byte header, "
            f"got {len(buf)} bytes"
        )
    dims = tuple(int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    payload = int(np.prod(dims, dtype=np.int64))
    if len(buf) - header != payload:
        shape = " x ".join(map(str, dims))
        raise ValueError(
            f"{source}: the idx header declares {shape} = {payload} bytes of {kind}, "
            f"the file holds {len(buf) - header}"
            + (" (truncated)" if len(buf) - header < payload else " (trailing bytes)")
        )
    return dims


def _parse_pair(
    images: bytes, images_source: str, labels: bytes, labels_source: str
) -> tuple[np.ndarray, np.ndarray]:
    n, rows, cols = _idx_shape(images, images_source, images=True)
    (m,) = _idx_shape(labels, labels_source, images=False)
    if n != m:
        raise ValueError(
            f"image and label counts differ: {images_source} holds {n} images, "
            f"{labels_source} holds {m} labels"
        )
    # frombuffer is a view of the file's bytes, so astype makes the only copy: the result.
    x = np.frombuffer(images, np.uint8, offset=16).reshape(n, rows * cols).astype(np.float32)
    x /= 255
    y = np.frombuffer(labels, np.uint8, offset=8).astype(np.int32)
    return x, y


def load_idx(
    images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Load any MNIST-format idx pair (MNIST, Fashion-MNIST, KMNIST, …), gzipped or raw.

    Gzip is detected by the magic bytes ``1f 8b``, whatever the file name. The images file must
    have magic number 2051 (unsigned bytes, 3 dimensions ``(N, rows, cols)``), the labels file
    2049 (unsigned bytes, 1 dimension ``(N,)``); the declared sizes must match the bytes present
    and both files must hold the same ``N``. No checksum is checked.

    Args:
        images_path: the idx3 images file.
        labels_path: the idx1 labels file.

    Returns:
        ``(x, y)``: ``x`` float32 ``(N, rows·cols)`` equal to ``pixel / 255``, ``y`` int32 ``(N,)``.

    Raises:
        ValueError: naming the file, for a bad magic number, a truncated or oversized payload,
            corrupt gzip data, or image and label counts that differ.
        FileNotFoundError: if a file does not exist.

    Example:
        >>> x, y = load_idx("fashion/train-images-idx3-ubyte.gz",
        ...                 "fashion/train-labels-idx1-ubyte.gz")  # doctest: +SKIP
        >>> x.shape, x.dtype, y.dtype  # doctest: +SKIP
        ((60000, 784), dtype('float32'), dtype('int32'))
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = _read(images_path, str(images_path))
    labels = _read(labels_path, str(labels_path))
    return _parse_pair(images, str(images_path), labels, str(labels_path))


def load_csv(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load the seed's CSV format: a header row, a ``label`` column and 784 pixel columns.

    The label column is found by its header name (``label``, any case; usually the first
    column); the other 784 columns are pixels in ``[0, 255]``, in file order. Values already
    scaled to ``[0, 1]`` cannot be told apart and would be divided by 255 again.

    Args:
        path: the CSV file.

    Returns:
        ``(x, y)``: ``x`` float32 ``(N, 784)`` equal to ``pixel / 255``, ``y`` int32 ``(N,)``.

    Raises:
        ValueError: naming the file, for an empty file, a header without a ``label`` column or
            without 785 columns, rows of another length, non-numeric values, labels that are not
            non-negative integers, or pixels outside ``[0, 255]``.

    Example:
        >>> x, y = load_csv("data/mnist_train.csv")  # doctest: +SKIP
        >>> x.shape, y.shape  # doctest: +SKIP
        ((60000, 784), (60000,))
    """
    path = Path(path)
    with path.open() as f:
        header = f.readline()
        if not header.strip():
            raise ValueError(f"{path}: empty CSV file, expected a header row then data rows")
        names = [h.strip().strip("\"'").lower() for h in header.split(",")]
        if "label" not in names:
            raise ValueError(
                f"{path}: no 'label' column in the header, got columns {names[:5]}"
                + (" …" if len(names) > 5 else "")
            )
        if len(names) != _CSV_PIXELS + 1:
            raise ValueError(
                f"{path}: expected {_CSV_PIXELS + 1} columns (label + {_CSV_PIXELS} pixels) in "
                f"the header, got {len(names)}"
            )
        try:
            with warnings.catch_warnings():
                # A header-only file is reported below as a ValueError rather than a warning.
                warnings.simplefilter("ignore", UserWarning)
                data = np.loadtxt(f, delimiter=",", dtype=np.float32, ndmin=2)
        except ValueError as err:
            raise ValueError(
                f"{path}: malformed data (rows counted after the header): {err}"
            ) from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: the CSV file has a header but no data rows")
    if data.shape[1] != len(names):
        raise ValueError(
            f"{path}: expected {len(names)} values per row like the header, got {data.shape[1]}"
        )
    col = names.index("label")
    labels = data[:, col]
    if not (np.all(labels >= 0) and np.all(labels == np.floor(labels))):
        raise ValueError(f"{path}: labels must be non-negative integers, got {labels[:10]} …")
    y = labels.astype(np.int32)
    x = np.delete(data, col, axis=1)
    del data
    if not np.all((x >= 0) & (x <= 255)):
        raise ValueError(
            f"{path}: pixel values must lie in [0, 255], got min {x.min()} and max {x.max()}"
        )
    x /= 255
    return x, y


def _cache_dir() -> Path:
    return Path.home() / ".cache" / "nnrs_jax"


def _project_data() -> Path | None:
    return _PROJECT_DATA if _PROJECT_DATA is not None and _PROJECT_DATA.is_dir() else None


def _search_folders(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    folders = []
    if os.environ.get("NNRS_JAX_DATA"):
        folders.append(Path(os.environ["NNRS_JAX_DATA"]).expanduser())
    if (project := _project_data()) is not None:
        folders.append(project)
    folders.append(_cache_dir())
    return folders


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


def _load_checked(path: Path, name: str, verify: bool) -> bytes:
    buf = _read(path, str(path))
    if verify:
        _check_sha256(buf, name, str(path))
    return buf


def _fetch(
    name: str,
    folder: Path,
    mirrors: Sequence[str],
    verify: bool,
    progress: bool,
    timeout: float,
) -> tuple[Path, bytes]:
    """Download ``name.gz`` into ``folder`` from the first mirror serving a valid copy.

    Each attempt writes a temp file beside the final one and renames it only once verified, so
    an interrupted or rejected download never leaves a file that a later call would trust.
    """
    final = folder / f"{name}.gz"
    errors = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{name}.gz"
        tmp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
            tmp = Path(tmp_name)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                size = r.headers.get("Content-Length")
                with tqdm(
                    total=int(size) if size else None,
                    desc=f"{name}.gz",
                    unit="B",
                    unit_scale=True,
                    file=sys.stderr,
                    disable=not progress,
                ) as bar:
                    while chunk := r.read(_CHUNK):
                        out.write(chunk)
                        bar.update(len(chunk))
            buf = _read(tmp, url)
            if verify:
                _check_sha256(buf, name, url)
            _idx_shape(buf, url, images="images" in name)
            os.replace(tmp, final)
            return final, buf
        except (OSError, ValueError, http.client.HTTPException) as err:
            errors.append(f"{url}: {err}")
        finally:
            # Also on KeyboardInterrupt; after os.replace the temp name no longer exists.
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    raise _MirrorsFailed(errors or ["no mirrors given"])


def _not_found(
    split: str, names: tuple[str, str], folders: list[Path], target: Path | None, errors: list[str]
) -> str:
    lines = [
        f"MNIST {split} split not found: looked for {names[0]} and {names[1]} (raw or .gz, "
        "directly or in a mnist/ subfolder) in:",
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
    4. ``~/.cache/nnrs_jax``.

    In each folder a file may sit directly or in a ``mnist/`` subfolder, raw
    (``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte``) or gzipped (the same names with
    ``.gz``; gzip is detected by content). The decompressed content is checked against
    :data:`MNIST_SHA256`, so any compression verifies.

    When no folder holds the split and ``download`` is true, the missing ``.gz`` files are
    downloaded directly into one folder: ``data_dir`` if given, else ``$NNRS_JAX_DATA`` if set,
    else the project's ``data/`` if it exists and is writable, else ``~/.cache/nnrs_jax``
    (created). A file of the split already in that folder is reused. Each mirror is tried in
    turn; a download goes to a temp file in that folder, is verified, then renamed into place,
    and a failed or rejected download leaves nothing behind.

    Args:
        split: ``"train"`` (60000 examples) or ``"test"`` (10000).
        data_dir: a folder to use instead of the default search (see above).
        download: download missing files from ``mirrors``.
        verify: check the SHA-256 sums. ``False`` loads any MNIST-format idx folder with the
            MNIST file names (Fashion-MNIST, KMNIST); the idx format is still validated.
        progress: show a download progress bar on stderr.
        mirrors: base URLs tried in order; defaults to :data:`MNIST_MIRRORS`.
        timeout: seconds to wait on a mirror before trying the next one.

    Returns:
        ``(x, y)``: ``x`` float32 ``(N, 784)`` equal to ``pixel / 255`` in ``[0, 1]``, ``y``
        int32 ``(N,)`` in ``0..9``, as numpy arrays.

    Raises:
        FileNotFoundError: no folder holds the split and downloading is off or failed; the
            message lists the folders searched, how to set ``NNRS_JAX_DATA``, and each mirror's
            error.
        ValueError: a local file fails its checksum or is not a valid idx file (the message
            names the file), or ``split`` or ``timeout`` is invalid.
        TypeError: ``mirrors`` is a single string rather than a sequence of URLs.

    Example:
        >>> x, y = mnist("test")  # doctest: +SKIP
        >>> x.shape, x.dtype, y.shape, y.dtype  # doctest: +SKIP
        ((10000, 784), dtype('float32'), (10000,), dtype('int32'))
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    if isinstance(mirrors, str):
        raise TypeError(f"mirrors must be a sequence of base URLs, got the string {mirrors!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    names = _SPLITS[split]
    folders = _search_folders(data_dir)
    for folder in folders:
        paths = [_find(folder, name) for name in names]
        if paths[0] is not None and paths[1] is not None:
            images = _load_checked(paths[0], names[0], verify)
            labels = _load_checked(paths[1], names[1], verify)
            return _parse_pair(images, str(paths[0]), labels, str(paths[1]))
    if not download:
        raise FileNotFoundError(_not_found(split, names, folders, None, []))
    target = _download_folder(data_dir)
    loaded = []
    for name in names:
        path = _find(target, name)
        if path is not None:
            loaded.append((_load_checked(path, name, verify), str(path)))
            continue
        try:
            path, buf = _fetch(name, target, mirrors, verify, progress, timeout)
        except _MirrorsFailed as err:
            raise FileNotFoundError(_not_found(split, names, folders, target, err.errors)) from None
        loaded.append((buf, str(path)))
    (images, images_source), (labels, labels_source) = loaded
    return _parse_pair(images, images_source, labels, labels_source)
