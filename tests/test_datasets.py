"""Tests for nnrs_jax.datasets: MNIST look-up, checksums, downloads, idx and CSV parsing."""

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
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pooch
import pytest

from nnrs_jax import datasets
from nnrs_jax.datasets import MNIST_SHA256, load_csv, load_idx, mnist

TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def _find_shared_mnist() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"]
    if os.environ.get("NNRS_JAX_DATA"):
        env = Path(os.environ["NNRS_JAX_DATA"])
        candidates += [env / "mnist", env]
    for folder in candidates:
        if all((folder / f"{name}.gz").is_file() for name in MNIST_SHA256):
            return folder
    return None


SHARED_MNIST = _find_shared_mnist()
requires_mnist = pytest.mark.skipif(
    SHARED_MNIST is None,
    reason="the four MNIST .gz files are absent from ../shared/data/mnist and $NNRS_JAX_DATA",
)


def _gunzip(name: str) -> bytes:
    assert SHARED_MNIST is not None
    return gzip.decompress((SHARED_MNIST / f"{name}.gz").read_bytes())


def _idx_images(pixels: np.ndarray) -> bytes:
    n, rows, cols = pixels.shape
    return np.array([2051, n, rows, cols], ">u4").tobytes() + pixels.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    return np.array([2049, len(labels)], ">u4").tobytes() + labels.astype(np.uint8).tobytes()


def _write_synthetic_test_split(folder: Path, n: int) -> None:
    """A tiny MNIST-format test split holding ``n`` examples, so ``len(y)`` tells folders apart."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    (folder / TEST_IMAGES).write_bytes(_idx_images(rng.integers(0, 256, (n, 28, 28))))
    (folder / TEST_LABELS).write_bytes(_idx_labels(rng.integers(0, 10, n)))


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test split decoded independently of the library."""
    if SHARED_MNIST is None:
        pytest.skip("shared MNIST data absent")
    images, labels = _gunzip(TEST_IMAGES), _gunzip(TEST_LABELS)
    x = np.frombuffer(images, np.uint8, offset=16).reshape(10000, 784).astype(np.float32) / 255
    y = np.frombuffer(labels, np.uint8, offset=8).astype(np.int32)
    return x, y


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No NNRS_JAX_DATA, no project data/ folder, and a fresh HOME: only ~/.cache is searched."""
    monkeypatch.delenv("NNRS_JAX_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # the per-user cache is then ~/.cache
    monkeypatch.setattr(datasets, "_PROJECT_DATA", None)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


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


@requires_mnist
def test_mnist_truncated_real_file_without_verify(tmp_path: Path) -> None:
    (tmp_path / TEST_IMAGES).write_bytes(_gunzip(TEST_IMAGES)[:-784])
    (tmp_path / TEST_LABELS).write_bytes(_gunzip(TEST_LABELS))
    with pytest.raises(ValueError, match="truncated") as info:
        mnist("test", data_dir=tmp_path, download=False, verify=False)
    assert str(info.value).startswith(f"mnist: {tmp_path / TEST_IMAGES}: ")


def test_lookup_order(isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env, project = tmp_path / "explicit", tmp_path / "env", tmp_path / "project"
    _write_synthetic_test_split(explicit, 5)
    _write_synthetic_test_split(env / "mnist", 3)
    _write_synthetic_test_split(project, 4)
    _write_synthetic_test_split(isolated / ".cache" / "nnrs_jax", 6)
    monkeypatch.setenv("NNRS_JAX_DATA", str(env))
    monkeypatch.setattr(datasets, "_PROJECT_DATA", project)

    def count(**kwargs: object) -> int:
        return len(mnist("test", download=False, verify=False, **kwargs)[1])

    assert count(data_dir=explicit) == 5
    assert count() == 3
    monkeypatch.setenv("NNRS_JAX_DATA", str(tmp_path / "empty"))
    assert count() == 4  # an env folder without the files falls through to the next folder
    monkeypatch.delenv("NNRS_JAX_DATA")
    assert count() == 4
    monkeypatch.setattr(datasets, "_PROJECT_DATA", None)
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
        monkeypatch.setattr(datasets, "_PROJECT_DATA", project)
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


# Pixel scaling: every loader gives float32(pixel) / 255, the correctly rounded quotient. Dividing
# in float64 and rounding once to float32 gives the same bits (53 >= 2·24 + 2 bits, so the
# double rounding is harmless), an independent way to compute the expected values.
_ALL_PIXELS = np.arange(256)
_EXPECTED_SCALED = (_ALL_PIXELS.astype(np.float64) / 255).astype(np.float32)


def test_load_idx_scaling_is_bit_exact(tmp_path: Path) -> None:
    (tmp_path / "i").write_bytes(_idx_images(_ALL_PIXELS.reshape(1, 16, 16)))
    (tmp_path / "l").write_bytes(_idx_labels(np.array([0])))
    x, _ = load_idx(tmp_path / "i", tmp_path / "l")
    np.testing.assert_array_equal(x[0].view(np.uint32), _EXPECTED_SCALED.view(np.uint32))


def test_load_csv_scaling_is_bit_exact(tmp_path: Path) -> None:
    pixels = np.resize(_ALL_PIXELS, 784)  # every value 0..255, repeated
    path = tmp_path / "digits.csv"
    _write_csv(path, _HEADER, [[5, *pixels]])
    x, _ = load_csv(path)
    expected = (pixels.astype(np.float64) / 255).astype(np.float32)
    np.testing.assert_array_equal(x[0].view(np.uint32), expected.view(np.uint32))


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


@requires_mnist
def test_mnist_flatten_false(reference: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = mnist("test", download=False, flatten=False)
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x.reshape(10000, 784), reference[0])
    np.testing.assert_array_equal(y, reference[1])


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


class _TruncatingHandler(http.server.BaseHTTPRequestHandler):
    """Announces a 1 MB body, sends 1 kB of it, then closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20))
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" + b"\x00" * 1022)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve_truncated() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


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
    assert datasets._cache_dir() == Path(pooch.os_cache("nnrs_jax"))
    with _serve(served) as url:
        _, y = mnist("test", mirrors=[url], verify=False, progress=False)
    assert len(y) == 3
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert _leftovers(xdg / "nnrs_jax") == [f"{TEST_IMAGES}.gz", f"{TEST_LABELS}.gz"]
