"""A fresh JAX process for tests/test_parallel.py: train on a mesh, write what it measured.

    python tests/parallel_worker.py devices OUT
        one process with JAX_NUM_CPU_DEVICES=4 (set by the caller): 1, 2 and 4-device meshes
        against one device;
    python tests/parallel_worker.py processes OUT COORDINATOR NUM_PROCESSES PROCESS_ID
        one of several processes on localhost (gloo), each with JAX_NUM_CPU_DEVICES devices,
        against one device.

Each writes a JSON dict of measured maximum differences and facts (``OUT`` or
``OUT.<process id>``). Everything runs in float32, the library's default.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

import nnrs_jax as nj
from nnrs_jax import parallel
from nnrs_jax.train import _Feed, _fit_keys

N, FEATURES, CLASSES, BATCH = 384, 6, 3, 32
# Every loop runs longer than the CPU client's 32 computations in flight per device, the depth
# at which an unpaced multi-device loop can deadlock.
LOOP_STEPS = 40


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, FEATURES)).astype(np.float32)
    y = ((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5)).astype(np.int32)
    return x, y


def model() -> nj.Layer:
    en = nj.elastic_net(1e-4, 1e-4)
    return nj.serial(nj.dense(FEATURES, 8, regularizer=en), nj.elu(), nj.dense(8, CLASSES))


MODEL = model()  # one object, so that runs with equal settings share their compiled code


def max_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(u, np.float64) - np.asarray(v, np.float64))))
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def leaves(result: nj.FitResult) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves(result.params)]


def train(mesh, **mode) -> nj.FitResult:
    x, y = data()
    return nj.fit(MODEL, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
                  progress=False, mesh=mesh, **mode)  # fmt: skip


MODES = {
    # One log point at the end: the loop alone keeps the host from running ahead.
    "full": {"steps": LOOP_STEPS, "log_every": LOOP_STEPS, "eval_data": data()},
    # Whole batches, then the partial last one (384 = 9·40 + 24) as a step of its own.
    "epochs": {"epochs": 2, "batch_size": 40, "drop_last": False},
}


def step_loop(mesh, steps: int = LOOP_STEPS):
    """The user's own loop over `make_train_step(..., mesh=)`, never waiting on a result."""
    x, y = data()
    opt = nj.momentum(0.05)
    step = nj.make_train_step(MODEL, nj.cross_entropy, opt, mesh=mesh)
    params = MODEL.init(jax.random.key(1))
    state = opt.init(params)
    for i in range(steps):
        rows = slice(i % 4 * 64, i % 4 * 64 + 64)
        params, state, _ = step(params, state, x[rows], y[rows])
    return params


def devices(out: str) -> None:
    x, y = data()
    result: dict = {"devices": jax.device_count()}
    for name, counts in (("full", (2, 4)), ("epochs", (4,))):
        mode = MODES[name]
        one = train(None, **mode)
        for count in counts:
            mesh = nj.parallel.data_mesh(jax.devices()[:count])
            many = train(mesh, **mode)
            result[f"{name}/{count}"] = max_diff(one.params, many.params)
            result[f"{name}/{count}/history"] = max_diff(one.history, many.history)
    mesh = nj.parallel.data_mesh()
    result["step_loop"] = max_diff(step_loop(None), step_loop(mesh))
    lrs = np.array([1e-2, 2e-2, 4e-2, 8e-2], np.float32)
    sweep = [
        nj.fit_many(
            MODEL,
            nj.cross_entropy,
            lambda lr: nj.adam(lr),
            x,
            y,
            key=jax.random.key(2),
            hparams=lrs,
            epochs=2,
            batch_size=BATCH,
            progress=False,
            mesh=m,
        )
        for m in (None, mesh)
    ]
    result["fit_many"] = max_diff(sweep[0].params, sweep[1].params)
    result["fit_many/spec"] = str(sweep[1].params[0].w.sharding.spec)
    params = sweep[0].params
    first = jax.tree.map(lambda a: a[0], params)
    reports = [nj.evaluate(MODEL, first, x, y, batch_size=90, mesh=m) for m in (None, mesh)]
    result["evaluate/loss"] = abs(reports[0].loss - reports[1].loss)
    result["evaluate/same_matrix"] = bool(
        np.array_equal(reports[0].confusion_matrix, reports[1].confusion_matrix)
    )
    try:
        train(mesh, epochs=1, batch_size=30)  # fails before compiling anything
    except ValueError as error:
        result["indivisible"] = str(error)
    with open(out, "w") as f:
        json.dump(result, f)


def processes(out: str, coordinator: str, count: int, index: int) -> None:
    nj.parallel.initialize(coordinator, count, index)
    mesh = nj.parallel.data_mesh()
    result: dict = {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "main": nj.parallel.is_main_process(),
    }
    main = nj.parallel.is_main_process()
    for name, mode in MODES.items():
        many = train(mesh, **mode)
        result[f"{name}/replicated"] = all(
            a.sharding.is_fully_replicated for a in jax.tree.leaves(many.params)
        )
        result[f"{name}/params"] = [float(np.sum(a, dtype=np.float64)) for a in leaves(many)]
        if main:  # the one-device run, on this process's devices only: no collective involved
            one = train(None, **mode)
            result[name] = max_diff(one.params, many.params)
            result[f"{name}/history"] = max_diff(one.history, many.history)
    # Each process holds the whole data and the same key: its block of every batch.
    x, y = data()
    feed = _Feed(mesh, x, y, local_data=False)
    perm_key = jax.random.fold_in(_fit_keys(jax.random.key(0))[1], 0)
    xs, _ = feed.epoch(perm_key, BATCH)
    rows = parallel.process_rows(mesh, BATCH)
    order = np.asarray(jax.random.permutation(perm_key, N))[: N // BATCH * BATCH]
    expected = x[order.reshape(-1, BATCH)[:, rows]]
    local = np.concatenate(
        [np.asarray(s.data) for s in sorted(xs.addressable_shards, key=lambda s: s.index[1].start)],
        axis=1,
    )
    result["rows"] = [rows.start, rows.stop]  # of a batch of 32
    result["slice_matches"] = bool(np.array_equal(local, expected))
    # Data split per host: here both processes hold the same examples, so every global batch
    # is one process's batch twice and the run equals one device with half the batch size.
    split = train(mesh, epochs=2, batch_size=BATCH, local_data=True)
    looped = step_loop(mesh)
    if main:
        half = train(None, epochs=2, batch_size=BATCH // count)
        result["local_data"] = max_diff(half.params, split.params)
        result["step_loop"] = max_diff(step_loop(None), looped)
    with open(f"{out}.{index}", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "devices":
        devices(*args)
    else:
        processes(args[0], args[1], int(args[2]), int(args[3]))
