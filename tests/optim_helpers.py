"""Shared by the tests of the gradient transformations: NumPy references and one contract.

Each ``Np…`` class re-implements a transformation on dicts of float64 NumPy arrays, with the
library's contract: ``init(params) -> state``, ``update(g, state, p) -> (u, state)``.
`TransformContract` holds the tests that every transformation passes; a test module subclasses
it with its own cases, so that each module's tests run beside the rest of its file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import check_vmap_equals_loop

from nnrs_jax.optim import Optimizer, apply_updates, ema_params

STEPS = 100
LR = 0.01
Tree = dict[str, np.ndarray]
Case = tuple[Callable[[], Optimizer], Callable[[], Any]]  # (library factory, NumPy reference)
BadHyperparameter = tuple[Callable[[], Any], type, str]  # (bad factory call, error, message)


# --- independent NumPy references: init(params) -> state, update(g, state, p) -> (u, state) ----


def np_schedule(t: int) -> float:
    return 0.02 / math.sqrt(t)


def jax_schedule(t: jax.Array) -> jax.Array:
    return 0.02 / jnp.sqrt(t.astype(jnp.float64))


def np_constant(t: int) -> float:
    return LR


def np_zeros(tree: Tree) -> Tree:
    return {k: np.zeros_like(v) for k, v in tree.items()}


class NpBuffered:
    """A reference whose state is one buffer of zeros shaped like the params."""

    def init(self, p: Tree) -> Tree:
        return np_zeros(p)


class NpStateless:
    """A reference without state."""

    def init(self, p: Tree) -> None:
        return None


class NpLearningRate:
    def __init__(self, lr: Callable[[int], float]) -> None:
        self.lr = lr

    def init(self, p: Tree) -> int:
        return 0

    def update(self, g: Tree, t: int, p: Tree) -> tuple[Tree, int]:
        t += 1
        return {k: -self.lr(t) * v for k, v in g.items()}, t


class NpMomentum(NpBuffered):
    def __init__(self, mu: float, nesterov: bool) -> None:
        self.mu, self.nesterov = mu, nesterov

    def update(self, g: Tree, v: Tree, p: Tree) -> tuple[Tree, Tree]:
        v = {k: self.mu * v[k] + g[k] for k in g}
        u = {k: g[k] + self.mu * v[k] for k in g} if self.nesterov else v
        return u, v


class NpRms(NpBuffered):
    def __init__(self, rho: float, eps: float) -> None:
        self.rho, self.eps = rho, eps

    def update(self, g: Tree, s: Tree, p: Tree) -> tuple[Tree, Tree]:
        s = {k: self.rho * s[k] + (1 - self.rho) * g[k] ** 2 for k in g}
        return {k: g[k] / np.sqrt(s[k] + self.eps) for k in g}, s


class NpAdam:
    def __init__(self, b1: float, b2: float, eps: float, kind: str = "adam") -> None:
        self.b1, self.b2, self.eps, self.kind = b1, b2, eps, kind

    def init(self, p: Tree) -> tuple:
        return 0, np_zeros(p), np_zeros(p)

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


class NpClip(NpStateless):
    def __init__(self, delta: float) -> None:
        self.delta = delta

    def update(self, g: Tree, state: None, p: Tree) -> tuple[Tree, None]:
        return {k: np.minimum(np.maximum(v, -self.delta), self.delta) for k, v in g.items()}, None


class NpGlobalNorm(NpStateless):
    def __init__(self, c: float) -> None:
        self.c = c

    def update(self, g: Tree, state: None, p: Tree) -> tuple[Tree, None]:
        norm = math.sqrt(sum(float(np.sum(v**2)) for v in g.values()))
        factor = 1.0 if norm <= self.c else self.c / norm
        return {k: v * factor for k, v in g.items()}, None


class NpDecay(NpStateless):
    def __init__(self, rate: float, decayed: tuple[str, ...]) -> None:
        self.rate, self.decayed = rate, decayed

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
        return 0, np_zeros(p), self.inner.init(p), dict(p)

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
            return np_zeros(g), (pending, inner)
        mean = {k: sum(x[k] for x in pending) / self.every for k in g}
        u, inner = self.inner.update(mean, inner, p)
        return u, ([], inner)


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
    """(params trajectory, EMA trajectory or None, final state).

    ``mode``: ``"eager"`` (a Python loop of eager steps), ``"jit"`` (of jitted steps) or
    ``"scan"`` (one jitted ``lax.scan``).
    """

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
    stepper = jax.jit(step) if mode == "jit" else step
    trajectory, averages = [], []
    for t in range(STEPS):
        p, state, average = stepper(p, state, {k: jnp.asarray(v[t]) for k, v in grads.items()})
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


def print_deviations(what: str, deviations: dict[tuple[str, str], float], order: list) -> None:
    """Print the table "``what`` | mode | max deviation", rows in the order of ``order``."""
    if not deviations:
        return
    width = max(len(what), *(len(name) for name, _ in deviations))
    print(f"\n{what:{width}s} | mode  | max deviation from NumPy, {STEPS} float64 steps")
    for (name, mode), dev in sorted(deviations.items(), key=lambda kv: order.index(kv[0][0])):
        print(f"{name:{width}s} | {mode:5s} | {dev:.2e}")


# --- checks shared by the optimizers' and the transformations' tests --------------------------


def check_dtypes_are_preserved(opt: Optimizer, steps: int) -> tuple[Tree, Tree, Any]:
    """A float32 leaf ``w`` and a float64 leaf ``b`` in one tree each keep their dtype, under jit.

    Checked on the new params, the updates and every dict in the state after ``steps`` updates
    (all from the initial params); every scalar in the state is an int32 counter.
    Returns ``(params, new params, state)``.
    """
    params = {"w": jnp.ones((3, 4), jnp.float32), "b": jnp.ones(4, jnp.float64)}
    grads = {"w": jnp.full((3, 4), 0.5, jnp.float32), "b": jnp.full(4, 0.5, jnp.float64)}

    @jax.jit
    def step(p, state):
        updates, state = opt.update(grads, state, p)
        return apply_updates(p, updates), updates, state

    state = opt.init(params)
    for _ in range(steps):
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
    return params, new_params, state


def check_update_traces_once(opt: Optimizer, steps: int) -> Any:
    """``steps`` updates through one jitted function, traced once; returns the final state."""
    params, grads = problem()
    chex.clear_trace_counter()  # the counter is keyed by code, shared across all the callers

    @jax.jit
    @chex.assert_max_traces(n=1)
    def update(g, state, p):
        return opt.update(g, state, p)

    p = jax.tree.map(jnp.asarray, params)
    state = opt.init(p)
    for t in range(steps):
        _, state = update({k: jnp.asarray(v[t]) for k, v in grads.items()}, state, p)
    return state


def check_init_does_not_alias_params(opt: Optimizer) -> None:
    """No state leaf is a params buffer or another state leaf's; donating both then works."""
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    state = opt.init(params)
    pointers = {x.unsafe_buffer_pointer() for x in jax.tree.leaves(params)}
    for leaf in jax.tree.leaves(state):
        assert all(leaf is not x for x in jax.tree.leaves(params))
        assert leaf.unsafe_buffer_pointer() not in pointers
        pointers.add(leaf.unsafe_buffer_pointer())

    def step(p, s):
        updates, s = opt.update(jax.tree.map(jnp.ones_like, p), s, p)
        return apply_updates(p, updates), s

    expected = jax.jit(step)(params, state)
    # Donating params and state together fails if any state buffer is a params buffer.
    donated = jax.jit(step, donate_argnums=(0, 1))(params, state)
    chex.assert_trees_all_equal(donated, expected)


def check_tree_mismatch_raises(opt: Optimizer) -> None:
    """Gradients whose tree is not the params' raise a TypeError naming the missing leaf."""
    params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
    state = opt.init(params)
    with pytest.raises(TypeError, match=r"grads tree does not match .*'b'"):
        opt.update({"w": jnp.ones((3, 4))}, state, params)
    with pytest.raises(TypeError, match="does not match"):
        jax.jit(opt.update)((jnp.ones((3, 4)), jnp.ones(4)), state, params)


# --- the contract: the tests every transformation passes --------------------------------------


class TransformContract:
    """The tests every transformation passes, run over the cases of a subclass.

    A test module subclasses it (``class Test…(TransformContract)``) and sets ``CASES``, name ->
    (library factory, NumPy reference factory), and ``BAD_HYPERPARAMETERS``, (factory call,
    error type, message) triples. A test taking ``name`` runs once per case;
    ``test_bad_hyperparameters_raise`` once per triple.
    ``pytest tests/test_optim_….py -s -k numpy`` prints the table
    "transformation | mode | max deviation" of the module's cases.
    """

    CASES: ClassVar[dict[str, Case]] = {}
    BAD_HYPERPARAMETERS: ClassVar[list[BadHyperparameter]] = []

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "name" in metafunc.fixturenames:
            metafunc.parametrize("name", list(self.CASES))
        if "make_bad" in metafunc.fixturenames:
            metafunc.parametrize(("make_bad", "error", "message"), self.BAD_HYPERPARAMETERS)

    @pytest.fixture(scope="class")
    @classmethod
    def rule_table(cls):
        deviations: dict[tuple[str, str], float] = {}
        yield deviations
        print_deviations("transformation", deviations, list(cls.CASES))

    @pytest.mark.parametrize("mode", ["jit", "scan"])
    def test_trajectory_matches_numpy(self, name: str, mode: str, rule_table: dict) -> None:
        make, make_ref = self.CASES[name]
        params, grads = problem()
        expected, expected_average = numpy_run(make_ref(), params, grads)
        trajectory, average, _ = jax_run(make(), params, grads, mode)
        devs = [deviation(trajectory, expected)]
        assert (average is None) == (expected_average is None)
        if average is not None:
            devs.append(deviation(average, expected_average))
        rule_table[(name, mode)] = max(devs)
        assert max(devs) <= 1e-12

    def test_vmap_over_four_models_equals_four_runs(self, name: str) -> None:
        check_vmap_equals_loop(self.CASES[name][0](), steps=7)

    def test_dtypes_are_preserved(self, name: str) -> None:
        check_dtypes_are_preserved(self.CASES[name][0](), steps=4)

    def test_jitted_update_traces_once(self, name: str) -> None:
        check_update_traces_once(self.CASES[name][0](), steps=5)

    def test_init_does_not_alias_params(self, name: str) -> None:
        check_init_does_not_alias_params(self.CASES[name][0]())

    def test_tree_mismatch_raises_type_error(self, name: str) -> None:
        check_tree_mismatch_raises(self.CASES[name][0]())

    def test_bad_hyperparameters_raise(self, make_bad: Callable, error: type, message: str) -> None:
        with pytest.raises(error, match=message):
            make_bad()

    def test_int_params_are_rejected_by_every_init(self) -> None:
        for make, _ in self.CASES.values():
            with pytest.raises(
                TypeError, match=r"params\['n'\] must have a floating dtype, got int32"
            ):
                make().init({"n": jnp.ones(3, jnp.int32)})
