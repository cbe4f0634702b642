"""nnrs_jax: a functional neural-network library on JAX with hand-written backward passes.

Layers are ``(init, apply, backward)`` NamedTuples, parameters and optimizer states are pytrees,
and training is one jit-compiled step. See the README for a tour.
"""

from nnrs_jax import initializers
from nnrs_jax.layers import (
    DenseParams,
    Layer,
    dense,
    elu,
    leaky_relu,
    relu,
    selu,
    serial,
    sigmoid,
    softmax,
    tanh,
)
from nnrs_jax.losses import Loss, cross_entropy, mse, softmax_mse
from nnrs_jax.objective import check_grads, loss_and_grad, penalty
from nnrs_jax.regularizers import Regularizer, elastic_net, l1, l2

__version__ = "0.1.0"

__all__ = [
    "DenseParams",
    "Layer",
    "Loss",
    "Regularizer",
    "check_grads",
    "cross_entropy",
    "dense",
    "elastic_net",
    "elu",
    "initializers",
    "l1",
    "l2",
    "leaky_relu",
    "loss_and_grad",
    "mse",
    "penalty",
    "relu",
    "selu",
    "serial",
    "sigmoid",
    "softmax",
    "softmax_mse",
    "tanh",
]
