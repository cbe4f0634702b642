"""Layers: `dense`, activations and the `serial` combinator, all `Layer` NamedTuples."""

from nnrs_jax.layers.activations import elu, leaky_relu, relu, selu, sigmoid, softmax, tanh
from nnrs_jax.layers.base import Layer, Pretransposed
from nnrs_jax.layers.combinators import serial
from nnrs_jax.layers.dense import DenseParams, dense

__all__ = [
    "DenseParams",
    "Layer",
    "Pretransposed",
    "dense",
    "elu",
    "leaky_relu",
    "relu",
    "selu",
    "serial",
    "sigmoid",
    "softmax",
    "tanh",
]
