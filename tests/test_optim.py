"""Optimizers: each rule against an independent NumPy implementation, plus the contract.

``pytest tests/test_optim.py -s -k rule`` prints the table "optimizer | mode | max deviation".
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import check_vmap_equals_loop
from optim_helpers import (
    LR,
    STEPS,
    check_dtypes_are_preserved,
    check_init_does_not_alias_params,
    check_tree_mismatch_raises,
    check_update_traces_once,
    deviation,
    jax_run,
    jax_schedule,
    np_schedule,
    print_deviations,
    problem,
)

from nnrs_jax.optim.adaptive import AdamState, RmspropState, adam, adamax, nadam, rmsprop
from nnrs_jax.optim.base import Optimizer, apply_updates
from nnrs_jax.optim.gradient_descent import MomentumState, SgdState, momentum, nesterov, sgd
from nnrs_jax.schedules import cosine_decay
from nnrs_jax.specs import OPTIMIZERS

# Non-default hyperparameters, passed by keyword, so a mis-wired argument cannot go unnoticed.
HYPER: dict[str, dict[str, float]] = {
    "sgd": {},
    "momentum": {"momentum": 0.8},
    "nesterov": {"momentum": 0.85},
    "rmsprop": {"decay": 0.95, "eps": 1e-6},
    "adam": {"b1": 0.85, "b2": 0.99, "eps": 1e-6},
    "nadam": {"b1": 0.85, "b2": 0.99, "eps": 1e-6},
    "adamax": {"b1": 0.85, "b2": 0.99, "eps": 1e-6},
}
# The library's table of optimizers by name; adamw is tested in test_optim_weight_decay.py.
FACTORIES: dict[str, Callable[..., Optimizer]] = {name: OPTIMIZERS[name] for name in HYPER}
STATES = {
    "sgd": SgdState,
    "momentum": MomentumState,
    "nesterov": MomentumState,
    "rmsprop": RmspropState,
    "adam": AdamState,
    "nadam": AdamState,
    "adamax": AdamState,
}
NAMES = list(FACTORIES)
DEVIATIONS: dict[tuple[str, str], float] = {}


def make(name: str, learning_rate: float | Callable = LR) -> Optimizer:
    return FACTORIES[name](learning_rate, **HYPER[name])


def numpy_rule(name: str, g: np.ndarray, m: np.ndarray, s: np.ndarray, t: int, lr: float):
    """One step of the documented rule on one leaf, in float64 NumPy: (update, m, s)."""
    h = HYPER[name]
    if name == "sgd":
        return -lr * g, m, s
    if name in ("momentum", "nesterov"):
        m = h["momentum"] * m + g
        step = g + h["momentum"] * m if name == "nesterov" else m
        return -lr * step, m, s
    if name == "rmsprop":
        s = h["decay"] * s + (1 - h["decay"]) * g**2
        return -lr * g / np.sqrt(s + h["eps"]), m, s
    b1, b2, eps = h["b1"], h["b2"], h["eps"]
    m = b1 * m + (1 - b1) * g
    if name == "adamax":
        s = np.maximum(b2 * s, np.abs(g))
        return -lr * m / ((1 - b1**t) * (s + eps)), m, s
    s = b2 * s + (1 - b2) * g**2
    m_hat, s_hat = m / (1 - b1**t), s / (1 - b2**t)
    if name == "adam":
        return -lr * m_hat / (np.sqrt(s_hat) + eps), m, s
    return -lr * (b1 * m_hat + (1 - b1) * g / (1 - b1**t)) / (np.sqrt(s_hat) + eps), m, s


def numpy_run(name: str, params: dict, grads: dict, lr: Callable[[int], float]):
    """The reference trajectory: params after every step, and the final buffers."""
    p = {k: np.array(v) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    s = {k: np.zeros_like(v) for k, v in p.items()}
    trajectory = {k: [] for k in p}
    for t in range(1, STEPS + 1):
        for k in p:
            u, m[k], s[k] = numpy_rule(name, grads[k][t - 1], m[k], s[k], t, lr(t))
            p[k] = p[k] + u
            trajectory[k].append(p[k])
    return {k: np.stack(v) for k, v in trajectory.items()}, m, s


@pytest.fixture(scope="module")
def rule_table():
    yield DEVIATIONS
    print_deviations("optimizer", DEVIATIONS, NAMES)


@pytest.mark.parametrize("mode", ["eager", "jit", "scan"])
@pytest.mark.parametrize("name", NAMES)
def test_rule_matches_numpy(name: str, mode: str, rule_table: dict) -> None:
    params, grads = problem()
    expected, m, s = numpy_run(name, params, grads, lambda t: LR)
    trajectory, _, state = jax_run(make(name), params, grads, mode)
    buffers = [("velocity", m), ("scaling_factor", s)]
    devs = [deviation(getattr(state, f), ref) for f, ref in buffers if f in STATES[name]._fields]
    dev = max([deviation(trajectory, expected), *devs])
    rule_table[(name, mode)] = dev
    assert type(state) is STATES[name]
    assert int(state.timestep) == STEPS
    assert dev <= 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_schedule_sees_timestep_after_increment(name: str) -> None:
    """A float64 schedule lr(t) = 0.02/√t, t = 1 on the first step, in the reference too."""
    params, grads = problem(seed=1)
    expected, _, _ = numpy_run(name, params, grads, np_schedule)
    trajectory, _, _ = jax_run(make(name, jax_schedule), params, grads, "scan")
    assert deviation(trajectory, expected) <= 1e-10


def test_defaults_are_the_documented_ones() -> None:
    def defaults(f: Callable) -> dict:
        return {
            k: v.default
            for k, v in inspect.signature(f).parameters.items()
            if v.default is not inspect.Parameter.empty
        }

    assert defaults(sgd) == {}
    assert defaults(momentum) == defaults(nesterov) == {"momentum": 0.9}
    assert defaults(rmsprop) == {"decay": 0.9, "eps": 1e-7}
    for f in (adam, nadam, adamax):
        assert defaults(f) == {"b1": 0.9, "b2": 0.999, "eps": 1e-7}


G = np.array([0.5, -2.0, 3.0, 0.0])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sgd", -LR * G),
        ("momentum", -LR * G),
        ("nesterov", -LR * 1.9 * G),
        ("rmsprop", -LR * G / np.sqrt(0.1 * G**2 + 1e-7)),
        ("adam", -LR * G / (np.abs(G) + 1e-7)),
        ("nadam", -LR * 1.9 * G / (np.abs(G) + 1e-7)),
        ("adamax", -LR * G / (np.abs(G) + 1e-7)),
    ],
)
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_first_step_by_hand(name: str, expected: np.ndarray, dtype: type) -> None:
    """With default hyperparameters (μ = β1 = 0.9, ρ = 0.9, eps = 1e-7); float32 to 2e-6."""
    opt = FACTORIES[name](LR)
    params = {"x": jnp.ones(4, dtype)}
    updates, state = opt.update({"x": jnp.asarray(G, dtype)}, opt.init(params), params)
    assert int(state.timestep) == 1
    assert updates["x"].dtype == dtype
    rtol = 1e-12 if dtype == jnp.float64 else 2e-6
    if name in ("sgd", "momentum") and dtype == jnp.float64:
        np.testing.assert_array_equal(updates["x"], expected)
    np.testing.assert_allclose(updates["x"], expected, rtol=rtol, atol=0)
    if name in ("adam", "adamax"):
        np.testing.assert_allclose(updates["x"], -LR * np.sign(G), rtol=2e-6)


def test_schedule_must_return_a_scalar() -> None:
    opt = sgd(lambda t: jnp.full(2, 0.1))
    params = {"x": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"schedule must return a scalar, got shape \(2,\)"):
        opt.update(params, opt.init(params))


def _minimise(opt: Optimizer, loss: Callable, params: dict, steps: int) -> dict:
    def body(carry, _):
        p, state = carry
        updates, state = opt.update(jax.grad(loss)(p), state, p)
        return (apply_updates(p, updates), state), None

    run = jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), length=steps)[0][0])
    return run(params)


def _decaying(peak: float, steps: int) -> Callable:
    return cosine_decay(peak, steps, alpha=1e-3, dtype=jnp.float64)


QUADRATIC_LR = {
    "sgd": 0.15,
    "momentum": 0.05,
    "nesterov": 0.05,
    "rmsprop": _decaying(0.05, 2000),
    "adam": _decaying(0.1, 2000),
    "nadam": _decaying(0.1, 2000),
    "adamax": _decaying(0.1, 2000),
}


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name: str) -> None:
    """f(p) = ½·Σ a·(p - c)², curvatures a in [1, 10], from p = 0: 2000 steps in lax.scan."""
    rng = np.random.default_rng(2)
    a = {"w": rng.uniform(1, 10, (3, 4)), "b": rng.uniform(1, 10, (4,))}
    c = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))}

    def loss(p: dict) -> jax.Array:
        return 0.5 * sum(jnp.sum(a[k] * (p[k] - c[k]) ** 2) for k in p)

    opt = FACTORIES[name](QUADRATIC_LR[name])
    found = _minimise(opt, loss, {k: jnp.zeros_like(v) for k, v in c.items()}, 2000)
    assert max(float(np.max(np.abs(found[k] - c[k]))) for k in c) < 1e-6


ROSENBROCK = {
    "sgd": sgd(1.5e-3),
    "momentum": momentum(2e-4, momentum=0.9),
    "nesterov": nesterov(2e-4, momentum=0.9),
    "rmsprop": rmsprop(_decaying(3e-3, 20_000)),
    "adam": adam(_decaying(0.02, 20_000)),
    "nadam": nadam(_decaying(0.02, 20_000)),
    "adamax": adamax(_decaying(0.05, 20_000)),
}


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_rosenbrock(name: str) -> None:
    """(1 - x)² + 100·(y - x²)² from (-1.2, 1) reaches (1, 1) within 1e-3 in 20 000 steps."""

    def loss(p: dict) -> jax.Array:
        x, y = p["xy"][0], p["xy"][1]
        return (1 - x) ** 2 + 100.0 * (y - x * x) ** 2

    found = _minimise(ROSENBROCK[name], loss, {"xy": jnp.array([-1.2, 1.0])}, 20_000)
    assert float(jnp.max(jnp.abs(found["xy"] - 1.0))) < 1e-3


@pytest.mark.parametrize("schedule", [False, True], ids=["float_lr", "float32_schedule"])
@pytest.mark.parametrize("name", NAMES)
def test_dtypes_are_preserved(name: str, schedule: bool) -> None:
    """A float32 and a float64 leaf in one tree each keep their dtype, under jit."""
    lr = cosine_decay(LR, 10) if schedule else LR
    params, new_params, state = check_dtypes_are_preserved(make(name, lr), steps=2)
    assert state.timestep.dtype == jnp.int32 and state.timestep.shape == ()
    assert all(bool(jnp.all(new_params[k] < params[k])) for k in params)


@pytest.mark.parametrize("schedule", [False, True], ids=["float_lr", "schedule"])
@pytest.mark.parametrize("name", NAMES)
def test_jitted_update_traces_once(name: str, schedule: bool) -> None:
    """Four updates, one trace, even though the schedule's value changes at every step."""
    lr = cosine_decay(LR, 5, dtype=jnp.float64) if schedule else LR
    assert int(check_update_traces_once(make(name, lr), steps=4).timestep) == 4


def test_schedule_value_changes_without_recompiling() -> None:
    """sgd's update is exactly -lr(t)·g with lr(1), lr(2), … from one compiled function."""
    schedule = cosine_decay(1.0, 4, dtype=jnp.float64)
    opt = sgd(schedule)
    g = {"x": jnp.array([1.0, -2.0])}
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(state):
        return opt.update(g, state)

    state = opt.init(g)
    seen = []
    for t in range(1, 5):
        updates, state = update(state)
        np.testing.assert_allclose(updates["x"], -float(schedule(t)) * g["x"], rtol=1e-15)
        seen.append(float(schedule(t)))
    assert len(set(seen)) == 4


@pytest.mark.parametrize("name", NAMES)
def test_tree_mismatch_raises_type_error(name: str) -> None:
    check_tree_mismatch_raises(make(name))


@pytest.mark.parametrize("name", NAMES)
def test_leaf_shape_mismatch_names_the_leaf(name: str) -> None:
    opt = make(name)
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    state = opt.init(params)
    grads = {"w": jnp.ones((3, 4)), "b": jnp.ones(5)}
    with pytest.raises(ValueError, match=r"grads\['b'\] has shape \(5,\), expected \(4,\)"):
        jax.jit(opt.update)(grads, state, params)


def test_dtype_mismatch_and_bad_params_raise_type_error() -> None:
    opt = adam(LR)
    state = opt.init({"w": jnp.ones(3, jnp.float64)})
    with pytest.raises(TypeError, match=r"grads\['w'\] has dtype float32, expected float64"):
        opt.update({"w": jnp.ones(3, jnp.float32)}, state)
    with pytest.raises(TypeError, match=r"params\['n'\] must have a floating dtype, got int32"):
        opt.init({"n": jnp.ones(3, jnp.int32)})


def test_apply_updates_checks_the_tree_and_keeps_param_dtypes() -> None:
    params = {"w": jnp.ones(3, jnp.float32)}
    with pytest.raises(TypeError, match="does not match"):
        apply_updates(params, [jnp.ones(3)])
    with pytest.raises(ValueError, match=r"updates\['w'\] has shape \(2,\), expected \(3,\)"):
        apply_updates(params, {"w": jnp.ones(2, jnp.float32)})
    new = apply_updates(params, {"w": jnp.full(3, 0.25, jnp.float64)})
    assert new["w"].dtype == jnp.float32
    np.testing.assert_array_equal(new["w"], np.full(3, 1.25, np.float32))


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda: sgd(0.0),
        lambda: sgd(-0.1),
        lambda: sgd(math.nan),
        lambda: adam(math.inf),
        lambda: momentum(0.1, momentum=1.0),
        lambda: momentum(0.1, momentum=-0.1),
        lambda: nesterov(0.1, momentum=1.5),
        lambda: rmsprop(0.1, decay=1.0),
        lambda: rmsprop(0.1, eps=0.0),
        lambda: adam(0.1, b1=1.0),
        lambda: adam(0.1, b2=-0.01),
        lambda: nadam(0.1, eps=-1e-8),
        lambda: nadam(0.1, b2=1.0),
        lambda: adamax(0.1, b1=-0.5),
        lambda: adamax(0.1, eps=math.nan),
    ],
)
def test_bad_hyperparameters_raise_value_error(make_bad: Callable) -> None:
    with pytest.raises(ValueError, match=r"(learning_rate|momentum|decay|eps|b1|b2) must"):
        make_bad()


def test_wrong_hyperparameter_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="learning_rate must be a positive float or a schedule"):
        sgd("0.1")
    with pytest.raises(TypeError, match=r"adam: b1 must be a float, got '0.9' \(str\)"):
        adam(0.1, b1="0.9")


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_four_models_equals_four_runs(name: str) -> None:
    state = check_vmap_equals_loop(make(name), steps=5)
    assert state.timestep.shape == (4,) and state.timestep.dtype == jnp.int32


@pytest.mark.parametrize("name", NAMES)
def test_init_does_not_alias_params(name: str) -> None:
    check_init_does_not_alias_params(make(name))
