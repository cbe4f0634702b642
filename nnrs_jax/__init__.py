"""nnrs_jax: a functional neural-network library on JAX with hand-written backward passes.

Layers are ``(init, apply, backward)`` NamedTuples, parameters and optimizer states are pytrees,
and training is one jit-compiled step. See the README for a tour.
"""

from nnrs_jax import datasets, initializers, schedules
from nnrs_jax.cache import enable_compilation_cache
from nnrs_jax.checkpoint import Checkpoint, load, load_csv, load_meta, save, save_csv
from nnrs_jax.layers import (
    DenseParams,
    Layer,
    Pretransposed,
    backward,
    context_layer,
    dense,
    elu,
    forward,
    has_state,
    leaky_relu,
    output_shape,
    relu,
    residual,
    selu,
    serial,
    sigmoid,
    softmax,
    tanh,
)
from nnrs_jax.losses import Loss, cross_entropy, mse, softmax_mse
from nnrs_jax.metrics import Report, confusion_matrix, evaluate
from nnrs_jax.objective import check_grads, loss_and_grad, penalty
from nnrs_jax.optim import (
    AdamState,
    MomentumState,
    Optimizer,
    RmspropState,
    SgdState,
    adam,
    adamax,
    apply_updates,
    momentum,
    nadam,
    nesterov,
    rmsprop,
    sgd,
)
from nnrs_jax.regularizers import Regularizer, elastic_net, l1, l2
from nnrs_jax.train import FitResult, fit, fit_many, make_train_step

__version__ = "0.1.0"

__all__ = [
    "AdamState",
    "Checkpoint",
    "DenseParams",
    "FitResult",
    "Layer",
    "Loss",
    "MomentumState",
    "Optimizer",
    "Pretransposed",
    "backward",
    "context_layer",
    "forward",
    "has_state",
    "output_shape",
    "residual",
    "Regularizer",
    "Report",
    "RmspropState",
    "SgdState",
    "adam",
    "adamax",
    "apply_updates",
    "check_grads",
    "confusion_matrix",
    "cross_entropy",
    "datasets",
    "dense",
    "elastic_net",
    "elu",
    "enable_compilation_cache",
    "evaluate",
    "fit",
    "fit_many",
    "initializers",
    "l1",
    "l2",
    "leaky_relu",
    "load",
    "load_csv",
    "load_meta",
    "loss_and_grad",
    "make_train_step",
    "momentum",
    "mse",
    "nadam",
    "nesterov",
    "penalty",
    "relu",
    "rmsprop",
    "save",
    "save_csv",
    "schedules",
    "selu",
    "serial",
    "sgd",
    "sigmoid",
    "softmax",
    "softmax_mse",
    "tanh",
]
