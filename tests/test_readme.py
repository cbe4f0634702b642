"""The README's training-loop examples run as written, on small random images."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np

import nnrs_jax as nj

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(section: str) -> list[str]:
    """The ```python blocks of the README section whose heading starts with ``section``."""
    text = README.read_text()
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_training_loop_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write runs/cnn and runs/cnn.csv
    rng = np.random.default_rng(0)
    x = rng.random((320, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 320).astype(np.int32)
    model = nj.serial(nj.conv2d(1, 4, 3, stride=2), nj.relu(), nj.flatten(),
                      nj.dense(13 * 13 * 4, 10))  # fmt: skip
    namespace = {"jax": jax, "nj": nj, "model": model, "x": x, "y": y, "xt": x[:64],
                 "yt": y[:64], "opt": nj.adam(1e-3)}  # fmt: skip
    fit_example, loop_example = blocks("The training loop")
    exec(fit_example, namespace)
    result = namespace["result"]
    assert result.stopped in (None, "callback")
    assert {"loss", "accuracy", "eval_loss", "eval_accuracy"} <= set(result.history)
    assert (tmp_path / "runs" / "cnn.csv").is_file()
    assert not (tmp_path / "runs" / "cnn").exists()  # the backup is removed at the end
    exec(loop_example, namespace)
    assert int(namespace["ts"].step) == 10 * (320 // 128)


def test_the_own_layer_example_runs_and_prints_ok(capsys):
    (example,) = blocks("Your own layer")
    namespace: dict = {}
    exec(example, namespace)
    assert namespace["report"].ok
    assert capsys.readouterr().out.startswith("check_layer(scale(16)): ok, max relative error ")
    assert namespace["scale"](16) == namespace["scale"](16)
    model = namespace["model"]
    params = model.init(jax.random.key(0))
    x = np.ones((2, 784), np.float32)
    assert model.apply(params, x).shape == (2, 10)
    good = namespace["scale"](16)
    scalar = nj.Layer(good.init, lambda s, x: x * s[None, :],
                      lambda s, x, dy: (dy.sum(), dy * s[None, :]), name="scale(16)")  # fmt: skip
    broken = nj.serial(scalar, nj.dense(16, 4))
    with np.testing.assert_raises_regex(
        nj.LayerContractError,
        r"^scale\(16\): grad_params must have the shape of params \(16,\), got \(\) "
        r"\[layer 0 of serial\(",
    ):
        nj.backward(broken, broken.init(jax.random.key(0)), np.ones((8, 16), np.float32),
                    np.ones((8, 4), np.float32))  # fmt: skip
