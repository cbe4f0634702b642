"""Transformations, `chain`, `adamw`, `ema` and `accumulate` against independent NumPy code.

``pytest tests/test_optim_transforms.py -s -k numpy`` prints the table
"transformation | mode | max deviation".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import check_vmap_equals_loop, take

from nnrs_jax.optim import (
    AdamState,
    MomentumState,
    Optimizer,
    RmspropState,
    SgdState,
    accumulate,
    adam,
    adamax,
    adamw,
    add_decayed_weights,
    apply_updates,
    chain,
    clip,
    clip_by_global_norm,
    ema,
    ema_params,
    matrices_only,
    momentum,
    nadam,
    nesterov,
    rmsprop,
    scale_by_adam,
    scale_by_adamax,
    scale_by_learning_rate,
    scale_by_momentum,
    scale_by_rms,
    sgd,
)

STEPS = 100
LR = 0.01
DEVIATIONS: dict[tuple[str, str], float] = {}
Tree = dict[str, np.ndarray]


# --- independent NumPy references: init(params) -> state, update(g, state, p) -> (u, state) ----


def np_schedule(t: int) -> float:
    return 0.02 / math.sqrt(t)


def jax_schedule(t: jax.Array) -> jax.Array:
    return 0.02 / jnp.sqrt(t.astype(jnp.float64))


class NpLearningRate:
    def __init__(self, lr: Callable[[int], float]) -> None:
        self.lr = lr

    def init(self, p: Tree) -> int:
        return 0

    def update(self, g: Tree, t: int, p: Tree) -> tuple[Tree, int]:
        t += 1
        return {k: -self.lr(t) * v for k, v in g.items()}, t


class NpMomentum:
    def __init__(self, mu: float, nesterov: bool) -> None:
        self.mu, self.nesterov = mu, nesterov

    def init(self, p: Tree) -> Tree:
        return {k: np.zeros_like(v) for k, v in p.items()}

    def update(self, g: Tree, v: Tree, p: Tree) -> tuple[Tree, Tree]:
        v = {k: self.mu * v[k] + g[k] for k in g}
        u = {k: g[k] + self.mu * v[k] for k in g} if self.nesterov else v
        return u, v


class NpRms:
    def __init__(self, rho: float, eps: float) -> None:
        self.rho, self.eps = rho, eps

    def init(self, p: Tree) -> Tree:
        return {k: np.zeros_like(v) for k, v in p.items()}

    def update(self, g: Tree, s: Tree, p: Tree) -> tuple[Tree, Tree]:
        s = {k: self.rho * s[k] + (1 - self.rho) * g[k] ** 2 for k in g}
        return {k: g[k] / np.sqrt(s[k] + self.eps) for k in g}, s


class NpAdam:
    def __init__(self, b1: float, b2: float, eps: float, kind: str = "adam") -> None:
        self.b1, self.b2, self.eps, self.kind = b1, b2, eps, kind

    def init(self, p: Tree) -> tuple:
        return (
            0,
            {k: np.zeros_like(v) for k, v in p.items()},
            {k: np.zeros_like(v) for k, v in p.items()},
        )

    def update(self, g: Tree, state: tuple, p: Tree) -> tuple[Tree, tuple]:
        t, m, s = state
        t += 1
        b1, b2, eps = self.b1, self.b2, self.eps
        m = {k: b1 * m[k] + (1 - b1) * g[k] for k in g}
        if self.kind == "adamax":
            s = {k: np.maximum(b2 * s[k], np.abs(g[k])) for k in g}
            return {k: m[k] / ((1 - b1**t) * (s[k] + eps)) for k in g}, (t, m, s)
        s = {k: b2 * s[k] + (1 - b2) * g[k] ** 2 for k in g}
        u = {}
        for k in g:
            m_hat, s_hat = m[k] / (1 - b1**t), s[k] / (1 - b2**t)
            if self.kind == "nadam":
                m_hat = b1 * m_hat + (1 - b1) * g[k] / (1 - b1**t)
            u[k] = m_hat / (np.sqrt(s_hat) + eps)
        return u, (t, m, s)


class NpClip:
    def __init__(self, delta: float) -> None:
        self.delta = delta

    def init(self, p: Tree) -> None:
        return None

    def update(self, g: Tree, state: None, p: Tree) -> tuple[Tree, None]:
        return {k: np.minimum(np.maximum(v, -self.delta), self.delta) for k, v in g.items()}, None


class NpGlobalNorm:
    def __init__(self, c: float) -> None:
        self.c = c

    def init(self, p: Tree) -> None:
        return None

    def update(self, g: Tree, state: None, p: Tree) -> tuple[Tree, None]:
        norm = math.sqrt(sum(float(np.sum(v**2)) for v in g.values()))
        factor = 1.0 if norm <= self.c else self.c / norm
        return {k: v * factor for k, v in g.items()}, None


class NpDecay:
    def __init__(self, rate: float, decayed: tuple[str, ...]) -> None:
        self.rate, self.decayed = rate, decayed

    def init(self, p: Tree) -> None:
        return None

    def update(self, g: Tree, state: None, p: Tree) -> tuple[Tree, None]:
        return {k: v + self.rate * p[k] if k in self.decayed else v for k, v in g.items()}, None


class NpChain:
    def __init__(self, *links: Any) -> None:
        self.links = links

    def init(self, p: Tree) -> list:
        return [link.init(p) for link in self.links]

    def update(self, g: Tree, states: list, p: Tree) -> tuple[Tree, list]:
        new = []
        for link, state in zip(self.links, states, strict=True):
            g, state = link.update(g, state, p)
            new.append(state)
        return g, new


class NpEma:
    """The zero-initialised average a ← d·a + (1-d)·p, divided by 1 - d^t when read.

    Before the first update it reads as the initial params.
    """

    def __init__(self, inner: Any, decay: float) -> None:
        self.inner, self.decay = inner, decay

    def init(self, p: Tree) -> tuple:
        return 0, {k: np.zeros_like(v) for k, v in p.items()}, self.inner.init(p), dict(p)

    def update(self, g: Tree, state: tuple, p: Tree) -> tuple[Tree, tuple]:
        t, a, inner, initial = state
        u, inner = self.inner.update(g, inner, p)
        t += 1
        a = {k: self.decay * a[k] + (1 - self.decay) * (p[k] + u[k]) for k in p}
        return u, (t, a, inner, initial)

    def average(self, state: tuple) -> Tree:
        t, a, _, initial = state
        return initial if t == 0 else {k: v / (1 - self.decay**t) for k, v in a.items()}


class NpAccumulate:
    def __init__(self, inner: Any, every: int) -> None:
        self.inner, self.every = inner, every

    def init(self, p: Tree) -> tuple:
        return [], self.inner.init(p)

    def update(self, g: Tree, state: tuple, p: Tree) -> tuple[Tree, tuple]:
        pending, inner = state
        pending = [*pending, g]
        if len(pending) < self.every:
            return {k: np.zeros_like(v) for k, v in g.items()}, (pending, inner)
        mean = {k: sum(x[k] for x in pending) / self.every for k in g}
        u, inner = self.inner.update(mean, inner, p)
        return u, ([], inner)


# --- the cases: name -> (library optimizer, NumPy reference) ----------------------------------


def _cases() -> dict[str, tuple[Callable[[], Optimizer], Callable[[], Any]]]:
    const = lambda t: LR  # noqa: E731 - a one-line constant schedule for the references
    return {
        "scale_by_learning_rate": (
            lambda: scale_by_learning_rate(LR),
            lambda: NpLearningRate(const),
        ),
        "scale_by_learning_rate(schedule)": (
            lambda: scale_by_learning_rate(jax_schedule),
            lambda: NpLearningRate(np_schedule),
        ),
        "scale_by_momentum": (
            lambda: scale_by_momentum(0.8),
            lambda: NpMomentum(0.8, nesterov=False),
        ),
        "scale_by_momentum(nesterov)": (
            lambda: scale_by_momentum(0.85, nesterov=True),
            lambda: NpMomentum(0.85, nesterov=True),
        ),
        "scale_by_rms": (lambda: scale_by_rms(0.95, 1e-6), lambda: NpRms(0.95, 1e-6)),
        "scale_by_adam": (
            lambda: scale_by_adam(0.85, 0.99, 1e-6),
            lambda: NpAdam(0.85, 0.99, 1e-6),
        ),
        "scale_by_adam(nesterov)": (
            lambda: scale_by_adam(0.85, 0.99, 1e-6, nesterov=True),
            lambda: NpAdam(0.85, 0.99, 1e-6, "nadam"),
        ),
        "scale_by_adamax": (
            lambda: scale_by_adamax(0.85, 0.99, 1e-6),
            lambda: NpAdam(0.85, 0.99, 1e-6, "adamax"),
        ),
        "clip": (lambda: clip(0.7), lambda: NpClip(0.7)),
        "clip_by_global_norm": (lambda: clip_by_global_norm(3.0), lambda: NpGlobalNorm(3.0)),
        "add_decayed_weights": (
            lambda: add_decayed_weights(0.02),
            lambda: NpDecay(0.02, ("w", "b")),
        ),
        "add_decayed_weights(mask)": (
            lambda: add_decayed_weights(0.02, mask=matrices_only),
            lambda: NpDecay(0.02, ("w",)),
        ),
        "chain": (
            lambda: chain(
                clip_by_global_norm(3.0),
                scale_by_adam(0.85, 0.99, 1e-6),
                add_decayed_weights(0.1, mask={"w": True, "b": False}),
                scale_by_learning_rate(jax_schedule),
            ),
            lambda: NpChain(
                NpGlobalNorm(3.0),
                NpAdam(0.85, 0.99, 1e-6),
                NpDecay(0.1, ("w",)),
                NpLearningRate(np_schedule),
            ),
        ),
        "adamw": (
            lambda: adamw(LR, b1=0.85, b2=0.99, eps=1e-6, weight_decay=0.1),
            lambda: NpChain(
                NpAdam(0.85, 0.99, 1e-6), NpDecay(0.1, ("w", "b")), NpLearningRate(const)
            ),
        ),
        "adamw(mask)": (
            lambda: adamw(LR, weight_decay=0.1, mask=matrices_only),
            lambda: NpChain(NpAdam(0.9, 0.999, 1e-7), NpDecay(0.1, ("w",)), NpLearningRate(const)),
        ),
        "ema": (
            lambda: ema(adam(LR, b1=0.85, b2=0.99, eps=1e-6), decay=0.9),
            lambda: NpEma(NpChain(NpAdam(0.85, 0.99, 1e-6), NpLearningRate(const)), 0.9),
        ),
        "accumulate": (
            lambda: accumulate(adam(LR, b1=0.85, b2=0.99, eps=1e-6), every=4),
            lambda: NpAccumulate(NpChain(NpAdam(0.85, 0.99, 1e-6), NpLearningRate(const)), 4),
        ),
        "accumulate(ema)": (
            lambda: accumulate(ema(nesterov(LR, momentum=0.8), decay=0.5), every=3),
            lambda: NpAccumulate(
                NpEma(NpChain(NpMomentum(0.8, True), NpLearningRate(const)), 0.5), 3
            ),
        ),
    }


CASES = _cases()
NAMES = list(CASES)


def problem(seed: int = 0, steps: int = STEPS) -> tuple[Tree, Tree]:
    rng = np.random.default_rng(seed)
    params = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))}
    grads = {
        "w": rng.normal(size=(steps, 3, 4)) * rng.uniform(0.1, 3.0, size=(steps, 1, 1)),
        "b": rng.normal(size=(steps, 4)) * rng.uniform(0.1, 3.0, size=(steps, 1)),
    }
    return params, grads


def _np_average(ref: Any, state: Any) -> Tree | None:
    """The NumPy reference's EMA of the params, wherever the reference keeps one."""
    if isinstance(ref, NpEma):
        return ref.average(state)
    if isinstance(ref, NpAccumulate):
        return _np_average(ref.inner, state[1])
    return None


def _has_ema(state: Any) -> bool:
    try:
        ema_params(state)
    except ValueError:
        return False
    return True


def numpy_run(ref: Any, params: Tree, grads: Tree) -> tuple[Tree, Tree | None]:
    """Params after every step, and the EMA after every step (None without one)."""
    p = {k: np.array(v) for k, v in params.items()}
    state = ref.init(p)
    trajectory, averages = [], []
    for t in range(STEPS):
        u, state = ref.update({k: v[t] for k, v in grads.items()}, state, p)
        p = {k: p[k] + u[k] for k in p}
        trajectory.append(p)
        averages.append(_np_average(ref, state))
    stack = lambda trees: {k: np.stack([x[k] for x in trees]) for k in trees[0]}  # noqa: E731
    return stack(trajectory), (stack(averages) if averages[0] is not None else None)


def jax_run(opt: Optimizer, params: Tree, grads: Tree, mode: str) -> tuple[Any, Any, Any]:
    """(params trajectory, EMA trajectory or None, final state): jitted loop or one lax.scan."""

    def step(p, state, g):
        updates, state = opt.update(g, state, p)
        p = apply_updates(p, updates)
        return p, state, (ema_params(state) if _has_ema(state) else None)

    p = jax.tree.map(jnp.asarray, params)
    state = opt.init(p)
    if mode == "scan":

        def body(carry, g):
            p, state, average = step(*carry, g)
            return (p, state), (p, average)

        run = jax.jit(lambda p, s, gs: jax.lax.scan(body, (p, s), gs))
        (_, state), (trajectory, averages) = run(p, state, jax.tree.map(jnp.asarray, grads))
        return trajectory, averages, state
    jitted = jax.jit(step)
    trajectory, averages = [], []
    for t in range(STEPS):
        p, state, average = jitted(p, state, {k: jnp.asarray(v[t]) for k, v in grads.items()})
        trajectory.append(p)
        averages.append(average)
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
    return stack(trajectory), (stack(averages) if averages[0] is not None else None), state


def deviation(actual: Tree, expected: Tree) -> float:
    """max |a - b| / max(|b|, 1): absolute below 1, relative above; inf if either is not finite."""
    worst = 0.0
    for k, v in expected.items():
        a = np.asarray(actual[k])
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(v))):
            return math.inf
        worst = max(worst, float(np.max(np.abs(a - v) / np.maximum(np.abs(v), 1))))
    return worst


@pytest.fixture(scope="module")
def rule_table():
    yield DEVIATIONS
    if DEVIATIONS:
        print(f"\n{'transformation':34s} | mode | max deviation from NumPy, 100 float64 steps")
        for (name, mode), dev in sorted(DEVIATIONS.items(), key=lambda kv: NAMES.index(kv[0][0])):
            print(f"{name:34s} | {mode:4s} | {dev:.2e}")


@pytest.mark.parametrize("mode", ["jit", "scan"])
@pytest.mark.parametrize("name", NAMES)
def test_trajectory_matches_numpy(name: str, mode: str, rule_table: dict) -> None:
    make, make_ref = CASES[name]
    params, grads = problem()
    expected, expected_average = numpy_run(make_ref(), params, grads)
    trajectory, average, _ = jax_run(make(), params, grads, mode)
    devs = [deviation(trajectory, expected)]
    assert (average is None) == (expected_average is None)
    if average is not None:
        devs.append(deviation(average, expected_average))
    rule_table[(name, mode)] = max(devs)
    assert max(devs) <= 1e-12


def test_clipping_is_active_and_inactive_in_the_trajectory() -> None:
    """The clipping cases exercise both branches: some steps are clipped and some are not."""
    _, grads = problem()
    norms = np.sqrt(np.sum(grads["w"] ** 2, axis=(1, 2)) + np.sum(grads["b"] ** 2, axis=1))
    assert np.any(norms > 3.0) and np.any(norms < 3.0)
    assert np.any(np.abs(grads["w"]) > 0.7) and np.any(np.abs(grads["w"]) < 0.7)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_four_models_equals_four_runs(name: str) -> None:
    check_vmap_equals_loop(CASES[name][0](), steps=7)


@pytest.mark.parametrize(
    "make",
    [
        lambda lr: scale_by_learning_rate(lr),
        lambda lr: chain(clip(1.0), scale_by_learning_rate(lr)),
        lambda lr: adamw(lr, mask=matrices_only),
        lambda lr: accumulate(ema(nadam(lr), decay=0.9), every=2),
    ],
    ids=["scale_by_learning_rate", "chain", "adamw", "accumulate_ema_nadam"],
)
def test_learning_rate_traced_under_vmap(make: Callable[[Any], Optimizer]) -> None:
    """``jax.vmap(lambda lr: make(lr).update(...))`` equals one run per learning rate."""
    params, grads = problem(seed=4, steps=6)
    p0 = jax.tree.map(jnp.asarray, params)
    lrs = jnp.array([1e-3, 1e-2, 1e-1])

    def run(lr):
        opt = make(lr)

        def body(carry, g):
            p, state = carry
            updates, state = opt.update(g, state, p)
            return (apply_updates(p, updates), state), None

        return jax.lax.scan(body, (p0, opt.init(p0)), jax.tree.map(jnp.asarray, grads))[0][0]

    together = jax.jit(jax.vmap(run))(lrs)
    for i, lr in enumerate([1e-3, 1e-2, 1e-1]):
        chex.assert_trees_all_close(
            take(together, i), jax.jit(functools.partial(run, lr))(), rtol=1e-13
        )


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_are_preserved(name: str) -> None:
    """A float32 and a float64 leaf in one tree each keep their dtype, under jit."""
    opt = CASES[name][0]()
    params = {"w": jnp.ones((3, 4), jnp.float32), "b": jnp.ones(4, jnp.float64)}
    grads = {"w": jnp.full((3, 4), 0.5, jnp.float32), "b": jnp.full(4, 0.5, jnp.float64)}

    @jax.jit
    def step(p, state):
        updates, state = opt.update(grads, state, p)
        return apply_updates(p, updates), updates, state

    state = opt.init(params)
    for _ in range(4):
        new_params, updates, state = step(params, state)
    trees = [new_params, updates]
    trees += [
        x
        for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, dict))
        if isinstance(x, dict)
    ]
    for tree in trees:
        assert tree["w"].dtype == jnp.float32
        assert tree["b"].dtype == jnp.float64
    for leaf in jax.tree.leaves(state):
        if leaf.shape == ():
            assert leaf.dtype == jnp.int32


@pytest.mark.parametrize("name", NAMES)
def test_jitted_update_traces_once(name: str) -> None:
    opt = CASES[name][0]()
    params, grads = problem()
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(g, state, p):
        return opt.update(g, state, p)

    p = jax.tree.map(jnp.asarray, params)
    state = opt.init(p)
    for t in range(5):
        _, state = update({k: jnp.asarray(v[t]) for k, v in grads.items()}, state, p)


@pytest.mark.parametrize("name", NAMES)
def test_init_does_not_alias_params(name: str) -> None:
    opt = CASES[name][0]()
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    state = opt.init(params)
    pointers = {x.unsafe_buffer_pointer() for x in jax.tree.leaves(params)}
    for leaf in jax.tree.leaves(state):
        assert leaf.unsafe_buffer_pointer() not in pointers
        pointers.add(leaf.unsafe_buffer_pointer())

    def step(p, s):
        updates, s = opt.update(jax.tree.map(jnp.ones_like, p), s, p)
        return apply_updates(p, updates), s

    expected = jax.jit(step)(params, state)
    donated = jax.jit(step, donate_argnums=(0, 1))(params, state)
    chex.assert_trees_all_equal(donated, expected)


@pytest.mark.parametrize("name", NAMES)
def test_tree_mismatch_raises_type_error(name: str) -> None:
    opt = CASES[name][0]()
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    state = opt.init(params)
    with pytest.raises(TypeError, match=r"grads tree does not match .*'b'"):
        opt.update({"w": jnp.ones((3, 4))}, state, params)


# --- the seven optimizers are the documented chains -------------------------------------------

COMPOSITIONS: dict[str, tuple[Callable[[], Optimizer], Callable[[], Optimizer], type]] = {
    "sgd": (lambda: sgd(LR), lambda: chain(scale_by_learning_rate(LR)), SgdState),
    "momentum": (
        lambda: momentum(LR, momentum=0.8),
        lambda: chain(scale_by_momentum(0.8), scale_by_learning_rate(LR)),
        MomentumState,
    ),
    "nesterov": (
        lambda: nesterov(LR, momentum=0.8),
        lambda: chain(scale_by_momentum(0.8, nesterov=True), scale_by_learning_rate(LR)),
        MomentumState,
    ),
    "rmsprop": (
        lambda: rmsprop(LR, decay=0.95, eps=1e-6),
        lambda: chain(scale_by_rms(0.95, 1e-6), scale_by_learning_rate(LR)),
        RmspropState,
    ),
    "adam": (
        lambda: adam(LR, b1=0.8, b2=0.99, eps=1e-6),
        lambda: chain(scale_by_adam(0.8, 0.99, 1e-6), scale_by_learning_rate(LR)),
        AdamState,
    ),
    "nadam": (
        lambda: nadam(LR, b1=0.8, b2=0.99, eps=1e-6),
        lambda: chain(scale_by_adam(0.8, 0.99, 1e-6, nesterov=True), scale_by_learning_rate(LR)),
        AdamState,
    ),
    "adamax": (
        lambda: adamax(LR, b1=0.8, b2=0.99, eps=1e-6),
        lambda: chain(scale_by_adamax(0.8, 0.99, 1e-6), scale_by_learning_rate(LR)),
        AdamState,
    ),
    "adamw": (
        lambda: adamw(LR, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.1, mask=matrices_only),
        lambda: chain(
            scale_by_adam(0.8, 0.99, 1e-6),
            add_decayed_weights(0.1, mask=matrices_only),
            scale_by_learning_rate(LR),
        ),
        AdamState,
    ),
}


@pytest.mark.parametrize("name", list(COMPOSITIONS))
def test_optimizer_is_its_documented_chain(name: str) -> None:
    """Bit for bit the chain's updates; the state is one NamedTuple holding the chain's fields."""
    make, make_chain, state_type = COMPOSITIONS[name]
    opt, chained = make(), make_chain()
    params, grads = problem(seed=5, steps=10)
    p = jax.tree.map(jnp.asarray, params)
    state, chain_state = opt.init(p), chained.init(p)
    for t in range(10):
        g = {k: jnp.asarray(v[t]) for k, v in grads.items()}
        updates, state = opt.update(g, state, p)
        chain_updates, chain_state = chained.update(g, chain_state, p)
        chex.assert_trees_all_equal(updates, chain_updates)
        p = apply_updates(p, updates)
    assert type(state) is state_type
    assert int(state.timestep) == 10
    for child in chain_state:
        for field, value in child._asdict().items():
            chex.assert_trees_all_equal(getattr(state, field), value)


# --- equality: equal settings give equal optimizers -------------------------------------------

FACTORIES: list[Callable[[], Optimizer]] = [
    lambda: sgd(0.1),
    lambda: nadam(0.1, b1=0.8),
    lambda: adamw(np.float32(0.5), weight_decay=1e-3, mask=matrices_only),
    lambda: chain(clip_by_global_norm(1.0), scale_by_adam(), scale_by_learning_rate(0.1)),
    lambda: accumulate(ema(momentum(0.1), decay=0.99), every=4),
]


@pytest.mark.parametrize("make", FACTORIES)
def test_equal_settings_give_equal_optimizers(make: Callable[[], Optimizer]) -> None:
    a, b = make(), make()
    assert a is not b
    assert a == b
    assert hash(a) == hash(b)


def test_different_settings_give_different_optimizers() -> None:
    assert adam(0.1) != adam(0.2)
    assert adam(0.1) != nadam(0.1)
    assert adam(0.1, b1=0.8) != adam(0.1, b1=0.85)
    assert momentum(0.1) != nesterov(0.1)
    assert add_decayed_weights(0.1) != add_decayed_weights(0.1, mask=matrices_only)
    assert accumulate(sgd(0.1), every=2) != accumulate(sgd(0.1), every=3)
    assert chain(clip(1.0), sgd(0.1)) != chain(sgd(0.1), clip(1.0))


def test_unhashable_hyperparameters_compare_by_identity() -> None:
    """A concrete array is read as a float; a traced one and a dict compare by identity."""
    assert scale_by_learning_rate(jnp.asarray(0.1)) == scale_by_learning_rate(0.1)

    def compare(lr, other):
        same = scale_by_learning_rate(lr)
        hash(same)  # hashable all the same, e.g. as a key of a cache of compiled steps
        equal = same == scale_by_learning_rate(lr)
        return jnp.asarray([equal, same != scale_by_learning_rate(other)])

    assert jax.jit(compare)(0.1, 0.1).tolist() == [True, True]
    mask = {"w": True}
    assert add_decayed_weights(0.1, mask) == add_decayed_weights(0.1, mask)
    assert add_decayed_weights(0.1, mask) != add_decayed_weights(0.1, {"w": True})


def test_an_equal_optimizer_reuses_compiled_code() -> None:
    """As a static argument of ``jax.jit`` a new but equal optimizer hits the compilation cache."""
    chex.clear_trace_counter()

    @functools.partial(jax.jit, static_argnums=0)
    @chex.assert_max_traces(n=1)
    def update(opt, g, state, p):
        return opt.update(g, state, p)

    p = {"x": jnp.ones(3)}
    for _ in range(3):
        opt = adamw(1e-3, weight_decay=1e-2, mask=matrices_only)
        update(opt, p, opt.init(p), p)
    with pytest.raises(AssertionError, match="traced > 1"):
        opt = adamw(2e-3, weight_decay=1e-2, mask=matrices_only)
        update(opt, p, opt.init(p), p)


# --- bad hyperparameters and bad calls --------------------------------------------------------


@pytest.mark.parametrize(
    ("make_bad", "error", "message"),
    [
        (lambda: sgd(0.0), ValueError, r"sgd: learning_rate must be a finite float > 0, got 0.0"),
        (lambda: scale_by_learning_rate(-1.0), ValueError, r"scale_by_learning_rate: learning_r"),
        (
            lambda: scale_by_learning_rate(math.inf),
            ValueError,
            "learning_rate must be a finite float > 0, got inf",
        ),
        (
            lambda: scale_by_learning_rate("0.1"),
            TypeError,
            "learning_rate must be a positive float or a schedule",
        ),
        (
            lambda: adam(jnp.ones(2)),
            TypeError,
            r"adam: an array learning_rate must be a floating scalar",
        ),
        (
            lambda: scale_by_momentum(1.0),
            ValueError,
            r"momentum must be a finite float >= 0 and < 1, got 1.0",
        ),
        (
            lambda: scale_by_momentum(0.9, nesterov=1),
            TypeError,
            "scale_by_momentum: nesterov must be a bool, got 1",
        ),
        (lambda: scale_by_rms(decay=-0.1), ValueError, "scale_by_rms: decay must be"),
        (
            lambda: scale_by_rms(eps=0.0),
            ValueError,
            r"scale_by_rms: eps must be a finite float > 0, got 0.0",
        ),
        (lambda: scale_by_rms(eps=math.nan), ValueError, "eps must be a finite float > 0, got nan"),
        (lambda: scale_by_adam(b1=1.0), ValueError, "scale_by_adam: b1 must be"),
        (lambda: scale_by_adam(b2=math.nan), ValueError, "scale_by_adam: b2 must be"),
        (
            lambda: scale_by_adam(eps="1e-8"),
            TypeError,
            r"scale_by_adam: eps must be a float, got '1e-8'",
        ),
        (lambda: scale_by_adam(nesterov=None), TypeError, "nesterov must be a bool"),
        (lambda: scale_by_adamax(b2=1.5), ValueError, "scale_by_adamax: b2 must be"),
        (lambda: clip(0.0), ValueError, r"clip: max_delta must be a finite float > 0, got 0.0"),
        (lambda: clip(-math.inf), ValueError, "clip: max_delta must be"),
        (lambda: clip(True), TypeError, r"clip: max_delta must be a float, got True \(bool\)"),
        (
            lambda: clip_by_global_norm(-1.0),
            ValueError,
            "max_norm must be a finite float > 0, got -1.0",
        ),
        (
            lambda: clip_by_global_norm(math.nan),
            ValueError,
            "clip_by_global_norm: max_norm must be",
        ),
        (
            lambda: add_decayed_weights(-1e-4),
            ValueError,
            "add_decayed_weights: rate must be a finite float",
        ),
        (lambda: add_decayed_weights(math.inf), ValueError, "add_decayed_weights: rate must be"),
        (
            lambda: add_decayed_weights(0.1, mask={"w": 1}),
            TypeError,
            r"mask\['w'\] must be a bool, got int",
        ),
        (lambda: adamw(0.0), ValueError, "adamw: learning_rate must be"),
        (lambda: adamw(0.1, b1=1.0), ValueError, "adamw: b1 must be"),
        (
            lambda: adamw(0.1, weight_decay=-1.0),
            ValueError,
            "adamw: weight_decay must be a finite float",
        ),
        (lambda: adamw(0.1, weight_decay="1e-4"), TypeError, "adamw: weight_decay must be a float"),
        (lambda: chain(clip(1.0), 0.1), TypeError, "chain: argument 1 must be an Optimizer"),
        (lambda: ema(adam(0.1), 1.0), ValueError, "ema: decay must be a finite float >= 0 and < 1"),
        (lambda: ema(adam(0.1), True), TypeError, "ema: decay must be a float"),
        (lambda: ema("adam", 0.9), TypeError, "ema: optimizer must be an Optimizer"),
        (
            lambda: accumulate(sgd(0.1), every=0),
            ValueError,
            "accumulate: every must be an int >= 1",
        ),
        (
            lambda: accumulate(sgd(0.1), every=2.0),
            TypeError,
            r"every must be an int, got 2.0 \(float\)",
        ),
        (lambda: accumulate(sgd, every=2), TypeError, "accumulate: optimizer must be an Optimiz"),
    ],
)
def test_bad_hyperparameters_raise(make_bad: Callable, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make_bad()


def test_numpy_scalars_are_accepted_and_equal_python_numbers() -> None:
    assert clip(np.float32(0.5)) == clip(0.5)
    assert accumulate(sgd(0.1), every=np.int64(2)) == accumulate(sgd(0.1), every=2)
    assert adamw(np.float64(1e-3), weight_decay=np.float64(1e-4)) == adamw(1e-3, weight_decay=1e-4)
    opt, params = add_decayed_weights(0.1, mask={"w": np.bool_(True)}), {"w": jnp.ones(2)}
    assert opt.update(params, opt.init(params), params)[0]["w"].tolist() == [1.1, 1.1]


def test_add_decayed_weights_needs_params_and_a_matching_mask() -> None:
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    opt = add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="add_decayed_weights: update needs params"):
        opt.update(params, opt.init(params))
    opt = add_decayed_weights(0.1, mask={"w": True})
    with pytest.raises(TypeError, match="the mask tree does not match the params tree"):
        opt.update(params, opt.init(params), params)
    opt = add_decayed_weights(0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))
    assert opt.update(params, opt.init(params), params)[0]["b"].tolist() == [1.0, 1.0]
    opt = add_decayed_weights(0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > jnp.ones(()), p))
    with pytest.raises(TypeError, match=r"mask\['b'\] must be a bool"):
        jax.jit(opt.update)(params, opt.init(params), params)


def test_adamw_needs_params() -> None:
    params = {"w": jnp.ones((2, 2))}
    opt = adamw(0.1)
    with pytest.raises(ValueError, match="add_decayed_weights: update needs params"):
        opt.update(params, opt.init(params))


def test_wrong_states_raise_type_error() -> None:
    params = {"w": jnp.ones(2)}
    with pytest.raises(TypeError, match=r"the tuple of the 2 children's states, got a 1-tuple"):
        chain(clip(1.0), sgd(0.1)).update(params, (None,), params)
    with pytest.raises(TypeError, match="adam: state must be of type AdamState, got tuple"):
        adam(0.1).update(params, chain(scale_by_adam()).init(params), params)


def test_int_params_are_rejected_by_every_init() -> None:
    for make, _ in CASES.values():
        with pytest.raises(TypeError, match=r"params\['n'\] must have a floating dtype, got int32"):
            make().init({"n": jnp.ones(3, jnp.int32)})


def test_global_norm_of_a_small_tree_passes_unchanged_and_a_large_one_keeps_direction() -> None:
    opt = clip_by_global_norm(5.0)
    small = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0 - 1e-12])}
    chex.assert_trees_all_equal(opt.update(small, opt.init(small))[0], small)
    large = {"a": jnp.array([30.0, 0.0]), "b": jnp.array([40.0])}
    clipped = opt.update(large, opt.init(large))[0]
    np.testing.assert_allclose(clipped["a"], [3.0, 0.0], rtol=1e-15)
    np.testing.assert_allclose(clipped["b"], [4.0], rtol=1e-15)
