"""Finding, downloading and verifying data files: the look-up order and the checksums.

The folders searched, in order: a folder named explicitly (and then only that one),
``$NNRS_JAX_DATA`` when set, the project's ``data/`` folder in a source checkout, and the
per-user cache ``pooch.os_cache("nnrs_jax")``. Downloads go through pooch into a temp file that
is renamed into place only once the caller's check of its content has passed. Checksums are the
SHA-256 of a file's decompressed content, so a copy compressed any way verifies.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Only a source checkout has a project data/ folder; an installed package has none.
_PROJECT_DATA = _PROJECT_ROOT / "data" if (_PROJECT_ROOT / "pyproject.toml").is_file() else None
_CHUNK = 1 << 16


class _MirrorsFailed(Exception):
    """No mirror served a valid copy; ``errors`` holds one line per attempt."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


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
    """Raise `ValueError` naming ``where``, both sums and ``hint`` unless ``buf`` hashes to
    ``expected``."""
    got = hashlib.sha256(buf).hexdigest()
    if got != expected:
        raise ValueError(
            f"{where}: SHA-256 checksum mismatch of the decompressed content: expected "
            f"{expected}, got {got}. {hint}"
        )


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
    """The one folder downloads go to: ``data_dir``, ``$NNRS_JAX_DATA``, a writable project
    ``data/``, else the per-user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("NNRS_JAX_DATA"):
        return Path(os.environ["NNRS_JAX_DATA"]).expanduser()
    project = _project_data()
    if project is not None and os.access(project, os.W_OK | os.X_OK):
        return project
    return _cache_dir()


def _find(folder: Path, name: str, subfolder: str) -> Path | None:
    """The first copy of ``name`` in ``folder`` or ``folder/subfolder``: raw, dotted, then
    gzipped (``train-images-idx3-ubyte`` is also found as ``train-images.idx3-ubyte``)."""
    dotted = name.replace("-idx", ".idx")
    for where in (folder, folder / subfolder):
        for candidate in (name, dotted, f"{name}.gz", f"{dotted}.gz"):
            if (where / candidate).is_file():
                return where / candidate
    return None


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
    func: str,
    fname: str,
    folder: Path,
    mirrors: Sequence[str],
    check: Callable[[bytes, str], None],
    progress: bool,
    timeout: float,
) -> None:
    """Download ``fname`` into ``folder`` from the first mirror serving a valid copy.

    ``check(content, url)`` receives each downloaded copy's decompressed content and raises
    `ValueError` to reject it. pooch streams each attempt into a temp file beside the final one
    and renames it only after the downloader below returns, so a copy that fails the check, or
    an interrupted transfer, never becomes a file that a later call would trust.

    Raises:
        _MirrorsFailed: every mirror failed; its ``errors`` name each URL and its error.
    """
    import pooch

    def download(url: str, output_file: str, caller: pooch.Pooch | None) -> None:
        if progress:
            print(f"{func}: downloading {url} into {folder}", file=sys.stderr)
        pooch.HTTPDownloader(progressbar=progress, chunk_size=_CHUNK, timeout=timeout)(
            url, output_file, caller
        )
        check(_read(Path(output_file), url), url)

    errors = []
    for mirror in mirrors:
        url = f"{mirror.rstrip('/')}/{fname}"
        try:
            with _quiet(pooch.get_logger()):
                # No known_hash: the check verifies the decompressed content instead, the sum
                # that holds however a copy was compressed.
                pooch.retrieve(url, None, fname=fname, path=folder, downloader=download)
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
    """Remove ``folders`` in order, stopping at the first one that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a file did arrive) or already gone
            return
