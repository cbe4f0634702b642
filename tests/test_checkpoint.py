"""Checkpoints: npz round trips bit for bit into the template's tree types, mismatches named by
leaf, atomic writes that leave the old file intact on failure; the nn-rs CSV format."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nnrs_jax.checkpoint import Checkpoint, load, load_csv, save, save_csv
from nnrs_jax.layers.dense import DenseParams


class _State(NamedTuple):
    """Shaped like an Adam state: an int32 counter and two trees shaped like the parameters."""

    timestep: jax.Array
    velocity: tuple
    scaling_factor: tuple


def _params(key: jax.Array, dtype, dims=(4, 3, 2)) -> tuple:
    k1, k2, k3, k4 = jax.random.split(key, 4)
    d0, d1, d2 = dims
    return (
        DenseParams(jax.random.normal(k1, (d0, d1), dtype), jax.random.normal(k2, (d1,), dtype)),
        (),
        DenseParams(jax.random.normal(k3, (d1, d2), dtype), jax.random.normal(k4, (d2,), dtype)),
    )


def _state(params: tuple) -> _State:
    velocity = jax.tree.map(lambda p: 0.5 * p, params)
    scaling = jax.tree.map(lambda p: p * p, params)
    return _State(jnp.asarray(7, jnp.int32), velocity, scaling)


def _with_special_values(params: tuple) -> tuple:
    """Values whose bits a lossy round trip would change: nan, -0.0, inf, a subnormal."""
    w = params[0].w
    tiny = np.finfo(np.dtype(w.dtype)).smallest_subnormal
    special = jnp.asarray([np.nan, -0.0, np.inf, tiny], w.dtype)
    w = w.at[:, 0].set(special)
    return (DenseParams(w, params[0].b), *params[1:])


def _assert_bit_identical(restored, expected) -> None:
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        assert isinstance(a, jax.Array)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
def test_round_trip_is_bit_exact_and_keeps_tree_types(tmp_path, key, dtype):
    params = _with_special_values(_params(key, dtype))
    state = _state(params)
    run_key = jax.random.key(42)
    meta = {"layers": [[4, 3], "elu", [3, 2]], "lr": 0.01, "name": "mlp"}
    path = tmp_path / "ckpt.npz"

    save(path, params, state, step=123, key=run_key, meta=meta)
    ckpt = load(path, like=(params, state))

    assert isinstance(ckpt, Checkpoint)
    _assert_bit_identical(ckpt.params, params)
    _assert_bit_identical(ckpt.opt_state, state)
    assert type(ckpt.params[0]) is DenseParams and type(ckpt.opt_state) is _State
    assert ckpt.opt_state.timestep.dtype == jnp.int32 and int(ckpt.opt_state.timestep) == 7
    assert ckpt.step == 123 and type(ckpt.step) is int
    assert ckpt.meta == meta
    assert jnp.issubdtype(ckpt.key.dtype, jax.dtypes.prng_key)
    assert jax.random.key_impl(ckpt.key) == jax.random.key_impl(run_key)
    np.testing.assert_array_equal(jax.random.key_data(ckpt.key), jax.random.key_data(run_key))
    np.testing.assert_array_equal(
        jax.random.normal(ckpt.key, (3,)), jax.random.normal(run_key, (3,))
    )


def test_arrays_are_keyed_by_pytree_path(tmp_path, key):
    params = _params(key, jnp.float32)
    save(tmp_path / "c.npz", params, _state(params), step=1, key=key, meta={})
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        names = set(data.files)
        np.testing.assert_array_equal(data["params[2].b"], params[2].b)
    assert {"params[0].w", "params[0].b", "params[2].w", "params[2].b"} < names
    assert {
        "opt_state.timestep",
        "opt_state.velocity[0].w",
        "opt_state.scaling_factor[2].b",
    } < names
    assert {"step", "key_data", "key_impl", "meta"} < names


def test_optional_entries_default_to_none(tmp_path, key):
    params = _params(key, jnp.float32)
    save(tmp_path / "c.npz", params)
    ckpt = load(tmp_path / "c.npz", like=params)
    assert (ckpt.opt_state, ckpt.step, ckpt.key, ckpt.meta) == (None, None, None, None)


def test_params_only_like_skips_the_optimizer_state(tmp_path, key):
    params = _params(key, jnp.float32)
    save(tmp_path / "c.npz", params, _state(params), step=3)
    for like in (params, (params, None)):
        ckpt = load(tmp_path / "c.npz", like=like)
        _assert_bit_identical(ckpt.params, params)
        assert ckpt.opt_state is None and ckpt.step == 3


def test_two_layer_params_tuple_is_not_mistaken_for_a_pair(tmp_path, key):
    three = _params(key, jnp.float32)
    params = (three[0], three[2])  # a plain 2-tuple, like the parameters of a pair
    state = _state(params)
    save(tmp_path / "c.npz", params, state)

    alone = load(tmp_path / "c.npz", like=params)
    _assert_bit_identical(alone.params, params)
    assert alone.opt_state is None
    pair = load(tmp_path / "c.npz", like=(params, state))
    _assert_bit_identical(pair.params, params)
    _assert_bit_identical(pair.opt_state, state)


def test_shape_dtype_struct_template(tmp_path, key):
    params = _params(key, jnp.float64)
    save(tmp_path / "c.npz", params)
    like = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    _assert_bit_identical(load(tmp_path / "c.npz", like=like).params, params)


def test_bfloat16_round_trip(tmp_path, key):
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), _params(key, jnp.float32))
    save(tmp_path / "c.npz", params)
    _assert_bit_identical(load(tmp_path / "c.npz", like=params).params, params)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_key_implementation_is_restored(tmp_path, key, impl):
    run_key = jax.random.key(9, impl=impl)
    save(tmp_path / "c.npz", _params(key, jnp.float32), key=run_key)
    restored = load(tmp_path / "c.npz", like=_params(key, jnp.float32)).key
    assert str(jax.random.key_impl(restored)) == impl
    np.testing.assert_array_equal(jax.random.key_data(restored), jax.random.key_data(run_key))


def test_legacy_key_comes_back_as_the_equivalent_typed_key(tmp_path, key):
    legacy = jax.random.PRNGKey(5)
    params = _params(key, jnp.float32)
    save(tmp_path / "c.npz", params, key=legacy)
    restored = load(tmp_path / "c.npz", like=params).key
    assert jnp.issubdtype(restored.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored), legacy)
    np.testing.assert_array_equal(
        jax.random.uniform(restored, (4,)), jax.random.uniform(legacy, (4,))
    )


def test_path_is_kept_exactly_and_parents_are_created(tmp_path, key):
    params = _params(key, jnp.float32)
    path = tmp_path / "runs" / "mnist" / "latest"
    save(str(path), params)
    assert _listing(path.parent) == ["latest"]
    _assert_bit_identical(load(path, like=params).params, params)


def test_file_permissions_follow_the_umask(tmp_path, key):
    old = os.umask(0o027)
    try:
        save(tmp_path / "c.npz", _params(key, jnp.float32))
    finally:
        os.umask(old)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o640


def test_shape_mismatch_names_leaf_and_both_shapes(tmp_path, key):
    save(tmp_path / "c.npz", _params(key, jnp.float32))
    like = _params(key, jnp.float32, dims=(4, 5, 2))
    message = "params[0].w: checkpoint has shape (4, 3), template has (4, 5)"
    with pytest.raises(ValueError, match=re.escape(message)):
        load(tmp_path / "c.npz", like=like)


def test_dtype_mismatch_names_leaf_dtypes_and_shapes(tmp_path, key):
    save(tmp_path / "c.npz", _params(key, jnp.float32))
    message = (
        "params[2].b: checkpoint has dtype float32 with shape (2,), "
        "template has float64 with shape (2,)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(tmp_path / "c.npz", like=_params(key, jnp.float64))


def test_structure_mismatch_names_missing_and_extra_leaves(tmp_path, key):
    params = _params(key, jnp.float32)
    save(tmp_path / "c.npz", params)
    longer = (*params, DenseParams(jnp.zeros((2, 2), jnp.float32), jnp.zeros(2, jnp.float32)))
    with pytest.raises(
        ValueError, match=re.escape("params[3].w: in the template with shape (2, 2)")
    ):
        load(tmp_path / "c.npz", like=longer)
    with pytest.raises(
        ValueError, match=re.escape("params[2].w: in the checkpoint with shape (3, 2)")
    ):
        load(tmp_path / "c.npz", like=params[:2])


def test_state_mismatch_and_missing_state(tmp_path, key):
    params = _params(key, jnp.float32)
    save(tmp_path / "with_state.npz", params, _state(params))
    bad_state = _state(params)._replace(timestep=jnp.asarray(7, jnp.int64))
    with pytest.raises(
        ValueError, match=re.escape("opt_state.timestep: checkpoint has dtype int32")
    ):
        load(tmp_path / "with_state.npz", like=(params, bad_state))
    save(tmp_path / "no_state.npz", params)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load(tmp_path / "no_state.npz", like=(params, _state(params)))


def test_missing_file_and_foreign_file(tmp_path, key):
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load(missing, like=_params(key, jnp.float32))
    foreign = tmp_path / "foreign.npz"
    foreign.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a checkpoint written by save"):
        load(foreign, like=_params(key, jnp.float32))


class _Unserialisable:
    pass


def _circular() -> dict:
    meta: dict = {}
    meta["self"] = meta
    return meta


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"meta": {"fn": _Unserialisable()}}, TypeError, "meta must be JSON-serialisable"),
        ({"meta": _circular()}, ValueError, "meta must be JSON-serialisable"),
        ({"meta": ["not", "a", "dict"]}, TypeError, "meta must be a dict"),
        ({"step": -1}, ValueError, "step must be non-negative"),
        ({"step": 1.5}, TypeError, "step must be an int"),
        ({"step": True}, TypeError, "step must be an int"),
        ({"key": jnp.zeros(2, jnp.float32)}, TypeError, "key must be a PRNG key"),
        ({"key": jnp.zeros(3, jnp.uint32)}, TypeError, "not a legacy uint32 key"),
        ({"params": (DenseParams(1.0, 2.0),)}, TypeError, re.escape("params[0].w must be an arr")),
        ({"params": (jax.random.key(0),)}, TypeError, re.escape("params[0] is a PRNG key")),
        ({"opt_state": {"s": np.array(["x"])}}, TypeError, "must have a numeric dtype"),
    ],
    ids=[
        "meta-object", "meta-circular", "meta-list", "step-negative", "step-float", "step-bool",
        "key-float", "key-shape", "leaf-scalar", "leaf-key", "leaf-str",
    ],
)  # fmt: skip
def test_bad_arguments_raise_before_touching_the_files(tmp_path, key, kwargs, error, pattern):
    params = _params(key, jnp.float32)
    path = tmp_path / "c.npz"
    save(path, params, step=1)
    before = path.read_bytes()
    with pytest.raises(error, match=pattern):
        save(path, **{"params": params, **kwargs})
    with pytest.raises(error, match=pattern):
        save(tmp_path / "new" / "c.npz", **{"params": params, **kwargs})
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["c.npz"]


def _fail_replace(src, dst):
    raise OSError("simulated failure while renaming")


def _fail_mid_write(file, *args, **kwargs):
    file.write(b"PK\x03\x04 half a zip")
    raise OSError("simulated disk full")


@pytest.mark.parametrize(
    ("target", "replacement"),
    [(os, ("replace", _fail_replace)), (np, ("savez", _fail_mid_write))],
    ids=["replace", "write"],
)
def test_failure_while_writing_keeps_the_old_file(tmp_path, key, monkeypatch, target, replacement):
    params = _params(key, jnp.float32)
    path = tmp_path / "c.npz"
    save(path, params, step=1)
    before = path.read_bytes()
    monkeypatch.setattr(target, *replacement)
    with pytest.raises(OSError, match="simulated"):
        save(path, jax.tree.map(lambda p: p + 1.0, params), step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["c.npz"]
    assert load(path, like=params).step == 1


def test_saving_over_a_checkpoint_replaces_it(tmp_path, key):
    params = _params(key, jnp.float32)
    path = tmp_path / "c.npz"
    save(path, params, step=1)
    newer = jax.tree.map(lambda p: p + 1.0, params)
    save(path, newer, step=2)
    ckpt = load(path, like=params)
    _assert_bit_identical(ckpt.params, newer)
    assert ckpt.step == 2 and _listing(tmp_path) == ["c.npz"]


# ---------------------------------------------------------------- the nn-rs CSV format


def _csv_params(key: jax.Array, dtype, dims=(5, 3, 2)) -> tuple:
    """Two dense layers around a non-dense leaf; the rows of the first span 1e-30 to 1e30."""
    (d0, _, d2) = _params(key, dtype, dims=dims)
    scale = jnp.asarray(np.logspace(-30, 30, dims[0]), dtype)[:, None]
    d0 = DenseParams(d0.w * scale, d0.b)
    return (d0, {"gain": jnp.full((dims[1],), 2.0, dtype)}, d2)


def _zeros_like(params):
    return jax.tree.map(jnp.zeros_like, params)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
def test_csv_round_trip_is_bit_exact(tmp_path, key, dtype):
    # Some random floats (about 0.5%) need all 9 (float32) or 17 (float64) digits.
    params = _csv_params(key, dtype, dims=(64, 16, 3))
    save_csv(tmp_path, params)
    template = _zeros_like(params)
    restored = load_csv(tmp_path, like=template)
    _assert_bit_identical((restored[0], restored[2]), (params[0], params[2]))
    # The non-dense leaf is the template's, not read from anywhere.
    assert restored[1]["gain"] is template[1]["gain"]
    assert type(restored[0]) is DenseParams


def test_csv_files_and_headers(tmp_path, key):
    params = _csv_params(key, jnp.float32)
    folder = tmp_path / "weights"
    save_csv(folder, params)
    assert _listing(folder) == ["b0.csv", "b1.csv", "w0.csv", "w1.csv"]

    w0 = (folder / "w0.csv").read_text().splitlines()
    assert w0[0] == "w0_0,w0_1,w0_2"
    assert len(w0) == 1 + 5 and all(len(row.split(",")) == 3 for row in w0[1:])
    assert np.float32(w0[2].split(",")[1]) == np.asarray(params[0].w)[1, 1]
    w1 = (folder / "w1.csv").read_text().splitlines()
    assert w1[0] == "w1_0,w1_1" and len(w1) == 1 + 3
    b1 = (folder / "b1.csv").read_text().splitlines()
    assert b1[0] == "b1"
    np.testing.assert_array_equal(np.array(b1[1:], np.float32), params[2].b)


def test_csv_shape_mismatch_names_file_and_both_shapes(tmp_path, key):
    params = _csv_params(key, jnp.float32)
    save_csv(tmp_path, params)
    wrong = (DenseParams(jnp.zeros((5, 4), jnp.float32), jnp.zeros(4, jnp.float32)), *params[1:])
    with pytest.raises(
        ValueError, match=r"w0\.csv'?: file has shape \(5, 3\), template has \(5, 4\)"
    ):
        load_csv(tmp_path, like=wrong)
    wrong_b = (*params[:2], DenseParams(params[2].w, jnp.zeros(3, jnp.float32)))
    with pytest.raises(ValueError, match=r"b1\.csv'?: file has shape \(2,\), template has \(3,\)"):
        load_csv(tmp_path, like=wrong_b)


def test_csv_missing_file_is_named(tmp_path, key):
    params = _csv_params(key, jnp.float32)
    save_csv(tmp_path, params)
    (tmp_path / "b1.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"b1\.csv"):
        load_csv(tmp_path, like=params)


def test_csv_needs_dense_layers_and_valid_shapes(tmp_path):
    with pytest.raises(ValueError, match="params holds no DenseParams"):
        save_csv(tmp_path, ({"gain": jnp.ones(3, jnp.float32)},))
    bad = DenseParams(jnp.ones((2, 3), jnp.float32), jnp.ones(2, jnp.float32))
    with pytest.raises(ValueError, match=re.escape("got w (2, 3) and b (2,)")):
        save_csv(tmp_path, (bad,))
    ints = DenseParams(jnp.ones((2, 3), jnp.int32), jnp.ones(3, jnp.int32))
    with pytest.raises(TypeError, match="floating"):
        save_csv(tmp_path, (ints,))
    assert _listing(tmp_path) == []


def test_csv_failed_write_keeps_the_old_file(tmp_path, key, monkeypatch):
    params = _csv_params(key, jnp.float32)
    save_csv(tmp_path, params)
    before = {name: (tmp_path / name).read_bytes() for name in _listing(tmp_path)}
    monkeypatch.setattr(os, "replace", _fail_replace)
    with pytest.raises(OSError, match="simulated"):
        save_csv(tmp_path, jax.tree.map(lambda p: p + 1.0, params))
    monkeypatch.undo()
    assert {name: (tmp_path / name).read_bytes() for name in _listing(tmp_path)} == before


def test_meta_is_stored_as_json_text(tmp_path, key):
    meta = {"architecture": ["dense(784, 64)", "elu(1.0)"], "seed": 0}
    save(tmp_path / "c.npz", _params(key, jnp.float32), meta=meta)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        assert json.loads(str(data["meta"])) == meta
