"""The recipes and the specs they are built from: one definition of the default MLP, specs that
survive JSON, and errors that name the function, the entry, what was expected and what was given."""

from __future__ import annotations

import json
import re

import jax
import numpy as np
import pytest

import nnrs_jax as nj
from nnrs_jax import recipes, specs


def _leaves_equal(a, b) -> None:
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_the_mlp_recipe_is_its_spec():
    model = recipes.mlp()
    assert model.name == specs.build_model(recipes.MLP_MODEL).name
    reg = nj.l2(5e-5)
    by_hand = nj.serial(
        nj.dense(784, 1024, regularizer=reg), nj.relu(),
        nj.dense(1024, 512, regularizer=reg), nj.relu(),
        nj.dense(512, 10, regularizer=reg),
    )  # fmt: skip
    assert model.name == by_hand.name
    assert nj.output_shape(model, (3, 784)) == (3, 10)
    key = jax.random.key(0)
    params = model.init(key)
    _leaves_equal(params, by_hand.init(key))
    assert float(model.penalty(params)[0]) == float(by_hand.penalty(params)[0]) > 0
    assert specs.build_loss(recipes.MLP_MODEL) is nj.cross_entropy
    assert recipes.MLP_MODEL["regularizer"] == "l2:5e-5"
    assert specs.parse_regularizer(recipes.MLP_MODEL["regularizer"]) == nj.l2(5e-5)


def test_a_spec_survives_json_and_text_arch_is_the_same_model():
    spec = json.loads(json.dumps(recipes.MLP_MODEL))
    assert spec == recipes.MLP_MODEL
    as_text = {**spec, "arch": specs.format_arch(spec["arch"])}
    assert as_text["arch"] == "784-1024-512-10"
    key = jax.random.key(1)
    _leaves_equal(specs.build_model(spec).init(key), specs.build_model(as_text).init(key))


def test_kind_defaults_to_mlp_and_the_other_kinds_are_the_recipes():
    spec = {"arch": [4, 3, 2], "activation": "elu", "init": "lecun", "loss": "mse"}
    model = specs.build_model(spec)
    by_hand = nj.serial(nj.dense(4, 3, init="lecun"), nj.elu(), nj.dense(3, 2, init="lecun"))
    assert model.name == by_hand.name
    _leaves_equal(model.init(jax.random.key(2)), by_hand.init(jax.random.key(2)))
    assert model.penalty(model.init(jax.random.key(0)))[0] == 0  # no regularizer entry: none
    assert tuple(recipes.RECIPES) == specs.MODELS
    for kind, (build, _) in recipes.RECIPES.items():
        if kind != "mlp":
            assert specs.build_model({"kind": kind, "loss": "cross_entropy"}) == build()


def test_every_table_name_builds():
    base = {"arch": [4, 2], "loss": "mse"}
    for activation in specs.ACTIVATIONS:
        for init in specs.INITIALIZERS:
            spec = {**base, "arch": [4, 3, 2], "activation": activation, "init": init}
            assert nj.output_shape(specs.build_model(spec), (1, 4)) == (1, 2)
    for name in specs.LOSSES:
        assert specs.build_loss({"loss": name}) is specs.LOSSES[name]
    params = specs.build_model({**base, "activation": "relu", "init": "he"}).init(jax.random.key(0))
    for name in specs.OPTIMIZERS:
        for schedule in specs.SCHEDULES:
            optimizer = specs.build_optimizer(
                {"optimizer": name, "lr": 0.01, "schedule": schedule}, 20, 5
            )
            optimizer.init(params)


def test_optional_optimizer_entries_compose():
    spec = {"optimizer": "adamw", "lr": 1e-3, "schedule": "warmup_cosine", "weight_decay": 0.0,
            "clip": 1.0, "ema": 0.9, "accumulate": 2}  # fmt: skip
    params = nj.dense(3, 2).init(jax.random.key(0))
    state = specs.build_optimizer(spec, 10, 5).init(params)
    assert type(state).__name__ == "AccumulateState"
    nj.ema_params(state.inner)  # the moving average is inside the accumulation
    plain = {"optimizer": "sgd", "lr": 0.1, "schedule": "constant", "clip": None, "ema": None,
             "accumulate": None, "weight_decay": None}  # fmt: skip
    assert specs.build_optimizer(plain, 0, 1).init(params) == nj.sgd(0.1).init(params)


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ([784, 10], TypeError, "build_model: spec must be a dict, got list"),
        ({"kind": "rnn"}, ValueError, "build_model: spec['kind'] must be one of ('mlp', 'cnn', "
         "'fast', 'lstm', 'transformer'), got 'rnn'"),
        ({"activation": "relu", "init": "he"}, ValueError, "build_model: spec has no 'arch' entry"),
        ({"arch": "784", "activation": "relu", "init": "he"}, ValueError,
         "parse_arch: text must be two or more sizes >= 1 joined by '-', e.g. '784-64-10', "
         "got '784'"),
        ({"arch": [784, 0], "activation": "relu", "init": "he"}, ValueError,
         "build_model: spec['arch'][1] must be an int >= 1, got 0"),
        ({"arch": [784, 10.0], "activation": "relu", "init": "he"}, TypeError,
         "build_model: spec['arch'][1] must be an int, got 10.0 (float)"),
        ({"arch": 784, "activation": "relu", "init": "he"}, ValueError,
         "build_model: spec['arch'] must be two or more layer sizes, got 784"),
        ({"arch": [4, 2], "activation": "swish", "init": "he"}, ValueError,
         "build_model: spec['activation'] must be one of ('relu', 'leaky_relu', 'elu', 'selu', "
         "'tanh', 'sigmoid'), got 'swish'"),
        ({"arch": [4, 2], "activation": "relu", "init": "xavier"}, ValueError,
         "build_model: spec['init'] must be one of ('he', 'lecun', 'glorot'), got 'xavier'"),
        ({"arch": [4, 2], "activation": "relu", "init": "he", "regularizer": "l2:-1"}, ValueError,
         "build_model: spec['regularizer']: parse_regularizer: text 'l2:-1': l2: lam must be a "
         "finite float >= 0, got -1.0"),
    ],
)  # fmt: skip
def test_build_model_errors_name_the_entry_and_both_values(spec, error, message):
    with pytest.raises(error, match=re.escape(message)):
        specs.build_model(spec)


@pytest.mark.parametrize(
    ("spec", "steps", "error", "message"),
    [
        ({"optimizer": "adagrad", "lr": 0.1, "schedule": "constant"}, (1, 1), ValueError,
         "build_optimizer: spec['optimizer'] must be one of ('sgd', "),
        ({"optimizer": "sgd", "lr": 0.1}, (1, 1), ValueError,
         "build_optimizer: spec has no 'schedule' entry; it has ['lr', 'optimizer']"),
        ({"optimizer": "sgd", "lr": 0.0, "schedule": "constant"}, (1, 1), ValueError,
         "build_optimizer: spec['lr'] must be a finite float > 0, got 0.0"),
        ({"optimizer": "sgd", "lr": "0.1", "schedule": "constant"}, (1, 1), TypeError,
         "build_optimizer: spec['lr'] must be a float, got '0.1' (str)"),
        ({"optimizer": "adam", "lr": 0.1, "schedule": "constant", "weight_decay": 1e-4}, (1, 1),
         ValueError, "build_optimizer: spec['weight_decay'] goes with optimizer 'adamw' "
         "(decoupled weight decay), got optimizer 'adam' with weight_decay 0.0001"),
        ({"optimizer": "sgd", "lr": 0.1, "schedule": "constant"}, (-1, 1), ValueError,
         "build_optimizer: total_steps must be an int >= 0, got -1"),
        ({"optimizer": "sgd", "lr": 0.1, "schedule": "constant"}, (1, 0), ValueError,
         "build_optimizer: steps_per_epoch must be an int >= 1, got 0"),
    ],
)  # fmt: skip
def test_build_optimizer_errors_name_the_entry_and_both_values(spec, steps, error, message):
    with pytest.raises(error, match=re.escape(message)):
        specs.build_optimizer(spec, *steps)


def test_build_loss_errors():
    with pytest.raises(ValueError, match=re.escape("build_loss: spec has no 'loss' entry")):
        specs.build_loss({"kind": "cnn"})
    with pytest.raises(ValueError, match=re.escape("build_loss: spec['loss'] must be one of")):
        specs.build_loss({"loss": "hinge"})


@pytest.mark.parametrize("text", ["", "784", "784-", "784-0-10", "a-b", "784--10"])
def test_parse_arch_rejects(text):
    with pytest.raises(ValueError, match=re.escape(f"got {text!r}")):
        specs.parse_arch(text)


@pytest.mark.parametrize("text", ["l3:1", "l2", "l2:1,2", "elastic_net:1", "none:1", "l2:x"])
def test_parse_regularizer_rejects(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        specs.parse_regularizer(text)


def test_parse_regularizer_reads_every_form():
    assert specs.parse_regularizer("none") is None
    assert specs.parse_regularizer("l1:0.5") == nj.l1(0.5)
    assert specs.parse_regularizer("elastic_net:1e-4,2e-4") == nj.elastic_net(1e-4, 2e-4)
