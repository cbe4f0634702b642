"""The text format of nn-rs: one ``w{i}.csv`` and one ``b{i}.csv`` per dense layer.

`save_csv_weights` and `load_csv_weights` exchange the weights of the dense layers with the Rust
library; each file is written atomically (`nnrs_jax.checkpoint.atomic`). They read and write
weights, not data: the CSV images of nn-rs are read by `nnrs_jax.datasets.load_csv`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax.checkpoint.atomic import write_atomically
from nnrs_jax.layers.dense import DenseParams

__all__ = ["load_csv_weights", "save_csv_weights"]

PyTree = Any
StrPath = str | os.PathLike


def save_csv_weights(folder: StrPath, params: PyTree) -> None:
    """Write the dense layers of ``params`` in the text format of nn-rs.

    The ``i``-th `DenseParams` of ``params`` (0-based, in tree order, other layers skipped)
    with ``w`` of shape ``(in_dim, out_dim)`` and ``b`` of shape ``(out_dim,)`` becomes:

    * ``w{i}.csv``: the header ``w{i}_0,w{i}_1,...,w{i}_{out_dim-1}`` (one column per output
      unit), then ``in_dim`` rows of ``out_dim`` comma-separated values;
    * ``b{i}.csv``: the header ``b{i}``, then ``out_dim`` rows of one value.

    Values are written with ``%.9g`` (``%.17g`` for float64), enough digits to read back every
    float32 (float64) bit for bit. The folder is created if needed, each file is written
    atomically, and files of other layers already in the folder are left alone.

    Args:
        folder: destination folder.
        params: pytree holding at least one `DenseParams` with floating ``w`` and ``b``.

    Raises:
        ValueError: ``params`` holds no `DenseParams`, or one with inconsistent shapes.
        TypeError: a ``w`` or ``b`` that is not a floating array.

    Examples:
        >>> import os, tempfile, jax, nnrs_jax as nj
        >>> params = nj.dense(3, 2).init(jax.random.key(0))
        >>> folder = tempfile.mkdtemp()
        >>> nj.save_csv_weights(folder, params)
        >>> sorted(os.listdir(folder)), open(os.path.join(folder, "w0.csv")).readline()
        (['b0.csv', 'w0.csv'], 'w0_0,w0_1\\n')
    """
    layers = _dense_layers("save_csv_weights", params)
    tables = []
    for i, layer in enumerate(layers):
        w = _check_floating(f"save_csv_weights: w of dense layer {i}", layer.w)
        b = _check_floating(f"save_csv_weights: b of dense layer {i}", layer.b)
        if w.ndim != 2 or b.shape != w.shape[1:]:
            raise ValueError(
                f"save_csv_weights: layer {i} must have w of shape (in_dim, out_dim) and b of "
                f"shape (out_dim,), got w {w.shape} and b {b.shape}"
            )
        header = ",".join(f"w{i}_{col}" for col in range(w.shape[1]))
        tables += [(f"w{i}.csv", header, w), (f"b{i}.csv", f"b{i}", b)]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, header, values in tables:
        write_atomically(folder / name, lambda f, h=header, v=values: _write_table(f, h, v))


def load_csv_weights(folder: StrPath, like: PyTree) -> PyTree:
    """Read dense-layer weights written by `save_csv_weights` (or by nn-rs) into a template.

    The ``i``-th `DenseParams` of ``like`` is read from ``w{i}.csv`` and ``b{i}.csv`` (format in
    `save_csv_weights`; the header row is skipped) and cast to the template's dtype; every other
    leaf of ``like`` is returned unchanged.

    Args:
        folder: folder holding the files.
        like: parameter template holding at least one `DenseParams`; its leaves may be arrays or
            `jax.ShapeDtypeStruct`.

    Returns:
        A pytree of the same type as ``like`` with the dense weights and biases read from disk.

    Raises:
        FileNotFoundError: a ``w{i}.csv`` or ``b{i}.csv`` is missing (the message names it).
        ValueError: a file that does not parse, or whose table shape differs from the template
            (the message names the file and both shapes).

    Examples:
        >>> import tempfile, jax, jax.numpy as jnp, nnrs_jax as nj
        >>> params = nj.dense(3, 2).init(jax.random.key(0))
        >>> folder = tempfile.mkdtemp()
        >>> nj.save_csv_weights(folder, params)
        >>> restored = nj.load_csv_weights(folder, like=params)
        >>> bool(jnp.array_equal(restored.w, params.w))
        True
    """
    _dense_layers("load_csv_weights", like)
    folder = Path(folder)
    leaves, treedef = jax.tree_util.tree_flatten(like, is_leaf=_is_dense)
    restored = []
    i = 0
    for leaf in leaves:
        if _is_dense(leaf):
            leaf = DenseParams(
                _read_table(folder / f"w{i}.csv", leaf.w, ndmin=2),
                _read_table(folder / f"b{i}.csv", leaf.b, ndmin=1),
            )
            i += 1
        restored.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, restored)


def _is_dense(node: object) -> bool:
    return isinstance(node, DenseParams)


def _dense_layers(caller: str, tree: PyTree) -> list[DenseParams]:
    layers = [n for n in jax.tree_util.tree_leaves(tree, is_leaf=_is_dense) if _is_dense(n)]
    if not layers:
        arg = "params" if caller == "save_csv_weights" else "like"
        raise ValueError(f"{caller}: {arg} holds no DenseParams (no dense layer to store)")
    return layers


def _check_floating(what: str, x: object) -> np.ndarray:
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{what} must be a floating array, got {type(x).__name__} {dtype}")
    return np.asarray(x)


def _write_table(f: BinaryIO, header: str, values: np.ndarray) -> None:
    # 9 significant digits identify a float32 uniquely, 17 a float64; narrower floats widen.
    if values.dtype == np.float64:
        fmt = "%.17g"
    else:
        fmt, values = "%.9g", values.astype(np.float32)
    np.savetxt(f, values, fmt=fmt, delimiter=",", header=header, comments="")


def _read_table(path: Path, template: Any, ndmin: int) -> jax.Array:
    """One ``w{i}.csv`` or ``b{i}.csv`` as an array of the template's shape and dtype."""
    if not path.is_file():
        raise FileNotFoundError(f"load_csv_weights: missing file {str(path)!r}")
    try:
        values = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=ndmin, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"load_csv_weights: cannot parse {str(path)!r}: {error}") from error
    shape = tuple(template.shape)
    if values.shape != shape:
        raise ValueError(
            f"load_csv_weights: {str(path)!r}: file has shape {values.shape}, template has {shape}"
        )
    return jnp.asarray(values.astype(template.dtype))
