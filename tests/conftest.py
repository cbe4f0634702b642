"""Shared fixtures, and the two configurations the suite runs in.

``pytest`` runs with ``jax_enable_x64`` on, so that every hand-written backward pass is checked
against ``jax.vjp`` / ``jax.grad`` in float64 (to 1e-10). ``pytest --float32`` runs with x64
off — the library's default, what a user gets — the layer, loss, objective, optimizer, training
and property tests (`FLOAT32_MODULES`) and the docstring examples of ``nnrs_jax``; the float32
cases of those modules (parameter id ``f32``) run only there. There a test
is reported as skipped, since it belongs to the x64 run, when it asks for a float64 array (which
JAX would silently truncate to float32), is marked ``@pytest.mark.float64`` or is listed in
`FLOAT64_ONLY`. The docstring examples run only in the float32 run, since they show what a
reader sees (``pytest nnrs_jax`` runs them alone). Both runs use strict dtype promotion and rank
promotion "raise", which catch silent broadcasting bugs, and matrix products at full precision:
on a GPU JAX's default multiplies float32 in TF32 (10-bit mantissas), which no float32 tolerance
here is meant for; on a CPU the setting changes nothing.
"""

import os
from pathlib import Path

import datasets_helpers
import jax
import numpy as np
import pytest

from nnrs_jax.datasets import store

FLOAT32_MODULES = frozenset(
    {
        "test_augment.py",
        "test_combinators.py",
        "test_data_checks.py",
        "test_dropout.py",
        "test_fit.py",
        "test_layer_check.py",
        "test_layer_contract.py",
        "test_layers.py",
        "test_losses.py",
        "test_metrics.py",
        "test_normalization.py",
        "test_objective.py",
        "test_optim.py",
        "test_optim_wrappers.py",
        "test_properties.py",
        "test_train.py",
    }
)
# JAX's warning when float64 is asked for with x64 off; turned into an error, then a skip.
FLOAT64_REQUEST = "Explicitly requested dtype float64"
# Float64-only tests that JAX cannot flag: their NumPy float64 data become float32 silently with
# x64 off, and their tolerance is float64's. A test may also say so itself: @pytest.mark.float64.
FLOAT64_ONLY = frozenset(
    {
        "tests/test_optim.py::test_rule_matches_numpy",
        "tests/test_optim.py::test_vmap_over_four_models_equals_four_runs",
    }
)

# Modules holding the longest tests (notebooks, documentation snippets that train, processes,
# MNIST runs), run first, so that the workers of pytest-xdist do not finish on one of them alone.
FIRST = (
    "test_docs_site.py",
    "test_notebooks.py",
    "test_meshes.py",
    "test_parallel.py",
    "test_train.py",
    "test_ranking_command.py",
    "test_callbacks.py",
    "test_cli.py",
)

PACKAGE = Path(__file__).resolve().parents[1] / "nnrs_jax"  # holds the docstring examples
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "NNRS_JAX_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["NNRS_JAX_DATA"] = str(SHARED_DATA)
# The implementations of `impl="auto"` layers stay the fixed defaults, the same on every host
# and in every process (subprocesses and notebook kernels inherit this); no test writes the
# user's choice file. tests/test_autotune.py measures, with a file of its own.
os.environ.setdefault("NNRS_JAX_AUTOTUNE", "off")
if os.environ.get("NNRS_JAX_DATA"):
    # Absolute, so that subprocesses and notebook kernels started in other folders find it too.
    os.environ["NNRS_JAX_DATA"] = str(Path(os.environ["NNRS_JAX_DATA"]).resolve())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--float32",
        action="store_true",
        help="run the float32 suite with jax_enable_x64 off (the library's default)",
    )


def pytest_configure(config: pytest.Config) -> None:
    float32 = config.getoption("float32")
    jax.config.update("jax_enable_x64", not float32)
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_default_matmul_precision", "highest")
    if float32:
        config.addinivalue_line("filterwarnings", f"error:{FLOAT64_REQUEST}:UserWarning")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    name = collection_path.name
    is_test_module = name.startswith("test_") and name.endswith(".py")
    if config.getoption("float32") and is_test_module and name not in FLOAT32_MODULES:
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: order kept within
    if config.getoption("float32"):
        skip = pytest.mark.skip(reason="a float64 test (it runs without --float32)")
        for item in items:
            if item.get_closest_marker("float64") or item.nodeid.split("[")[0] in FLOAT64_ONLY:
                item.add_marker(skip)
        return

    # The docstring examples, and the float32 cases (id part "f32") of the modules the float32
    # run covers: that run checks them with x64 off, as a user runs them. The float64 cases,
    # and every float32 case of the other modules, run here.
    def elsewhere(item: pytest.Item) -> bool:
        if PACKAGE in item.path.parents:
            return True
        callspec = getattr(item, "callspec", None)
        return (item.path.name in FLOAT32_MODULES and callspec is not None
                and "f32" in callspec.id.split("-"))  # fmt: skip

    moved = [item for item in items if elsewhere(item)]
    if moved:
        config.hook.pytest_deselected(items=moved)
        items[:] = [item for item in items if not elsewhere(item)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    error = call.excinfo
    if (
        error is not None
        and error.errisinstance(UserWarning)
        and FLOAT64_REQUEST in str(error.value)
    ):
        report.outcome = "skipped"
        path, line, _ = item.location
        report.longrepr = (path, line + 1, "Skipped: a float64 test (it runs without --float32)")
    return report


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


def _mnist(split: str):
    from nnrs_jax import datasets

    try:
        return datasets.mnist(split, download=False)
    except FileNotFoundError as error:
        if os.environ.get("CI"):
            pytest.fail(f"MNIST must be present in CI (set NNRS_JAX_DATA): {error}")
        pytest.skip(f"MNIST is absent (set NNRS_JAX_DATA to a folder holding it): {error}")


@pytest.fixture(scope="session")
def mnist_train():
    """The MNIST training split ``(x (60000, 784) float32, y (60000,) int32)``."""
    return _mnist("train")


@pytest.fixture(scope="session")
def mnist_test():
    """The MNIST test split ``(x (10000, 784) float32, y (10000,) int32)``."""
    return _mnist("test")


# The dataset tests' fixtures (tests/test_datasets_*.py).


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST test split decoded independently of the library."""
    if datasets_helpers.SHARED_MNIST is None:
        pytest.skip("shared MNIST data absent")
    images, labels = (
        datasets_helpers._gunzip(datasets_helpers.TEST_IMAGES),
        datasets_helpers._gunzip(datasets_helpers.TEST_LABELS),
    )
    x = np.frombuffer(images, np.uint8, offset=16).reshape(10000, 784).astype(np.float32) / 255
    y = np.frombuffer(labels, np.uint8, offset=8).astype(np.int32)
    return x, y


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No NNRS_JAX_DATA, no project data/ folder, and a fresh HOME: only ~/.cache is searched."""
    monkeypatch.delenv("NNRS_JAX_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # the per-user cache is then ~/.cache
    monkeypatch.setattr(store, "_PROJECT_DATA", None)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home
