"""nnrs_jax.autotune: `fit` times every conv2d policy in the real step once per host, stores the
winner on disk, reads it back, retraces when a choice appears; the margin rule, the fixed mode,
an unreadable file, other hosts' choices, a mesh, bad arguments."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import nnrs_jax as nj
from nnrs_jax import autotune
from nnrs_jax.layers import conv_kernels

POLICIES = tuple(conv_kernels.POLICIES)


@pytest.fixture
def choice_file(tmp_path, monkeypatch):
    """Measure mode, with a choice file of the test's own; every choice forgotten afterwards."""
    path = tmp_path / "autotune.json"
    monkeypatch.setenv("NNRS_JAX_AUTOTUNE_CACHE", str(path))
    autotune.clear()
    autotune.set_mode("measure")
    yield path
    autotune.set_mode(None)
    autotune.clear()


def _model(impl: str = "auto") -> nj.Layer:
    return nj.serial(
        nj.conv2d(1, 4, 3, impl=impl), nj.relu(), nj.max_pool(2),
        nj.conv2d(4, 6, 3, impl=impl), nj.relu(), nj.flatten(), nj.dense(24, 3),
    )  # fmt: skip


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(48, 10, 10, 1)).astype(np.float32)
    return x, rng.integers(0, 3, size=48).astype(np.int32)


def _fit(model: nj.Layer, **kwargs) -> nj.FitResult:
    x, y = _data()
    return nj.fit(model, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
                  epochs=2, batch_size=16, progress=False, **kwargs)  # fmt: skip


class _Lowered:
    """Stands for a lowered step in the tests of the decision rule: compiles to the policy's name
    (the real path, through `fit`, is tested above and below)."""

    def __init__(self, policy: str) -> None:
        self.policy = policy

    def compile(self) -> str:
        return self.policy


def _same(a: nj.FitResult, b: nj.FitResult) -> bool:
    leaves = zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True)
    return all(np.array_equal(u, v) for u, v in leaves)


def test_fit_measures_each_site_once_stores_it_and_runs_the_winner(choice_file):
    result = _fit(_model())
    table = json.loads(choice_file.read_text())
    assert len(table) == 2  # the two convolutions
    for key, entry in table.items():
        assert key.startswith(autotune.host_key() + " | conv2d ")
        assert entry["policy"] in POLICIES
        assert set(entry["times"]) == set(POLICIES) and min(entry["times"].values()) > 0
    made = autotune.choices()
    assert {c.source for c in made.values()} == {"measured"}
    winner = next(iter(made.values())).policy
    # What ran is the winner: the same bits as the model built with that policy.
    assert _same(result, _fit(_model(winner)))

    before = choice_file.read_bytes()
    _fit(_model())  # known sites: nothing measured, nothing written
    assert choice_file.read_bytes() == before
    autotune.clear()  # as a new process: the choices come from the file
    assert _same(_fit(_model()), result)
    assert {c.source for c in autotune.choices().values()} == {"cache"}
    assert choice_file.read_bytes() == before


def test_a_new_choice_retraces_the_compiled_step(choice_file, monkeypatch):
    """A step compiled with the default is not reused once a site has a measured choice."""
    autotune.set_mode("fixed")
    _fit(_model())
    autotune.set_mode("measure")
    traced = []
    real_policy = autotune.policy
    monkeypatch.setattr(autotune, "policy", lambda *a: traced.append(a) or real_policy(*a))
    # Choose "shifted" for both sites with a timer that makes it the fastest.
    params = _model().init(jax.random.key(0))
    x = _data()[0][:1]
    new = autotune.tune(
        {"conv2d": (POLICIES, conv_kernels.default_policy())},
        lambda: jax.eval_shape(_model().apply, params, x),
        lambda: _Lowered(real_policy("conv2d", "", POLICIES, "")),
        lambda compiled: 0.5 if compiled == "shifted" else 1.0,
    )
    assert {c.policy for c in new.values()} == {"shifted"} and len(new) == 2
    traced.clear()
    result = _fit(_model())
    assert traced  # retraced, reading the new choice
    assert _same(result, _fit(_model("shifted")))


def test_margin_keeps_the_default_against_noise(choice_file):
    names = ("a", "b")

    def tune(times):
        autotune.clear()
        site = f"site {sorted(times.items())}"
        return autotune.tune(
            {"family": (names, "a")},
            lambda: autotune.policy("family", site, names, "a"),
            lambda: _Lowered(autotune.policy("family", site, names, "a")),
            times.__getitem__,
        )

    (kept,) = tune({"a": 1.0, "b": 1.0 - autotune.MARGIN / 2}).values()
    assert kept.policy == "a" and kept.times == {"a": 1.0, "b": 1.0 - autotune.MARGIN / 2}
    (taken,) = tune({"a": 1.0, "b": 0.5}).values()
    assert taken.policy == "b"
    (slower,) = tune({"a": 1.0, "b": 2.0}).values()
    assert slower.policy == "a"


def test_fixed_mode_measures_and_reads_nothing(choice_file, monkeypatch):
    choice_file.write_text(json.dumps({}))
    monkeypatch.setenv("NNRS_JAX_AUTOTUNE", "off")
    autotune.set_mode(None)
    assert autotune.mode() == "fixed"
    result = _fit(_model())
    assert autotune.choices() == {} and json.loads(choice_file.read_text()) == {}
    assert _same(result, _fit(_model(conv_kernels.default_policy())))


def test_unreadable_file_is_reported_then_replaced(choice_file):
    choice_file.write_text("{ half a file")
    with pytest.warns(UserWarning, match="autotune: ignoring the unreadable file"):
        _fit(_model())
    assert len(json.loads(choice_file.read_text())) == 2


def test_other_hosts_choices_are_kept_but_not_used(choice_file):
    other = "cuda/NVIDIA H200/some cpu/16 cores/jax 0/jaxlib 0 | conv2d anything"
    choice_file.write_text(json.dumps({other: {"policy": "xla", "times": {"xla": 1.0}}}))
    _fit(_model())
    table = json.loads(choice_file.read_text())
    assert table[other]["policy"] == "xla" and len(table) == 3
    assert {c.source for c in autotune.choices().values()} == {"measured"}


def test_nothing_is_measured_on_a_mesh(choice_file):
    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    _fit(_model(), mesh=mesh)
    assert not choice_file.exists() and autotune.choices() == {}


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"autotune.set_mode: value must be one of"):
        autotune.set_mode("fast")
    with pytest.raises(ValueError, match=r"autotune.tune: default 'c' of family 'f' is not"):
        autotune.tune({"f": (("a", "b"), "c")}, lambda: None, lambda: None, lambda c: 1.0)
