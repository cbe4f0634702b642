"""Layers: `Layer` objects of pure functions, each with a hand-written backward."""

from nnrs_jax.layers.activations import elu, leaky_relu, relu, selu, sigmoid, softmax, tanh
from nnrs_jax.layers.base import (
    Layer,
    backward,
    forward,
    has_state,
    layer_factory,
    no_params,
    output_shape,
)
from nnrs_jax.layers.check import LayerCheck, check_layer
from nnrs_jax.layers.combinators import residual, serial
from nnrs_jax.layers.contract import LayerContractError
from nnrs_jax.layers.conv import Conv2dParams, conv2d
from nnrs_jax.layers.dense import DenseParams, dense
from nnrs_jax.layers.dropout import dropout
from nnrs_jax.layers.normalization import BatchNormParams, BatchNormState, batch_norm
from nnrs_jax.layers.pooling import avg_pool, max_pool
from nnrs_jax.layers.shape import flatten, reshape

__all__ = [
    "BatchNormParams",
    "BatchNormState",
    "Conv2dParams",
    "DenseParams",
    "Layer",
    "LayerCheck",
    "LayerContractError",
    "avg_pool",
    "backward",
    "batch_norm",
    "check_layer",
    "conv2d",
    "dense",
    "dropout",
    "elu",
    "flatten",
    "forward",
    "has_state",
    "layer_factory",
    "leaky_relu",
    "max_pool",
    "no_params",
    "output_shape",
    "relu",
    "reshape",
    "residual",
    "selu",
    "serial",
    "sigmoid",
    "softmax",
    "tanh",
]
