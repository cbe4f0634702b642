"""`serial`: compose layers in sequence; the result is itself a `Layer`."""

from __future__ import annotations

import jax

from nnrs_jax.layers.base import Layer, Params

__all__ = ["serial"]


def serial(*layers: Layer) -> Layer:
    """Chain layers: ``y = fₙ(… f₂(f₁(x)))``; params are a tuple, one entry per layer.

    Backward runs the forward pass to collect each layer's input ``xᵢ``, then applies the
    layers' backward passes in reverse: ``(gᵢ, dxᵢ) = backwardᵢ(pᵢ, xᵢ, dxᵢ₊₁)``. Under ``jit``
    XLA merges this forward with the one of ``apply`` and drops the unused ``dx`` of the first
    layer. The penalty is the sum of the layers' penalties. Nestable: a `serial` is a `Layer`.

    Example:
        >>> import jax, nnrs_jax as nj
        >>> mlp = nj.serial(nj.dense(784, 64), nj.elu(), nj.dense(64, 10))
        >>> params = mlp.init(jax.random.key(0))
        >>> mlp.apply(params, jax.numpy.zeros((8, 784))).shape
        (8, 10)
    """
    if not layers:
        raise ValueError("serial: needs at least one layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"serial: argument {i} must be a Layer (e.g. nj.dense(...), nj.relu()), "
                f"got {type(layer).__name__}; did you forget to call the factory?"
            )
    name = "serial(" + ", ".join(layer.name for layer in layers) + ")"

    def init(key: jax.Array) -> tuple[Params, ...]:
        keys = jax.random.split(key, len(layers))
        return tuple(layer.init(k) for layer, k in zip(layers, keys))

    def _check_params(params: Params) -> None:
        if not isinstance(params, tuple) or len(params) != len(layers):
            got = len(params) if isinstance(params, tuple) else type(params).__name__
            raise TypeError(
                f"{name}: params must be a tuple of {len(layers)} entries (from init), got {got}"
            )

    def apply(params: tuple[Params, ...], x: jax.Array) -> jax.Array:
        _check_params(params)
        for layer, p in zip(layers, params):
            x = layer.apply(p, x)
        return x

    def backward(
        params: tuple[Params, ...], x: jax.Array, grad_y: jax.Array
    ) -> tuple[tuple[Params, ...], jax.Array]:
        _check_params(params)
        inputs = []
        for layer, p in zip(layers, params):
            inputs.append(x)
            x = layer.apply(p, x)
        grads: list[Params] = [()] * len(layers)
        for i in reversed(range(len(layers))):
            grads[i], grad_y = layers[i].backward(params[i], inputs[i], grad_y)
        return tuple(grads), grad_y

    def penalty(params: tuple[Params, ...]) -> tuple[jax.Array | float, tuple[Params, ...]]:
        _check_params(params)
        parts = [layer.penalty(p) for layer, p in zip(layers, params)]
        return sum(value for value, _ in parts), tuple(grad for _, grad in parts)

    return Layer(init, apply, backward, penalty, name)
