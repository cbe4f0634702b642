"""Layers: `Layer` objects of pure functions, each with a hand-written backward."""

from nnrs_jax.layers.activations import elu, leaky_relu, relu, selu, sigmoid, softmax, tanh
from nnrs_jax.layers.attention import AttentionParams, multi_head_attention
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
from nnrs_jax.layers.recurrent import GRUParams, LSTMParams, gru, lstm
from nnrs_jax.layers.sequence import (
    EmbeddingParams,
    LayerNormParams,
    PositionalEmbeddingParams,
    embedding,
    last_over_time,
    layer_norm,
    mean_over_time,
    positional_embedding,
)
from nnrs_jax.layers.shape import flatten, reshape

__all__ = [
    "AttentionParams",
    "BatchNormParams",
    "BatchNormState",
    "Conv2dParams",
    "DenseParams",
    "EmbeddingParams",
    "GRUParams",
    "LSTMParams",
    "Layer",
    "LayerCheck",
    "LayerContractError",
    "LayerNormParams",
    "PositionalEmbeddingParams",
    "avg_pool",
    "backward",
    "batch_norm",
    "check_layer",
    "conv2d",
    "dense",
    "dropout",
    "elu",
    "embedding",
    "flatten",
    "forward",
    "gru",
    "has_state",
    "last_over_time",
    "layer_factory",
    "layer_norm",
    "leaky_relu",
    "lstm",
    "max_pool",
    "mean_over_time",
    "multi_head_attention",
    "no_params",
    "output_shape",
    "positional_embedding",
    "relu",
    "reshape",
    "residual",
    "selu",
    "serial",
    "sigmoid",
    "softmax",
    "tanh",
]
