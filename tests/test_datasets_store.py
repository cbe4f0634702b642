"""Tests for nnrs_jax.datasets.store: the look-up order, downloads, checksums, cleanup."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pooch
import pytest
from datasets_helpers import (
    SHARED_MNIST,
    TEST_IMAGES,
    TEST_LABELS,
    _gunzip,
    _write_synthetic_test_split,
    requires_mnist,
)

from nnrs_jax.datasets import MNIST_SHA256, mnist, store


class _Quiet:
    """Mixed into a request handler: no log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietHandler(_Quiet, http.server.SimpleHTTPRequestHandler):
    pass


@contextlib.contextmanager
def _serving(handler: Callable[..., http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server answering with ``handler`` for the ``with`` block; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _serve(directory: Path) -> contextlib.AbstractContextManager[str]:
    """Serves the files of ``directory``."""
    return _serving(functools.partial(_QuietHandler, directory=str(directory)))


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_lookup_order(isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, project = tmp_path / "explicit", tmp_path / "env", tmp_path / "project"
    _write_synthetic_test_split(explicit, 5)
    _write_synthetic_test_split(env / "mnist", 3)
    _write_synthetic_test_split(project, 4)
    _write_synthetic_test_split(isolated / ".cache" / "nnrs_jax", 6)
    monkeypatch.setenv("NNRS_JAX_DATA", str(env))
    monkeypatch.setattr(store, "_PROJECT_DATA", project)

    def count(**kwargs: object) -> int:
        return len(mnist("test", download=False, verify=False, **kwargs)[1])

    assert count(data_dir=explicit) == 5
    assert count() == 3
    monkeypatch.setenv("NNRS_JAX_DATA", str(tmp_path / "empty"))
    assert count() == 4  # an env folder without the files falls through to the next folder
    monkeypatch.delenv("NNRS_JAX_DATA")
    assert count() == 4
    monkeypatch.setattr(store, "_PROJECT_DATA", None)
    assert count() == 6


def test_explicit_data_dir_is_the_only_place_searched(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "env"
    _write_synthetic_test_split(env, 3)
    monkeypatch.setenv("NNRS_JAX_DATA", str(env))
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError, match="download=False") as info:
        mnist("test", data_dir=missing, download=False, verify=False)
    assert str(missing) in str(info.value)
    assert str(env) not in str(info.value)


@requires_mnist
def test_download_verifies_and_caches(
    isolated: Path, tmp_path: Path, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    assert SHARED_MNIST is not None
    cache = tmp_path / "cache"
    with _serve(SHARED_MNIST) as url:
        # The first mirror refuses connections, so the second one must be tried.
        x, y = mnist("test", data_dir=cache, mirrors=[_closed_port_url(), url], progress=False)
    np.testing.assert_array_equal(x, reference[0])
    np.testing.assert_array_equal(y, reference[1])
    assert sorted(p.name for p in cache.iterdir()) == [f"{TEST_IMAGES}.gz", f"{TEST_LABELS}.gz"]
    for name in (TEST_IMAGES, TEST_LABELS):
        content = gzip.decompress((cache / f"{name}.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == MNIST_SHA256[name]
    x_cached, _ = mnist("test", data_dir=cache, download=False)
    np.testing.assert_array_equal(x_cached, reference[0])


@requires_mnist
def test_download_default_targets(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert SHARED_MNIST is not None
    env, project = tmp_path / "env", tmp_path / "project"
    with _serve(SHARED_MNIST) as url:
        mnist("test", mirrors=[url])
        assert f"{TEST_IMAGES}.gz" in capsys.readouterr().err  # the progress bar
        assert (isolated / ".cache" / "nnrs_jax" / f"{TEST_LABELS}.gz").is_file()
        # Each stage hides the previous copy, so each one downloads again.
        monkeypatch.setenv("HOME", str(tmp_path / "other-home"))
        monkeypatch.setenv("NNRS_JAX_DATA", str(env))
        mnist("test", mirrors=[url], progress=False)
        assert (env / f"{TEST_IMAGES}.gz").is_file()
        monkeypatch.delenv("NNRS_JAX_DATA")
        project.mkdir()
        monkeypatch.setattr(store, "_PROJECT_DATA", project)
        mnist("test", mirrors=[url], progress=False)
        assert (project / f"{TEST_IMAGES}.gz").is_file()
        assert not (tmp_path / "other-home").exists()
    assert capsys.readouterr().err == ""


@requires_mnist
def test_download_reuses_a_file_already_in_the_target(isolated: Path, tmp_path: Path) -> None:
    assert SHARED_MNIST is not None
    cache, served = tmp_path / "cache", tmp_path / "served"
    cache.mkdir()
    served.mkdir()
    shutil.copy(SHARED_MNIST / f"{TEST_IMAGES}.gz", cache)
    shutil.copy(SHARED_MNIST / f"{TEST_LABELS}.gz", served)  # the server lacks the images
    with _serve(served) as url:
        _, y = mnist("test", data_dir=cache, mirrors=[url], progress=False)
    assert len(y) == 10000
    assert (cache / f"{TEST_LABELS}.gz").is_file()


@requires_mnist
def test_download_rejects_a_corrupt_copy(isolated: Path, tmp_path: Path) -> None:
    assert SHARED_MNIST is not None
    corrupt, cache = tmp_path / "corrupt", tmp_path / "cache"
    corrupt.mkdir()
    images = bytearray(_gunzip(TEST_IMAGES))
    images[1000] ^= 0xFF  # a valid idx file, so only the checksum can tell
    (corrupt / f"{TEST_IMAGES}.gz").write_bytes(gzip.compress(bytes(images), compresslevel=1))
    shutil.copy(SHARED_MNIST / f"{TEST_LABELS}.gz", corrupt)
    with _serve(corrupt) as url, pytest.raises(FileNotFoundError, match="checksum") as info:
        mnist("test", data_dir=cache, mirrors=[url], progress=False)
    assert f"{url}{TEST_IMAGES}.gz" in str(info.value)
    assert f"expected {MNIST_SHA256[TEST_IMAGES]}, got {hashlib.sha256(images).hexdigest()}" in (
        str(info.value)
    )
    assert not cache.exists()  # no temp file, no final file, and not the folder it created
    with _serve(corrupt) as bad_url, _serve(SHARED_MNIST) as good_url:
        _, y = mnist("test", data_dir=cache, mirrors=[bad_url, good_url], progress=False)
    assert len(y) == 10000
    assert sorted(p.name for p in cache.iterdir()) == [f"{TEST_IMAGES}.gz", f"{TEST_LABELS}.gz"]


def test_download_without_verify_still_checks_the_idx_format(
    isolated: Path, tmp_path: Path
) -> None:
    served, cache = tmp_path / "served", tmp_path / "cache"
    _write_synthetic_test_split(served, 7)
    for name in (TEST_IMAGES, TEST_LABELS):
        (served / f"{name}.gz").write_bytes(gzip.compress((served / name).read_bytes()))
    with _serve(served) as url:
        x, y = mnist("test", data_dir=cache, mirrors=[url], verify=False, progress=False)
        assert x.shape == (7, 784) and y.shape == (7,)
        (served / f"{TEST_IMAGES}.gz").write_bytes(gzip.compress(b"<html>not found</html>"))
        with pytest.raises(FileNotFoundError, match="magic number"):
            mnist("test", data_dir=tmp_path / "cache2", mirrors=[url], verify=False)
    assert not (tmp_path / "cache2").exists()


def test_offline_error_names_folders_and_env_var(isolated: Path, tmp_path: Path) -> None:
    mirror = _closed_port_url()
    with pytest.raises(FileNotFoundError) as info:
        mnist("train", mirrors=[mirror], progress=False, timeout=5)
    message = str(info.value)
    cache = isolated / ".cache" / "nnrs_jax"
    assert str(cache) in message
    assert "NNRS_JAX_DATA" in message
    assert f"{mirror}train-images-idx3-ubyte.gz" in message
    assert message.startswith("mnist: ")
    assert not (isolated / ".cache").exists()  # the folders it created are gone again
    with pytest.raises(FileNotFoundError, match="NNRS_JAX_DATA") as info:
        mnist("test", data_dir=tmp_path / "nowhere", download=False)
    assert str(tmp_path / "nowhere") in str(info.value)


class _TruncatingHandler(_Quiet, http.server.BaseHTTPRequestHandler):
    """Announces a 1 MB body, sends 1 kB of it, then closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\x00" * 1022)
        self.wfile.flush()
        self.close_connection = True


def _serve_truncated() -> contextlib.AbstractContextManager[str]:
    return _serving(_TruncatingHandler)


@contextlib.contextmanager
def _silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog does) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_falls_through_a_broken_transfer_and_a_silent_mirror(
    isolated: Path, tmp_path: Path
) -> None:
    served, cache = tmp_path / "served", tmp_path / "a" / "b" / "cache"
    _write_synthetic_test_split(served, 4)
    for name in (TEST_IMAGES, TEST_LABELS):
        (served / f"{name}.gz").write_bytes(gzip.compress((served / name).read_bytes()))
    with _serve_truncated() as broken, _silent_server() as silent:
        with pytest.raises(FileNotFoundError) as info:
            mnist("test", data_dir=cache, mirrors=[broken, silent], verify=False, timeout=0.5)
        message = str(info.value)
        assert f"{broken}{TEST_IMAGES}.gz: " in message and f"{silent}{TEST_IMAGES}.gz: " in message
        assert "timed out" in message.lower()
        assert not (tmp_path / "a").exists()  # every folder it created is removed again
        with _serve(served) as good:
            _, y = mnist("test", data_dir=cache, mirrors=[broken, silent, good], verify=False,
                         timeout=0.5, progress=False)  # fmt: skip
    assert len(y) == 4
    assert _leftovers(cache) == [f"{TEST_IMAGES}.gz", f"{TEST_LABELS}.gz"]


def test_download_keeps_a_verified_file_when_the_other_is_missing(
    isolated: Path, tmp_path: Path
) -> None:
    served, cache = tmp_path / "served", tmp_path / "cache"
    _write_synthetic_test_split(served, 4)
    (served / f"{TEST_IMAGES}.gz").write_bytes(gzip.compress((served / TEST_IMAGES).read_bytes()))
    (served / TEST_LABELS).unlink()
    with _serve(served) as url, pytest.raises(FileNotFoundError, match="404") as info:
        mnist("test", data_dir=cache, mirrors=[url], verify=False, progress=False)
    assert f"{url}{TEST_LABELS}.gz: " in str(info.value)
    # The images arrived whole and checked; the labels left no partial or temp file.
    assert _leftovers(cache) == [f"{TEST_IMAGES}.gz"]


def test_interrupted_download_leaves_nothing(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Interrupted(pooch.HTTPDownloader):
        def __call__(self, url: str, output_file: str, caller: object) -> None:
            Path(output_file).write_bytes(b"\x1f\x8b partial")
            raise KeyboardInterrupt

    monkeypatch.setattr(pooch, "HTTPDownloader", Interrupted)
    cache = tmp_path / "new" / "cache"
    with pytest.raises(KeyboardInterrupt):
        mnist("test", data_dir=cache, mirrors=["http://127.0.0.1:9/"], progress=False)
    assert not (tmp_path / "new").exists()


def test_download_default_target_is_pooch_user_cache(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, xdg = tmp_path / "served", tmp_path / "xdg"
    _write_synthetic_test_split(served, 3)
    for name in (TEST_IMAGES, TEST_LABELS):
        (served / f"{name}.gz").write_bytes(gzip.compress((served / name).read_bytes()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert store._cache_dir() == Path(pooch.os_cache("nnrs_jax"))
    with _serve(served) as url:
        _, y = mnist("test", mirrors=[url], verify=False, progress=False)
    assert len(y) == 3
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert _leftovers(xdg / "nnrs_jax") == [f"{TEST_IMAGES}.gz", f"{TEST_LABELS}.gz"]
