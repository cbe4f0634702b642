"""Optimizers described as templates with slots, as `fit_many` compiles them once."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import nnrs_jax as nj
from nnrs_jax.optim.templates import instantiate, template


def test_differing_numbers_become_slots_and_equal_ones_constants():
    described = template([nj.adam(1e-3, b1=0.8), nj.adam(3e-3, b1=0.8)], jnp.float32)
    assert described is not None and described.hyper
    # Every slot is the learning rate (it appears once in init and once in update, per part);
    # b1, equal in both, stays a constant of the compiled code.
    for column in described.hyper:
        np.testing.assert_allclose(np.asarray(column), [1e-3, 3e-3])
        assert column.dtype == jnp.float32
    second = tuple(3e-3 for _ in described.hyper)
    assert instantiate(described.template, second) == nj.adam(3e-3, b1=0.8)
    # The template is hashable and equal for equal optimizers: the compiled step's cache key.
    again = template([nj.adam(2e-3, b1=0.8), nj.adam(5e-3, b1=0.8)], jnp.float32)
    assert hash(again.template) == hash(described.template)
    assert again.template == described.template


def test_different_optimizers_have_no_common_template():
    assert template([nj.adam(1e-3), nj.sgd(1e-3)], jnp.float32) is None
    assert template([nj.adam(1e-3), nj.chain(nj.clip(1.0), nj.adam(1e-3))], jnp.float32) is None


def test_equal_optimizers_have_no_slots():
    described = template([nj.sgd(0.1), nj.sgd(0.1)], jnp.float32)
    assert described.hyper == ()
    assert instantiate(described.template, ()) == nj.sgd(0.1)
