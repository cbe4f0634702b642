"""Bad input over the public API: one table, each case a clear ValueError or TypeError.

Every case names the function (or layer) in the message and says what was expected and what
was given; none may end in an XLA traceback or a silent wrong result.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nnrs_jax as nj

KEY = jax.random.key(0)
X = np.zeros((4, 6), np.float32)
Y = np.zeros((4,), np.int32)
IMG = np.zeros((2, 8, 8, 1), np.float32)


def mlp() -> nj.Layer:
    return nj.serial(nj.dense(6, 5), nj.relu(), nj.dense(5, 3))


def fit(**kwargs) -> Callable[[], object]:
    args = {"x": X, "y": Y, "key": KEY, "steps": 1, "progress": False, **kwargs}
    model = args.pop("model", mlp())
    optimizer = args.pop("optimizer", nj.sgd(0.1))
    return lambda: nj.fit(model, nj.cross_entropy, optimizer, **args)


def apply(layer: nj.Layer, x, **kwargs) -> Callable[[], object]:
    return lambda: layer.apply(layer.init(KEY), jnp.asarray(x), **kwargs)


class Case(NamedTuple):
    group: str
    call: Callable[[], object]
    error: type[Exception]
    match: str


CASES = {
    # Inputs: rank, width, dtype.
    "dense wrong width": Case(
        "inputs",
        apply(nj.dense(6, 3), np.zeros((4, 5), np.float32)),
        ValueError,
        r"dense\(6, 3\).*expected 6 features, got 5",
    ),
    "dense wrong rank": Case(
        "inputs",
        apply(nj.dense(6, 3), np.zeros((4, 2, 3), np.float32)),
        ValueError,
        r"dense\(6, 3\).*\(batch, 6\)",
    ),
    "dense integer input": Case(
        "inputs",
        apply(nj.dense(6, 3), np.zeros((4, 6), np.int32)),
        TypeError,
        r"dense\(6, 3\).*floating",
    ),
    "conv2d wrong rank": Case("inputs", apply(nj.conv2d(1, 4, 3), X), ValueError, r"conv2d"),
    "conv2d wrong channels": Case(
        "inputs", apply(nj.conv2d(3, 4, 3), IMG), ValueError, r"conv2d.*3.*1"
    ),
    "conv2d kernel too large": Case(
        "inputs", apply(nj.conv2d(1, 4, 9), IMG), ValueError, r"conv2d"
    ),
    "max_pool window too large": Case(
        "inputs", apply(nj.max_pool(9), IMG), ValueError, r"max_pool"
    ),
    "batch_norm wrong features": Case(
        "inputs",
        apply(nj.batch_norm(4), X, state=nj.batch_norm(4).init_state()),
        ValueError,
        r"batch_norm\(4\)",
    ),
    "dropout without key": Case(
        "inputs",
        apply(nj.dropout(0.5), X, train=True),
        TypeError,
        r"dropout\(0\.5\): training needs a PRNG key",
    ),
    "batch_norm without state": Case(
        "inputs", apply(nj.batch_norm(6), X), TypeError, r"batch_norm\(6\).*state"
    ),
    "residual shape change": Case(
        "inputs",
        apply(nj.residual(nj.dense(6, 3)), X),
        ValueError,
        r"residual.*keep its input's shape",
    ),
    # Data given to fit / evaluate.
    "fit labels out of range": Case(
        "data",
        fit(y=np.full(4, 7, np.int32)),
        ValueError,
        r"fit: labels y must lie in \[0, 3\).*\[7, 7\]",
    ),
    "fit labels wrong shape": Case(
        "data", fit(y=np.zeros((4, 2, 2), np.int32)), ValueError, r"fit: y must be labels"
    ),
    "fit float labels": Case(
        "data",
        fit(y=np.zeros(4, np.float32)),
        TypeError,
        r"fit: labels y must have an integer dtype",
    ),
    "fit length mismatch": Case(
        "data",
        fit(y=np.zeros(3, np.int32)),
        ValueError,
        r"fit: x and y must have the same length, got 4 and 3",
    ),
    "fit empty": Case("data", fit(x=X[:0], y=Y[:0]), ValueError, r"fit: x and y are empty"),
    "fit nan in x": Case(
        "data",
        fit(x=np.where(np.eye(4, 6) > 0, np.nan, 0).astype(np.float32)),
        ValueError,
        r"fit: x contains NaN or inf \(first at row 0\)",
    ),
    "fit 1-d x": Case("data", fit(x=np.zeros(4, np.float32)), ValueError, r"fit: x must be"),
    "fit integer x": Case(
        "data", fit(x=np.zeros((4, 6), np.int32)), TypeError, r"fit: x must have a floating dtype"
    ),
    "evaluate wrong labels": Case(
        "data",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), X, np.full(4, 9)),
        ValueError,
        r"evaluate: labels y must lie in \[0, 3\) for a model with 3 outputs, "
        r"got values in \[9, 9\]",
    ),
    "evaluate float labels": Case(
        "data",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), X, np.zeros(4)),
        TypeError,
        r"evaluate: labels y must have an integer dtype, got float64",
    ),
    "evaluate flat targets for 3 outputs": Case(
        "data",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), X, np.zeros(4), nj.mse),
        ValueError,
        r"evaluate: targets y of shape \(4,\) need a model with one output, this one has 3",
    ),
    "evaluate targets wrong width": Case(
        "data",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), X, np.zeros((4, 2)), nj.mse),
        ValueError,
        r"evaluate: targets y must have shape \(N, 3\), got \(4, 2\)",
    ),
    "evaluate nan in x": Case(
        "data",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), np.where(np.eye(4, 6) > 0, np.nan, X), Y),
        ValueError,
        r"evaluate: x contains NaN or inf \(first at row 0\)",
    ),
    "evaluate inf in targets": Case(
        "data",
        lambda: nj.evaluate(
            mlp(), mlp().init(KEY), X, np.where(np.eye(4, 3)[::-1] > 0, np.inf, 0), nj.mse
        ),
        ValueError,
        r"evaluate: y contains NaN or inf \(first at row 1\)",
    ),
    "evaluate images into a dense model": Case(
        "data",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), np.zeros((4, 2, 3), np.float32), Y),
        ValueError,
        r"evaluate: x of shape \(4, 2, 3\) does not fit the model \(.*\); a dense model takes "
        r"flat rows: reshape to \(N, 6\)",
    ),
    "evaluate empty": Case(
        "data",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), X[:0], Y[:0]),
        ValueError,
        r"evaluate: x and y are empty",
    ),
    "evaluate stateful without state": Case(
        "data",
        lambda: nj.evaluate(
            nj.serial(nj.dense(6, 3), nj.batch_norm(3)),
            nj.serial(nj.dense(6, 3), nj.batch_norm(3)).init(KEY),
            X,
            Y,
        ),
        ValueError,
        r"evaluate: .*pass state=",
    ),
    # Training that diverges.
    "diverging learning rate": Case(
        "training",
        fit(
            x=np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32),
            y=np.arange(4) % 3,
            optimizer=nj.sgd(1e30),
            steps=5,
            log_every=1,
        ),
        FloatingPointError,
        r"non-finite loss at step [1-4]; lower the learning rate",
    ),
    # Hyperparameters.
    "dense zero width": Case("hyperparameters", lambda: nj.dense(0, 3), ValueError, r"dense"),
    "dense float width": Case("hyperparameters", lambda: nj.dense(6.0, 3), TypeError, r"dense"),
    "l2 inf": Case("hyperparameters", lambda: nj.l2(math.inf), ValueError, r"l2: .*inf"),
    "l2 string": Case("hyperparameters", lambda: nj.l2("a"), TypeError, r"l2: .*str"),
    "l1 negative": Case("hyperparameters", lambda: nj.l1(-1.0), ValueError, r"l1: .*-1"),
    "adam nan lr": Case("hyperparameters", lambda: nj.adam(math.nan), ValueError, r"adam"),
    "adam zero lr": Case("hyperparameters", lambda: nj.adam(0.0), ValueError, r"adam"),
    "adam b1 one": Case("hyperparameters", lambda: nj.adam(1e-3, b1=1.0), ValueError, r"adam"),
    "momentum string": Case(
        "hyperparameters", lambda: nj.momentum(0.1, "0.9"), TypeError, r"momentum"
    ),
    "dropout rate one": Case(
        "hyperparameters", lambda: nj.dropout(1.0), ValueError, r"dropout: rate"
    ),
    "batch_norm negative eps": Case(
        "hyperparameters", lambda: nj.batch_norm(4, eps=-1.0), ValueError, r"batch_norm: eps"
    ),
    "conv2d bad padding": Case(
        "hyperparameters", lambda: nj.conv2d(1, 4, 3, padding="full"), ValueError, r"conv2d"
    ),
    "clip_by_global_norm zero": Case(
        "hyperparameters", lambda: nj.clip_by_global_norm(0.0), ValueError, r"clip_by_global_norm"
    ),
    "accumulate zero": Case(
        "hyperparameters", lambda: nj.accumulate(nj.sgd(0.1), 0), ValueError, r"accumulate"
    ),
    "ema decay one": Case("hyperparameters", lambda: nj.ema(nj.sgd(0.1), 1.0), ValueError, r"ema"),
    "fit batch_size zero": Case(
        "hyperparameters",
        fit(steps=None, epochs=1, batch_size=0),
        ValueError,
        r"batch_size must be an int >= 1, got 0",
    ),
    "evaluate batch_size zero": Case(
        "hyperparameters",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), X, Y, batch_size=0),
        ValueError,
        r"evaluate: batch_size must be an int >= 1, got 0",
    ),
    "evaluate metrics not a dict": Case(
        "hyperparameters",
        lambda: nj.evaluate(mlp(), mlp().init(KEY), X, Y, metrics=[len]),
        TypeError,
        r"evaluate: metrics must be a dict \{name: fn\(outputs, targets\) -> scalar\}, got list",
    ),
    "fit key not a key": Case(
        "hyperparameters", fit(key=0), TypeError, r"fit: key must be a PRNG key"
    ),
    # Mismatched trees.
    "optimizer gradient tree": Case(
        "trees",
        lambda: nj.adam(1e-3).update((jnp.ones(2),), nj.adam(1e-3).init((jnp.ones(3),))),
        ValueError,
        r"adam",
    ),
    "serial params tree": Case(
        "trees",
        lambda: mlp().apply((), jnp.asarray(X)),
        TypeError,
        r"serial\(.*params must be a tuple of 3 entries",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_a_clear_error(name):
    case = CASES[name]
    with pytest.raises(case.error, match=case.match) as info:
        case.call()
    assert "XlaRuntimeError" not in type(info.value).__name__


def test_checkpoint_of_another_architecture(tmp_path):
    path = tmp_path / "m.npz"
    nj.save(path, mlp().init(KEY))
    other = nj.serial(nj.dense(6, 4), nj.relu(), nj.dense(4, 3)).init(KEY)
    with pytest.raises(ValueError, match=r"params\[0\]\.w: checkpoint has shape \(6, 5\)"):
        nj.load(path, params=other)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated"])
def test_a_file_that_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"load: .* is not a checkpoint written by save"):
        nj.load(path, params=mlp().init(KEY))


def test_a_truncated_checkpoint(tmp_path):
    path = tmp_path / "m.npz"
    nj.save(path, mlp().init(KEY))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"load: .* is not a checkpoint written by save"):
        nj.load(path, params=mlp().init(KEY))
