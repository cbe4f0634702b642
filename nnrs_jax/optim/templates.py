"""Optimizers as templates: the same optimizer for several models, but for some numbers.

`fit_many` trains several models under ``vmap``, each with its own optimizer built from a
hyperparameter (``lambda lr: nj.adam(lr)``). The optimizers compare by their settings (`bind`),
so they can be described as one hashable *template* — a tree of `bind` functions, tuples and
numbers — whose numbers that differ between models become *slots*, arguments of the compiled
step (`Template.hyper`, one value per model). `instantiate` rebuilds a model's optimizer from
the template and its slot values, inside ``vmap``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nnrs_jax.optim.base import bind

__all__ = ["Template", "instantiate", "template"]


class Template(NamedTuple):
    """An optimizer described once for all models: ``template`` with slots for ``hyper``.

    ``template`` is a hashable tree of nodes, ``("bind", fn, children)``, ``("tuple", type,
    children)``, ``("static", value)`` and ``("slot", i)``; ``hyper[i]`` holds slot ``i``'s
    value for each model (a leading model axis).
    """

    template: Any
    hyper: tuple[jax.Array, ...]


def _node(value: Any, numbers: list[float]) -> Any:
    """A hashable node for ``value`` (an optimizer or a part of one); floats go to ``numbers``.

    Raises:
        TypeError: ``value`` holds something that is neither a `bind`, a tuple, a number nor
            hashable (e.g. an array).
    """
    if isinstance(value, bind):
        return ("bind", value.fn, tuple(_node(h, numbers) for h in value.hyper))
    if isinstance(value, tuple):
        return ("tuple", type(value), tuple(_node(v, numbers) for v in value))
    if isinstance(value, (float, np.floating)):
        numbers.append(float(value))
        return ("number",)
    hash(value)
    return ("static", value)


def template(optimizers: list[Any], dtype: Any) -> Template | None:
    """The optimizers as one template whose differing numbers are slots; ``None`` if not alike.

    Numbers equal across the models stay constants of the compiled code; the others become
    ``hyper`` arrays (in ``dtype`` when it is a float type), arguments of the compiled code.
    """
    nodes, numbers = [], []
    for optimizer in optimizers:
        found: list[float] = []
        try:
            nodes.append(_node(optimizer, found))
        except TypeError:
            return None
        numbers.append(found)
    if any(node != nodes[0] for node in nodes):
        return None
    columns = iter(zip(*numbers, strict=True))
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else None
    hyper: list[jax.Array] = []

    def fill(node: Any) -> Any:
        if node[0] == "number":
            column = next(columns)
            if len(set(column)) == 1:
                return ("static", column[0])
            hyper.append(jnp.asarray(column, dtype))
            return ("slot", len(hyper) - 1)
        if node[0] in ("bind", "tuple"):
            return (node[0], node[1], tuple(fill(child) for child in node[2]))
        return node

    template = fill(nodes[0])
    return Template(template, tuple(hyper))


def instantiate(node: Any, hyper: Any) -> Any:
    """Rebuild an optimizer from its template, slot ``i`` taking the value ``hyper[i]``."""
    kind = node[0]
    if kind == "slot":
        return hyper[node[1]]
    if kind == "static":
        return node[1]
    children = [instantiate(child, hyper) for child in node[2]]
    if kind == "bind":
        return bind(node[1], *children)
    cls = node[1]
    return cls(*children) if hasattr(cls, "_fields") else cls(children)
