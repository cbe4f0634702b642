"""Layers: `Layer` NamedTuples of pure functions, each with a hand-written backward."""

from nnrs_jax.layers.activations import elu, leaky_relu, relu, selu, sigmoid, softmax, tanh
from nnrs_jax.layers.base import (
    Layer,
    Pretransposed,
    backward,
    context_layer,
    forward,
    has_state,
    output_shape,
)
from nnrs_jax.layers.combinators import residual, serial
from nnrs_jax.layers.dense import DenseParams, dense

__all__ = [
    "DenseParams",
    "Layer",
    "Pretransposed",
    "backward",
    "context_layer",
    "dense",
    "elu",
    "forward",
    "has_state",
    "leaky_relu",
    "output_shape",
    "relu",
    "residual",
    "selu",
    "serial",
    "sigmoid",
    "softmax",
    "tanh",
]
