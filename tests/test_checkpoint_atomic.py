"""Atomic writes: the old file stays intact when writing or renaming fails, the umask sets the
permissions, and a save replaces the old file."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from checkpoint_helpers import assert_bit_identical, csv_params, listing, mlp_params

from nnrs_jax.checkpoint import load, save, save_csv_weights


def test_file_permissions_follow_the_umask(tmp_path, key):
    old = os.umask(0o027)
    try:
        save(tmp_path / "c.npz", mlp_params(key, jnp.float32))
    finally:
        os.umask(old)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == 0o640


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
    params = mlp_params(key, jnp.float32)
    path = tmp_path / "c.npz"
    save(path, params, step=1)
    before = path.read_bytes()
    monkeypatch.setattr(target, *replacement)
    with pytest.raises(OSError, match="simulated"):
        save(path, jax.tree.map(lambda p: p + 1.0, params), step=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["c.npz"]
    assert load(path, params=params).step == 1


def test_saving_over_a_checkpoint_replaces_it(tmp_path, key):
    params = mlp_params(key, jnp.float32)
    path = tmp_path / "c.npz"
    save(path, params, step=1)
    newer = jax.tree.map(lambda p: p + 1.0, params)
    save(path, newer, step=2)
    ckpt = load(path, params=params)
    assert_bit_identical(ckpt.params, newer)
    assert ckpt.step == 2 and listing(tmp_path) == ["c.npz"]


def test_csv_failed_write_keeps_the_old_file(tmp_path, key, monkeypatch):
    params = csv_params(key, jnp.float32)
    save_csv_weights(tmp_path, params)
    before = {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)}
    monkeypatch.setattr(os, "replace", _fail_replace)
    with pytest.raises(OSError, match="simulated"):
        save_csv_weights(tmp_path, jax.tree.map(lambda p: p + 1.0, params))
    monkeypatch.undo()
    assert {name: (tmp_path / name).read_bytes() for name in listing(tmp_path)} == before
