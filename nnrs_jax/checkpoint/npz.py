"""The ``.npz`` checkpoint: parameters, optimizer state, model state, step, PRNG key and metadata.

`save` writes one ``.npz`` file holding every array of the parameter, optimizer-state and
model-state pytrees, keyed by its pytree path (``params[0].w``, ``opt_state.velocity[2].b``,
``state[1].mean``), plus the step, the PRNG key and a JSON metadata string, atomically
(`nnrs_jax.checkpoint.atomic`). `load` restores into keyword templates (``params=``, and
optionally ``opt_state=`` and ``state=``), so NamedTuples and dtypes come back exactly;
`load_meta` reads the metadata alone.
"""

from __future__ import annotations

import json
import operator
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax.checkpoint.atomic import write_atomically

__all__ = ["Checkpoint", "load", "load_meta", "save"]

PyTree = Any
StrPath = str | os.PathLike

# Entries of the .npz besides the trees; tree entries start with "params", "opt_state" or "state".
_STEP, _KEY_DATA, _KEY_IMPL, _META, _DTYPES = "step", "key_data", "key_impl", "meta", "dtypes"


class Checkpoint(NamedTuple):
    """What `load` returns.

    Attributes:
        params: the parameters, in the tree type of the template.
        opt_state: the optimizer state in the tree type of its template, or ``None`` when no
            optimizer-state template was given.
        step: the saved step as an ``int``, or ``None``.
        key: the saved PRNG key as a typed key array (``jax.random.key``), or ``None``.
        meta: the saved metadata ``dict``, or ``None``.
        state: the model's non-trainable state (e.g. batch-norm running statistics) in the
            tree type of the ``state`` template given to `load`, else ``None``.
    """

    params: PyTree
    opt_state: PyTree | None
    step: int | None
    key: jax.Array | None
    meta: dict[str, Any] | None
    state: PyTree | None = None


def save(
    path: StrPath,
    params: PyTree,
    opt_state: PyTree | None = None,
    step: int | None = None,
    key: jax.Array | None = None,
    meta: dict[str, Any] | None = None,
    *,
    state: PyTree | None = None,
) -> None:
    """Write a checkpoint to one ``.npz`` file, atomically.

    Each array leaf is stored under ``"params" + keystr(path)`` or ``"opt_state" + keystr(path)``
    (`jax.tree_util.keystr`), e.g. ``params[0].w`` for the weight of the first layer of a
    `serial` model. The file is written at exactly ``path``: no ``.npz`` suffix is appended
    (unlike `numpy.savez` given a file name). Missing parent folders are created.

    All arguments are checked before the file system is touched. The data go to a temporary file
    in the folder of ``path``, which is flushed, synced and renamed over ``path`` with
    `os.replace`; on any error the temporary file is removed and an existing ``path`` is left
    untouched.

    Args:
        path: destination file.
        params: pytree of arrays (`jax.Array` or `numpy.ndarray`).
        opt_state: optional pytree of arrays, e.g. an ``AdamState``.
        step: optional non-negative ``int`` (e.g. the number of updates done).
        key: optional PRNG key: a typed key from `jax.random.key` (its data and the name of its
            implementation are stored), or a legacy ``uint32`` key from `jax.random.PRNGKey`,
            which `load` returns as the equivalent typed key.
        meta: optional JSON-serialisable ``dict``, e.g. a description of the architecture.
        state: optional model state (`FitResult.state`, e.g. batch-norm running statistics),
            stored under ``state…``.

    Raises:
        TypeError: a leaf that is not a numeric array, a ``step`` that is not an int, a ``key``
            that is not a PRNG key, a ``meta`` that is not a JSON-serialisable dict.
        ValueError: a negative ``step``, a ``meta`` with a circular reference, ``path`` a folder.

    Examples:
        >>> import os, tempfile, jax, nnrs_jax as nj
        >>> model = nj.serial(nj.dense(4, 3), nj.elu(), nj.dense(3, 2))
        >>> params = model.init(jax.random.key(0))
        >>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
        >>> nj.save(path, params, step=10, meta={"hidden": 3})
        >>> ckpt = nj.load(path, params=params)
        >>> ckpt.step, ckpt.meta, ckpt.params[2].w.shape
        (10, {'hidden': 3}, (3, 2))
    """
    arrays, dtype_names = _tree_arrays("params", params)
    for prefix, tree in (("opt_state", opt_state), ("state", state)):
        if tree is not None:
            tree_arrays, tree_dtype_names = _tree_arrays(prefix, tree)
            arrays.update(tree_arrays)
            dtype_names.update(tree_dtype_names)
    if dtype_names:
        arrays[_DTYPES] = np.array(json.dumps(dtype_names))
    if step is not None:
        arrays[_STEP] = np.array(_check_step(step), dtype=np.int64)
    if key is not None:
        arrays[_KEY_DATA], arrays[_KEY_IMPL] = _key_arrays(key)
    if meta is not None:
        arrays[_META] = np.array(_meta_json(meta))
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"save: path {str(path)!r} is a folder, expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda f: np.savez(f, **arrays))


def load(
    path: StrPath,
    *,
    params: PyTree = None,
    opt_state: PyTree | None = None,
    state: PyTree | None = None,
    like: None = None,
) -> Checkpoint:
    """Read a checkpoint written by `save` into the tree types of keyword templates.

    Each template gives the tree structure (NamedTuples included) and each leaf's shape and
    dtype; its leaves may be arrays or `jax.ShapeDtypeStruct` (e.g. from
    ``jax.eval_shape(model.init, key)``). The parameters are always restored; the optimizer
    state only when ``opt_state`` gives its template (e.g. ``optimizer.init(params)``), the
    model state only when ``state`` gives its template (e.g. ``model.init_state()``). Arrays
    come back as `jax.Array` with the stored dtype, bit for bit.

    The templates are keyword-only: ``load(path, params=p, opt_state=s)``. A positional
    template or the keyword ``like`` (``like=p`` or ``like=(p, s)``) raises a `TypeError` that
    names this form.

    Args:
        path: a file written by `save`.
        params: the parameter template (required; ``None`` raises `TypeError`).
        opt_state: optional template of the optimizer state.
        state: optional template of the model state.
        like: not accepted; given, it raises `TypeError` naming the keyword templates.

    Returns:
        ``Checkpoint(params, opt_state, step, key, meta, state)``; ``opt_state`` and ``state``
        are ``None`` when their templates are not given.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a checkpoint, or it does not match the templates: a missing
            or extra leaf, a different shape or dtype (every mismatch is listed with its path,
            e.g. ``params[0].w: checkpoint has shape (784, 64), template has (784, 32)``), or an
            ``opt_state`` or ``state`` template for a file that holds none.
        TypeError: ``like`` given, ``params`` missing, or a template leaf without ``shape`` and
            ``dtype``.

    Examples:
        >>> import os, tempfile, jax, jax.numpy as jnp, nnrs_jax as nj
        >>> params = nj.dense(2, 1).init(jax.random.key(0))
        >>> path = os.path.join(tempfile.mkdtemp(), "dense.npz")
        >>> nj.save(path, params)
        >>> restored = nj.load(path, params=params).params
        >>> type(restored).__name__, bool(jnp.array_equal(restored.w, params.w))
        ('DenseParams', True)
    """
    if like is not None:
        raise TypeError(
            "load: pass the templates by keyword: load(path, params=..., opt_state=..., "
            f"state=...), got like={_describe(like)}"
        )
    if params is None:
        raise TypeError(
            "load: the params template is required: load(path, params=..., opt_state=..., "
            "state=...), got params=None"
        )
    path = Path(path)
    stored = _read_archive("load", path)
    dtype_names = json.loads(str(stored[_DTYPES])) if _DTYPES in stored else {}
    for name, dtype_name in dtype_names.items():
        stored[name] = stored[name].view(jnp.dtype(dtype_name))

    problems: list[str] = []
    restored = _restore("params", params, stored, problems)
    opt = None
    if opt_state is not None:
        _check_present(path, stored, "opt_state", opt_state, "optimizer state")
        opt = _restore("opt_state", opt_state, stored, problems)
    model_state = None
    if state is not None:
        _check_present(path, stored, "state", state, "model state")
        model_state = _restore("state", state, stored, problems)
    if problems:
        raise ValueError(
            f"load: {str(path)!r} does not match the templates:\n  " + "\n  ".join(problems)
        )

    step = int(stored[_STEP]) if _STEP in stored else None
    key = None
    if _KEY_DATA in stored:
        key = jax.random.wrap_key_data(jnp.asarray(stored[_KEY_DATA]), impl=str(stored[_KEY_IMPL]))
    meta = json.loads(str(stored[_META])) if _META in stored else None
    return Checkpoint(restored, opt, step, key, meta, model_state)


def load_meta(path: StrPath) -> dict[str, Any] | None:
    """The ``meta`` dict a checkpoint was saved with (``None`` if none), without a template.

    Useful to rebuild the model a file describes before calling `load` with its templates,
    e.g. ``nj.specs.build_model(meta["model"])`` for a file written by ``nnrs-jax train``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is not a checkpoint written by `save`.
    """
    stored = _read_archive("load_meta", Path(path))
    return json.loads(str(stored[_META])) if _META in stored else None


def _read_archive(caller: str, path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{caller}: no checkpoint file at {str(path)!r}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("it holds a single .npy array, not an .npz archive")
            return {name: data[name] for name in data.files}
    except (ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{caller}: {str(path)!r} is not a checkpoint written by save: {error}"
        ) from error


def _tree_arrays(prefix: str, tree: PyTree) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Host copies of the leaves of ``tree`` by name, and the names of dtypes npy cannot hold."""
    arrays: dict[str, np.ndarray] = {}
    dtype_names: dict[str, str] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = prefix + jax.tree_util.keystr(path)
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            raise TypeError(f"save: {name} must be an array, got {type(leaf).__name__}")
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            raise TypeError(f"save: {name} is a PRNG key; pass keys with the `key` argument")
        array = np.asarray(leaf)
        if not (jnp.issubdtype(array.dtype, jnp.number) or array.dtype == np.bool_):
            raise TypeError(f"save: {name} must have a numeric dtype, got {array.dtype}")
        if name in arrays:
            raise ValueError(f"save: two leaves of {prefix} share the name {name}")
        arrays[name] = array
        # bfloat16 and the float8 types are stored as raw bytes (npy has no code for them).
        if np.dtype(array.dtype.str) != array.dtype:
            dtype_names[name] = array.dtype.name
    return arrays, dtype_names


def _check_step(step: object) -> int:
    if isinstance(step, bool):
        raise TypeError(f"save: step must be an int, got {step!r}")
    try:
        value = operator.index(step)
    except TypeError:
        raise TypeError(f"save: step must be an int, got {type(step).__name__}") from None
    if value < 0:
        raise ValueError(f"save: step must be non-negative, got {value}")
    return value


def _key_arrays(key: object) -> tuple[np.ndarray, np.ndarray]:
    """The raw data and implementation name of a typed or legacy PRNG key."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        typed = key
    elif dtype == np.uint32:
        try:
            typed = jax.random.wrap_key_data(jnp.asarray(key))
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"save: key of shape {np.shape(key)} is not a legacy uint32 key: {error}"
            ) from error
    else:
        raise TypeError(
            "save: key must be a PRNG key from jax.random.key (or a legacy uint32 key from "
            f"jax.random.PRNGKey), got {type(key).__name__} with dtype {dtype}"
        )
    impl = str(jax.random.key_impl(typed))
    return np.asarray(jax.random.key_data(typed)), np.array(impl)


def _meta_json(meta: object) -> str:
    if not isinstance(meta, dict):
        raise TypeError(f"save: meta must be a dict, got {type(meta).__name__}")
    try:
        return json.dumps(meta)
    except TypeError as error:
        raise TypeError(f"save: meta must be JSON-serialisable: {error}") from error
    except ValueError as error:
        raise ValueError(f"save: meta must be JSON-serialisable: {error}") from error


def _in_tree(prefix: str, name: str) -> bool:
    # keystr output is empty or starts with "[" or ".", so the prefix cannot swallow a longer word.
    return name == prefix or name.startswith((prefix + "[", prefix + "."))


def _describe(value: object) -> str:
    """A short description of a removed-keyword argument, for an error message."""
    if type(value) is tuple:
        return f"a tuple of {len(value)}"
    return type(value).__name__


def _check_present(
    path: Path, stored: dict[str, np.ndarray], prefix: str, template: PyTree, what: str
) -> None:
    """A template with leaves for a tree the file does not hold is an error of its own."""
    if jax.tree_util.tree_leaves(template) and not any(_in_tree(prefix, n) for n in stored):
        raise ValueError(
            f"load: {str(path)!r} holds no {what}, but `{prefix}` gives a template; "
            f"leave {prefix} out, or save it with nj.save(..., {prefix}=...)"
        )


def _restore(
    prefix: str, template: PyTree, stored: dict[str, np.ndarray], problems: list[str]
) -> PyTree:
    """``template`` filled from ``stored``; mismatches are appended to ``problems``."""
    paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    expected = set()
    for path, leaf in paths_and_leaves:
        name = prefix + jax.tree_util.keystr(path)
        expected.add(name)
        shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
        if shape is None or dtype is None:
            raise TypeError(
                f"load: template leaf {name} must be an array or jax.ShapeDtypeStruct, "
                f"got {type(leaf).__name__}"
            )
        shape, dtype = tuple(shape), np.dtype(dtype)
        array = stored.get(name)
        if array is None:
            problems.append(f"{name}: in the template with shape {shape}, not in the checkpoint")
        elif array.shape != shape:
            problems.append(f"{name}: checkpoint has shape {array.shape}, template has {shape}")
        elif array.dtype != dtype:
            problems.append(
                f"{name}: checkpoint has dtype {array.dtype} with shape {array.shape}, "
                f"template has {dtype} with shape {shape}"
            )
        else:
            leaves.append(jnp.asarray(array))
    for name in sorted(n for n in stored if _in_tree(prefix, n) and n not in expected):
        problems.append(
            f"{name}: in the checkpoint with shape {stored[name].shape}, not in the template"
        )
    if len(leaves) < len(paths_and_leaves):
        return None
    return jax.tree_util.tree_unflatten(treedef, leaves)
