"""MNIST (LeCun et al. 1998): the four idx files, their SHA-256 sums, mirrors and :func:`mnist`."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnrs_jax._validate import check_bool, check_choice, check_float
from nnrs_jax.datasets.idx import _idx_shape, _parse_pair
from nnrs_jax.datasets.store import (
    _check_sha256,
    _download_folder,
    _fetch,
    _find,
    _MirrorsFailed,
    _new_folders,
    _read,
    _remove_if_empty,
    _search_folders,
)

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
_SUBFOLDER = "mnist"  # a data folder may hold the files directly or in this subfolder
_MNIST_SIDE = 28
_MNIST_CLASSES = 10

_MNIST_HINT = (
    "The file is corrupt or is not the canonical MNIST file; delete it to download it again, or "
    "pass verify=False (--no-verify) for another MNIST-format dataset such as Fashion-MNIST."
)


def _load_mnist_file(path: Path, name: str, verify: bool) -> tuple[bytes, str]:
    where = f"mnist: {path}"
    buf = _read(path, where)
    if verify:
        _check_sha256(buf, MNIST_SHA256[name], where, _MNIST_HINT)
    return buf, where


def _check_download(name: str, verify: bool, buf: bytes, url: str) -> None:
    """Reject a downloaded copy of ``name`` whose sum (when ``verify``) or idx structure is
    wrong."""
    if verify:
        _check_sha256(buf, MNIST_SHA256[name], url, "The mirror serves a corrupt copy.")
    _idx_shape(buf, url, images="images" in name)


def _not_found(
    split: str, names: tuple[str, str], folders: list[Path], target: Path | None, errors: list[str]
) -> str:
    lines = [
        f"mnist: MNIST {split} split not found: looked for {names[0]} and {names[1]} (raw or "
        f".gz, directly or in a {_SUBFOLDER}/ subfolder) in:",
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
        arrays aligned to 64 bytes, so that on the CPU ``jax.device_put`` (and so ``nj.fit``)
        uses them in place rather than copying the data set.

    Raises:
        FileNotFoundError: no folder holds the split and downloading is off or failed; the
            message lists the folders searched, how to set ``NNRS_JAX_DATA``, and each mirror's
            error.
        ValueError: a local file fails its checksum or is not a valid MNIST idx file (the
            message names the file, the expected and the actual value), or ``split`` or
            ``timeout`` is invalid.
        TypeError: ``mirrors`` is not a sequence of URL strings, ``split`` is not a string,
            ``flatten``, ``verify``, ``download`` or ``progress`` is not a bool.

    Examples:
        >>> x, y = mnist("test", flatten=False)  # doctest: +SKIP
        >>> x.shape, x.dtype, y.shape, y.dtype  # doctest: +SKIP
        ((10000, 28, 28, 1), dtype('float32'), (10000,), dtype('int32'))
    """
    func = "mnist"
    check_choice(func, "split", split, tuple(_SPLITS))
    flatten = check_bool(func, "flatten", flatten)
    verify = check_bool(func, "verify", verify)
    download = check_bool(func, "download", download)
    progress = check_bool(func, "progress", progress)
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
        paths = [_find(folder, name, _SUBFOLDER) for name in names]
        if paths[0] is not None and paths[1] is not None:
            break
    else:
        if not download:
            raise FileNotFoundError(_not_found(split, names, folders, None, []))
        target = _download_folder(data_dir)
        created = _new_folders(target)
        try:
            for i, name in enumerate(names):
                paths[i] = _find(target, name, _SUBFOLDER)
                if paths[i] is None:
                    check = functools.partial(_check_download, name, verify)
                    _fetch(func, f"{name}.gz", target, mirrors, check, progress, timeout)
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
