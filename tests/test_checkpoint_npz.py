"""The npz checkpoint: round trips bit for bit into the template's tree types, mismatches named
by leaf, arguments checked before the file system is touched."""

from __future__ import annotations

import json
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checkpoint_helpers import assert_bit_identical, listing, mlp_params

from nnrs_jax.checkpoint import Checkpoint, load, save
from nnrs_jax.layers.dense import DenseParams


class _State(NamedTuple):
    """Shaped like an Adam state: an int32 counter and two trees shaped like the parameters."""

    timestep: jax.Array
    velocity: tuple
    scaling_factor: tuple


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


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
def test_round_trip_is_bit_exact_and_keeps_tree_types(tmp_path, key, dtype):
    params = _with_special_values(mlp_params(key, dtype))
    state = _state(params)
    run_key = jax.random.key(42)
    meta = {"layers": [[4, 3], "elu", [3, 2]], "lr": 0.01, "name": "mlp"}
    path = tmp_path / "ckpt.npz"

    save(path, params, state, step=123, key=run_key, meta=meta)
    ckpt = load(path, params=params, opt_state=state)

    assert isinstance(ckpt, Checkpoint)
    assert_bit_identical(ckpt.params, params)
    assert_bit_identical(ckpt.opt_state, state)
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
    params = mlp_params(key, jnp.float32)
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
    params = mlp_params(key, jnp.float32)
    save(tmp_path / "c.npz", params)
    ckpt = load(tmp_path / "c.npz", params=params)
    assert (ckpt.opt_state, ckpt.step, ckpt.key, ckpt.meta) == (None, None, None, None)


def test_without_an_opt_state_template_the_optimizer_state_is_skipped(tmp_path, key):
    params = mlp_params(key, jnp.float32)
    save(tmp_path / "c.npz", params, _state(params), step=3)
    for ckpt in (
        load(tmp_path / "c.npz", params=params),
        load(tmp_path / "c.npz", params=params, opt_state=None),
    ):
        assert_bit_identical(ckpt.params, params)
        assert ckpt.opt_state is None and ckpt.step == 3


def test_a_two_layer_params_tuple_loads_alone_or_with_its_optimizer_state(tmp_path, key):
    three = mlp_params(key, jnp.float32)
    params = (three[0], three[2])  # a plain 2-tuple: the templates are named, never guessed
    state = _state(params)
    save(tmp_path / "c.npz", params, state)

    alone = load(tmp_path / "c.npz", params=params)
    assert_bit_identical(alone.params, params)
    assert alone.opt_state is None
    both = load(tmp_path / "c.npz", params=params, opt_state=state)
    assert_bit_identical(both.params, params)
    assert_bit_identical(both.opt_state, state)


def test_templates_not_given_by_keyword_are_a_type_error_naming_the_keywords(tmp_path, key):
    params = mlp_params(key, jnp.float32)
    path = tmp_path / "c.npz"
    save(path, params, _state(params))
    new_form = "load: pass the templates by keyword: load(path, params=..., opt_state=..."
    with pytest.raises(TypeError, match=re.escape(new_form + ", state=...), got like=a tuple")):
        load(path, like=params)
    with pytest.raises(TypeError, match=re.escape(new_form)):
        load(path, like=(params, _state(params)))
    with pytest.raises(TypeError, match="positional argument"):
        load(path, params)  # type: ignore[misc]
    with pytest.raises(TypeError, match=re.escape("load: the params template is required")):
        load(path)
    assert listing(tmp_path) == ["c.npz"]


def test_shape_dtype_struct_template(tmp_path, key):
    params = mlp_params(key, jnp.float64)
    save(tmp_path / "c.npz", params)
    template = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    assert_bit_identical(load(tmp_path / "c.npz", params=template).params, params)


def test_bfloat16_round_trip(tmp_path, key):
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), mlp_params(key, jnp.float32))
    save(tmp_path / "c.npz", params)
    assert_bit_identical(load(tmp_path / "c.npz", params=params).params, params)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_key_implementation_is_restored(tmp_path, key, impl):
    run_key = jax.random.key(9, impl=impl)
    save(tmp_path / "c.npz", mlp_params(key, jnp.float32), key=run_key)
    restored = load(tmp_path / "c.npz", params=mlp_params(key, jnp.float32)).key
    assert str(jax.random.key_impl(restored)) == impl
    np.testing.assert_array_equal(jax.random.key_data(restored), jax.random.key_data(run_key))


def test_legacy_key_comes_back_as_the_equivalent_typed_key(tmp_path, key):
    legacy = jax.random.PRNGKey(5)
    params = mlp_params(key, jnp.float32)
    save(tmp_path / "c.npz", params, key=legacy)
    restored = load(tmp_path / "c.npz", params=params).key
    assert jnp.issubdtype(restored.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored), legacy)
    np.testing.assert_array_equal(
        jax.random.uniform(restored, (4,)), jax.random.uniform(legacy, (4,))
    )


def test_path_is_kept_exactly_and_parents_are_created(tmp_path, key):
    params = mlp_params(key, jnp.float32)
    path = tmp_path / "runs" / "mnist" / "latest"
    save(str(path), params)
    assert listing(path.parent) == ["latest"]
    assert_bit_identical(load(path, params=params).params, params)


def test_shape_mismatch_names_leaf_and_both_shapes(tmp_path, key):
    save(tmp_path / "c.npz", mlp_params(key, jnp.float32))
    template = mlp_params(key, jnp.float32, dims=(4, 5, 2))
    message = "params[0].w: checkpoint has shape (4, 3), template has (4, 5)"
    with pytest.raises(ValueError, match=re.escape(message)):
        load(tmp_path / "c.npz", params=template)


def test_dtype_mismatch_names_leaf_dtypes_and_shapes(tmp_path, key):
    save(tmp_path / "c.npz", mlp_params(key, jnp.float32))
    message = (
        "params[2].b: checkpoint has dtype float32 with shape (2,), "
        "template has float64 with shape (2,)"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        load(tmp_path / "c.npz", params=mlp_params(key, jnp.float64))


def test_structure_mismatch_names_missing_and_extra_leaves(tmp_path, key):
    params = mlp_params(key, jnp.float32)
    save(tmp_path / "c.npz", params)
    longer = (*params, DenseParams(jnp.zeros((2, 2), jnp.float32), jnp.zeros(2, jnp.float32)))
    with pytest.raises(
        ValueError, match=re.escape("params[3].w: in the template with shape (2, 2)")
    ):
        load(tmp_path / "c.npz", params=longer)
    with pytest.raises(
        ValueError, match=re.escape("params[2].w: in the checkpoint with shape (3, 2)")
    ):
        load(tmp_path / "c.npz", params=params[:2])


def test_state_mismatch_and_missing_state(tmp_path, key):
    params = mlp_params(key, jnp.float32)
    save(tmp_path / "with_state.npz", params, _state(params))
    bad_state = _state(params)._replace(timestep=jnp.asarray(7, jnp.int64))
    with pytest.raises(
        ValueError, match=re.escape("opt_state.timestep: checkpoint has dtype int32")
    ):
        load(tmp_path / "with_state.npz", params=params, opt_state=bad_state)
    save(tmp_path / "no_state.npz", params)
    with pytest.raises(ValueError, match="holds no optimizer state, but `opt_state` gives"):
        load(tmp_path / "no_state.npz", params=params, opt_state=_state(params))
    with pytest.raises(ValueError, match="holds no model state, but `state` gives a template"):
        load(tmp_path / "no_state.npz", params=params, state=_state(params))


def test_missing_file_and_foreign_file(tmp_path, key):
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        load(missing, params=mlp_params(key, jnp.float32))
    foreign = tmp_path / "foreign.npz"
    foreign.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a checkpoint written by save"):
        load(foreign, params=mlp_params(key, jnp.float32))


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
    params = mlp_params(key, jnp.float32)
    path = tmp_path / "c.npz"
    save(path, params, step=1)
    before = path.read_bytes()
    with pytest.raises(error, match=pattern):
        save(path, **{"params": params, **kwargs})
    with pytest.raises(error, match=pattern):
        save(tmp_path / "new" / "c.npz", **{"params": params, **kwargs})
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["c.npz"]


def test_meta_is_stored_as_json_text(tmp_path, key):
    meta = {"architecture": ["dense(784, 64)", "elu(1.0)"], "seed": 0}
    save(tmp_path / "c.npz", mlp_params(key, jnp.float32), meta=meta)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as data:
        assert json.loads(str(data["meta"])) == meta
