"""The nn-rs CSV weights: bit-exact round trips, file names and headers, mismatches named by
file."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checkpoint_helpers import assert_bit_identical, csv_params, listing

from nnrs_jax.checkpoint import load_csv_weights, save_csv_weights
from nnrs_jax.layers.dense import DenseParams


def _zeros_like(params):
    return jax.tree.map(jnp.zeros_like, params)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["f32", "f64"])
def test_csv_round_trip_is_bit_exact(tmp_path, key, dtype):
    # Some random floats (about 0.5%) need all 9 (float32) or 17 (float64) digits.
    params = csv_params(key, dtype, dims=(64, 16, 3))
    save_csv_weights(tmp_path, params)
    template = _zeros_like(params)
    restored = load_csv_weights(tmp_path, like=template)
    assert_bit_identical((restored[0], restored[2]), (params[0], params[2]))
    # The non-dense leaf is the template's, not read from anywhere.
    assert restored[1]["gain"] is template[1]["gain"]
    assert type(restored[0]) is DenseParams


def test_csv_files_and_headers(tmp_path, key):
    params = csv_params(key, jnp.float32)
    folder = tmp_path / "weights"
    save_csv_weights(folder, params)
    assert listing(folder) == ["b0.csv", "b1.csv", "w0.csv", "w1.csv"]

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
    params = csv_params(key, jnp.float32)
    save_csv_weights(tmp_path, params)
    wrong = (DenseParams(jnp.zeros((5, 4), jnp.float32), jnp.zeros(4, jnp.float32)), *params[1:])
    with pytest.raises(
        ValueError, match=r"w0\.csv'?: file has shape \(5, 3\), template has \(5, 4\)"
    ):
        load_csv_weights(tmp_path, like=wrong)
    wrong_b = (*params[:2], DenseParams(params[2].w, jnp.zeros(3, jnp.float32)))
    with pytest.raises(ValueError, match=r"b1\.csv'?: file has shape \(2,\), template has \(3,\)"):
        load_csv_weights(tmp_path, like=wrong_b)


def test_csv_missing_file_is_named(tmp_path, key):
    params = csv_params(key, jnp.float32)
    save_csv_weights(tmp_path, params)
    (tmp_path / "b1.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"load_csv_weights: missing file .*b1\.csv"):
        load_csv_weights(tmp_path, like=params)


def test_csv_needs_dense_layers_and_valid_shapes(tmp_path):
    with pytest.raises(ValueError, match="save_csv_weights: params holds no DenseParams"):
        save_csv_weights(tmp_path, ({"gain": jnp.ones(3, jnp.float32)},))
    bad = DenseParams(jnp.ones((2, 3), jnp.float32), jnp.ones(2, jnp.float32))
    with pytest.raises(ValueError, match=re.escape("got w (2, 3) and b (2,)")):
        save_csv_weights(tmp_path, (bad,))
    ints = DenseParams(jnp.ones((2, 3), jnp.int32), jnp.ones(3, jnp.int32))
    with pytest.raises(TypeError, match="floating"):
        save_csv_weights(tmp_path, (ints,))
    assert listing(tmp_path) == []


def test_the_weights_pair_and_the_data_reader_have_distinct_names():
    """``nj.load_csv_weights`` reads weights; ``nj.datasets.load_csv`` reads images."""
    import nnrs_jax as nj
    from nnrs_jax import checkpoint

    assert nj.load_csv_weights is load_csv_weights and nj.save_csv_weights is save_csv_weights
    assert {"load_csv_weights", "save_csv_weights"} <= set(nj.__all__)
    assert not hasattr(nj, "load_csv") and not hasattr(nj, "save_csv")
    assert not hasattr(checkpoint, "load_csv") and not hasattr(checkpoint, "save_csv")
    assert nj.datasets.load_csv.__module__ == "nnrs_jax.datasets.csv"
