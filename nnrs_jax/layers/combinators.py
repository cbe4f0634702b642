"""Combinators: `serial` (layers in sequence) and `residual` (a skip connection).

Both are context layers (see `nnrs_jax.layers.base`): they hand each child its own slice of
``state`` and its own PRNG key, and call every child through `forward` / `backward`, so plain
and context layers mix freely and nest to any depth.
"""

from __future__ import annotations

from typing import Any

import jax

from nnrs_jax.layers.base import (
    Layer,
    Params,
    PRNGKey,
    State,
    backward,
    check_model,
    forward,
    layer_factory,
)
from nnrs_jax.layers.contract import LayerContractError, located

__all__ = ["residual", "serial"]


def _check_layers(name: str, layers: tuple[Any, ...]) -> None:
    for i, layer in enumerate(layers):
        check_model(name, layer, f"argument {i}")


def _split(key: PRNGKey | None, n: int) -> list[PRNGKey | None]:
    """One key per child (``None`` when no key was given: only stochastic layers need one)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


@layer_factory
def serial(*layers: Layer) -> Layer:
    """Chain layers: ``y = fₙ(… f₂(f₁(x)))``; params and state are tuples, one entry per layer.

    Layer ``i`` gets key ``split(key, n)[i]`` and state ``state[i]``; ``new_state[i]`` is what
    it returns. Backward runs the forward pass to collect each layer's input ``xᵢ`` (with the
    same keys, so dropout masks are the forward's), then the layers' backward passes in
    reverse: ``(gᵢ, dxᵢ) = backwardᵢ(pᵢ, xᵢ, dxᵢ₊₁)``. Under ``jit`` XLA merges this forward
    with the one of ``apply`` and drops the unused ``dx`` of the first layer. The penalty is
    the sum of the layers' penalties; ``prepare`` is the first layer's. Nestable.

    Examples:
        >>> import jax, nnrs_jax as nj
        >>> mlp = nj.serial(nj.dense(784, 64), nj.elu(), nj.dense(64, 10))
        >>> params = mlp.init(jax.random.key(0))
        >>> mlp.apply(params, jax.numpy.zeros((8, 784))).shape
        (8, 10)
    """
    if not layers:
        raise ValueError("serial: needs at least one layer, got none")
    _check_layers("serial", layers)
    name = "serial(" + ", ".join(layer.name for layer in layers) + ")"
    n = len(layers)

    def init(key: PRNGKey) -> tuple[Params, ...]:
        keys = jax.random.split(key, n)
        return tuple(layer.init(k) for layer, k in zip(layers, keys))

    def init_state() -> tuple[State, ...]:
        return tuple(layer.init_state() for layer in layers)

    def _check(what: str, tree: Any, allow_none: bool = False) -> tuple[Any, ...]:
        if tree is None and allow_none:
            return (None,) * n
        if not isinstance(tree, tuple) or len(tree) != n:
            got = f"{len(tree)} entries" if isinstance(tree, tuple) else type(tree).__name__
            raise TypeError(
                f"{name}: {what} must be a tuple of {n} entries (one per layer, from "
                f"{'init' if what == 'params' else 'init_state'}), got {got}"
            )
        return tree

    def run(
        params: tuple[Params, ...], x: Any, state: Any, key: PRNGKey | None, train: bool
    ) -> tuple[list[Any], list[State]]:
        """Every layer's input (and the output last) and new state."""
        params, states = _check("params", params), _check("state", state, allow_none=True)
        inputs, new_states = [x], []
        for i, (layer, p, s, k) in enumerate(zip(layers, params, states, _split(key, n))):
            try:
                x, s = forward(layer, p, x, state=s, key=k, train=train)
            except LayerContractError as err:
                raise located(err, i, name) from None
            inputs.append(x)
            new_states.append(s)
        return inputs, new_states

    def forward_fn(params, x, *, state, key, train):
        inputs, new_states = run(params, x, state, key, train)
        return inputs[-1], tuple(new_states)

    def backward_fn(params, x, grad_y, *, state, key, train):
        inputs, _ = run(params, x, state, key, train)
        states, keys = _check("state", state, allow_none=True), _split(key, n)
        grads: list[Params] = [()] * n
        for i in reversed(range(n)):
            try:
                grads[i], grad_y = backward(
                    layers[i], params[i], inputs[i], grad_y, state=states[i], key=keys[i],
                    train=train,
                )  # fmt: skip
            except LayerContractError as err:
                raise located(err, i, name) from None
        return tuple(grads), grad_y

    def penalty(params: tuple[Params, ...]) -> tuple[jax.Array | float, tuple[Params, ...]]:
        parts = [layer.penalty(p) for layer, p in zip(layers, _check("params", params))]
        return sum(value for value, _ in parts), tuple(grad for _, grad in parts)

    return Layer.context(
        init,
        forward_fn,
        backward_fn,
        name=name,
        init_state=init_state,
        penalty=penalty,
        prepare=layers[0].prepare,
    )


@layer_factory
def residual(block: Layer) -> Layer:
    """Skip connection: ``y = x + block(x)`` (the building block of a ResNet).

    Backward: ``dx = dy + dx_block`` where ``(g, dx_block) = block.backward(p, x, dy)``; the
    params, state and key are the block's. The block must keep the shape of its input.
    Reference: He et al. 2016, "Deep residual learning for image recognition".

    Examples:
        >>> import jax, jax.numpy as jnp, nnrs_jax as nj
        >>> block = nj.residual(nj.serial(nj.dense(4, 4), nj.relu()))
        >>> params = block.init(jax.random.key(0))
        >>> block.apply(params, jnp.ones((2, 4))).shape
        (2, 4)
    """
    _check_layers("residual", (block,))
    name = f"residual({block.name})"

    def forward_fn(params, x, *, state, key, train):
        y, new_state = forward(block, params, x, state=state, key=key, train=train)
        if y.shape != x.shape:
            raise ValueError(
                f"{name}: the block must keep its input's shape {tuple(x.shape)}, "
                f"got output shape {tuple(y.shape)}"
            )
        return x + y, new_state

    def backward_fn(params, x, grad_y, *, state, key, train):
        grads, grad_x = backward(block, params, x, grad_y, state=state, key=key, train=train)
        return grads, grad_y + grad_x

    return Layer.context(
        block.init,
        forward_fn,
        backward_fn,
        name=name,
        init_state=block.init_state,
        penalty=block.penalty,
    )
