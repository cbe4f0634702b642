"""docs/layers.md, the guide to writing a layer: its code runs as printed (real MNIST for the
training block), its printed report and its example error message are what the library says."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from helpers import fenced_blocks

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "layers.md"


def _blocks(lang: str) -> list[str]:
    return fenced_blocks(GUIDE, lang)


@pytest.fixture(scope="module")
def namespace() -> dict:
    code = _blocks("python")
    ns: dict = {}
    exec(compile(code[0], f"{GUIDE}:block0", "exec"), ns)  # the layer
    exec(compile(code[1], f"{GUIDE}:block1", "exec"), ns)  # check_layer
    return ns


def test_the_guide_layer_passes_check_layer_as_printed(namespace):
    report = namespace["report"]
    assert report.ok
    printed = [
        line.lstrip("# ")
        for line in _blocks("python")[1].splitlines()
        if "check_layer(" in line and line.startswith("#")
    ]
    assert printed and str(report).splitlines()[0] == printed[0]


def test_the_guide_trains_on_mnist(namespace, mnist_train):
    del mnist_train  # the session's MNIST (NNRS_JAX_DATA) must be there
    ns = dict(namespace)
    exec(compile(_blocks("python")[2], f"{GUIDE}:block2", "exec"), ns)
    history = ns["result"].history
    assert history["accuracy"][-1] > 0.85


def test_the_guide_error_message_is_the_real_one(namespace):
    import nnrs_jax as nj

    scale = namespace["scale"]
    layer = scale(16)
    unsummed = nj.Layer(layer.init, lambda s, x: x * s[None, :],
                        lambda s, x, dy: (dy * x, dy * s[None, :]), name="scale(16)")  # fmt: skip
    model = nj.serial(unsummed, nj.dense(16, 4))
    params = model.init(jax.random.key(0))
    with pytest.raises(nj.LayerContractError) as err:
        nj.backward(model, params, jnp.ones((8, 16), jnp.float32), jnp.ones((8, 4), jnp.float32))
    shown = " ".join(_blocks("")[0].split())
    assert str(err.value) == shown


def test_the_guide_shows_the_checker_catching_a_wrong_backward(namespace, capsys):
    ns = dict(namespace)
    exec(compile(_blocks("python")[3], f"{GUIDE}:block3", "exec"), ns)
    printed = capsys.readouterr().out
    assert printed.startswith("check_layer(wrong): FAILED, max relative error ")
    assert "params" in printed and "<-- exceeds rtol" in printed
