"""A fresh JAX process for the mesh tests: train on a mesh, write what it measured.

    python tests/parallel_worker.py devices OUT
        one process with JAX_NUM_CPU_DEVICES=4 (set by the caller): 1, 2 and 4-device meshes
        against one device;
    python tests/parallel_worker.py processes OUT COORDINATOR NUM_PROCESSES PROCESS_ID
        one of several processes on localhost (gloo), each with JAX_NUM_CPU_DEVICES devices,
        against one device;
    python tests/parallel_worker.py meshes OUT
        for tests/test_meshes.py, one process with 4 devices: meshes from ``jax.make_mesh``
        (one axis or ``("data", "model")``, Explicit, Auto or mixed axis types), arrays placed
        on them beforehand, and a mesh set with ``jax.set_mesh``, against one device;
    python tests/parallel_worker.py process_meshes OUT COORDINATOR NUM_PROCESSES PROCESS_ID
        for tests/test_meshes.py, one of several processes: ``jax.make_mesh`` meshes over
        every process's devices, against one device.

Each writes a JSON dict of measured maximum differences and facts (``OUT`` or
``OUT.<process id>``). Everything runs in float32, the library's default.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import nnrs_jax as nj
from nnrs_jax import parallel
from nnrs_jax.train.feed import Feed as _Feed
from nnrs_jax.train.state import run_keys as _fit_keys

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


def sweep(mesh) -> nj.FitResult:
    """`fit_many` over four learning rates, on one device or with the models split over a mesh."""
    x, y = data()
    lrs = np.array([1e-2, 2e-2, 4e-2, 8e-2], np.float32)
    return nj.fit_many(MODEL, nj.cross_entropy, lambda lr: nj.adam(lr), x, y,
                       key=jax.random.key(2), hparams=lrs, epochs=2, batch_size=BATCH,
                       progress=False, mesh=mesh)  # fmt: skip


def report(params, mesh) -> nj.Report:
    """`evaluate` in batches of 90: the last one padded, and 90 not a multiple of 4."""
    x, y = data()
    return nj.evaluate(MODEL, params, x, y, batch_size=90, mesh=mesh)


def same_matrix(a: nj.Report, b: nj.Report) -> bool:
    return bool(np.array_equal(a.confusion_matrix, b.confusion_matrix))


def devices(out: str) -> None:
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
    swept = [sweep(m) for m in (None, mesh)]
    result["fit_many"] = max_diff(swept[0].params, swept[1].params)
    result["fit_many/spec"] = str(swept[1].params[0].w.sharding.spec)
    first = jax.tree.map(lambda a: a[0], swept[0].params)
    reports = [report(first, m) for m in (None, mesh)]
    result["evaluate/loss"] = abs(reports[0].loss - reports[1].loss)
    result["evaluate/same_matrix"] = same_matrix(*reports)
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


def first_params():
    """Fixed parameters to evaluate (built on call: JAX must not start before `initialize`)."""
    return MODEL.init(jax.random.key(4))


def attempt(result: dict, name: str, measure) -> None:
    """``result[name] = measure()``, or the error it raised under ``name + "/error"``."""
    try:
        result[name] = measure()
    except Exception as error:  # reported to the test, which names the failing check
        result[f"{name}/error"] = f"{type(error).__name__}: {error}"[:2000]


def compiles(run) -> int:
    """How many XLA compilations ``run()`` triggers."""
    seen = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        run()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return len(seen)


def one_device() -> dict:
    """The reference runs on one device, keyed as `on_mesh` measures them."""
    one: dict = {name: train(None, **mode) for name, mode in MODES.items()}
    one["step_loop"], one["fit_many"] = step_loop(None), sweep(None).params
    one["evaluate"] = report(first_params(), None)
    return one


def on_mesh(result: dict, name: str, mesh, one: dict, gather=lambda tree: tree) -> nj.FitResult:
    """Every way to train and evaluate on ``mesh``, against the one-device runs ``one`` if any.

    Returns the mini-batch run. ``gather`` brings the models of `fit_many` to every process.
    """
    runs = {mode_name: train(mesh, **mode) for mode_name, mode in MODES.items()}
    result[f"{name}/auto"] = all(
        set(a.sharding.mesh.axis_types) == {AxisType.Auto}
        and a.sharding.mesh.devices.tolist() == mesh.devices.tolist()
        and a.sharding.is_fully_replicated
        for run in runs.values()
        for a in jax.tree.leaves(run.params)
    )
    looped, swept = step_loop(mesh), gather(sweep(mesh).params)
    reported = report(first_params(), mesh)
    if one:
        for mode_name, run in runs.items():
            result[f"{name}/{mode_name}"] = max_diff(one[mode_name].params, run.params)
            result[f"{name}/{mode_name}/history"] = max_diff(one[mode_name].history, run.history)
        result[f"{name}/step_loop"] = max_diff(one["step_loop"], looped)
        result[f"{name}/fit_many"] = max_diff(one["fit_many"], swept)
        result[f"{name}/evaluate"] = abs(one["evaluate"].loss - reported.loss)
        result[f"{name}/evaluate/same_matrix"] = same_matrix(one["evaluate"], reported)
    return runs["epochs"]


def in_context(result: dict, name: str, mesh, one: dict) -> None:
    """Train and evaluate while the user has set ``mesh`` as JAX's mesh context."""
    epochs, evaluate = one["epochs"].params, one["evaluate"].loss
    with jax.set_mesh(mesh):
        attempt(result, f"{name}/epochs",
                lambda: max_diff(epochs, train(mesh, **MODES["epochs"]).params))  # fmt: skip
        attempt(result, f"{name}/step_loop", lambda: max_diff(one["step_loop"], step_loop(mesh)))
        attempt(result, f"{name}/evaluate",
                lambda: abs(evaluate - report(first_params(), mesh).loss))  # fmt: skip
        attempt(result, f"{name}/no_mesh",
                lambda: max_diff(epochs, train(None, **MODES["epochs"]).params))  # fmt: skip


def meshes(out: str) -> None:
    devices = jax.devices()
    auto, explicit = AxisType.Auto, AxisType.Explicit
    built = {
        "make/2": jax.make_mesh((2,), ("data",), devices=devices[:2]),
        "make/4": jax.make_mesh((4,), ("data",)),
        "data_model": jax.make_mesh((2, 2), ("data", "model"), (explicit, explicit)),
        "data_model/auto": jax.make_mesh((2, 2), ("data", "model"), (auto, auto)),
        "model_data/mixed": jax.make_mesh((2, 2), ("model", "data"), (explicit, auto)),
    }
    result: dict = {
        "devices": jax.device_count(),
        "axis_types": {name: [t.name for t in m.axis_types] for name, m in built.items()},
    }
    one = one_device()
    for name, mesh in built.items():
        on_mesh(result, name, mesh, one)
    # 30 splits over the 2 positions of "data", though not over the 4 devices.
    result["data_model/epochs/30"] = max_diff(
        train(None, epochs=1, batch_size=30).params,
        train(built["data_model"], epochs=1, batch_size=30).params,
    )
    try:
        train(built["data_model"], epochs=1, batch_size=31)
    except ValueError as error:
        result["indivisible"] = str(error)
    mesh = built["make/4"]
    again = jax.make_mesh((4,), ("data",))  # equal to mesh, built anew
    result["same_mesh"] = parallel.check_mesh("t", again) is parallel.check_mesh("t", mesh)
    result["compiles_again"] = compiles(lambda: train(again, **MODES["epochs"]))
    result["compiles_counted"] = compiles(lambda: jax.jit(lambda a: a * 3)(np.ones(3)))
    # Arrays the user placed on the Explicit mesh are taken as they are.
    x, y = data()
    rows, whole = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())

    def start():  # fresh each time: every step donates the parameters it is given
        return MODEL.init(jax.random.key(3))

    plain = nj.fit(MODEL, nj.cross_entropy, nj.adam(1e-2), x, y, key=jax.random.key(0),
                   steps=5, progress=False, params=start())  # fmt: skip
    placed = nj.fit(MODEL, nj.cross_entropy, nj.adam(1e-2), jax.device_put(x, rows),
                    jax.device_put(y, rows), key=jax.random.key(0), steps=5, progress=False,
                    params=jax.device_put(start(), whole), mesh=mesh)  # fmt: skip
    result["placed/fit"] = max_diff(plain.params, placed.params)
    opt = nj.sgd(0.1)
    step = nj.make_train_step(MODEL, nj.cross_entropy, opt, mesh=mesh)
    xb, yb = (nj.parallel.shard_batch(a[:64], mesh) for a in (x, y))
    result["placed/shard_batch"] = [t.name for t in xb.sharding.mesh.axis_types]
    params = jax.device_put(start(), whole)
    stepped = step(params, opt.init(params), xb, yb)[0]
    alone = nj.make_train_step(MODEL, nj.cross_entropy, opt)
    params = start()
    result["placed/step"] = max_diff(alone(params, opt.init(params), x[:64], y[:64])[0], stepped)
    for name in ("make/4", "data_model"):
        in_context(result, f"set_mesh/{name}", built[name], one)
    with open(out, "w") as f:
        json.dump(result, f)


def process_meshes(out: str, coordinator: str, count: int, index: int) -> None:
    nj.parallel.initialize(coordinator, count, index)
    total = jax.device_count()
    built = {
        "make": jax.make_mesh((total,), ("data",)),
        # Each position of "data" on the devices of one process ...
        "data_model": jax.make_mesh((count, total // count), ("data", "model")),
        # ... or on every process: each process then holds every row of a batch.
        "model_data": jax.make_mesh((count, total // count), ("model", "data")),
    }
    result: dict = {"process": jax.process_index(), "devices": total}
    one = one_device() if nj.parallel.is_main_process() else {}

    def gather(tree):
        return multihost_utils.process_allgather(tree, tiled=True)

    for name, mesh in built.items():
        rows = parallel.process_rows(mesh, BATCH)
        result[f"{name}/rows"] = [rows.start, rows.stop]
        run = on_mesh(result, name, mesh, one, gather)
        result[f"{name}/params"] = [float(np.sum(a, dtype=np.float64)) for a in leaves(run)]
    try:  # every process's rows would land on the other's devices too
        train(built["model_data"], epochs=1, batch_size=BATCH, local_data=True)
        result["local_data/shared"] = "trained"
    except ValueError as error:
        result["local_data/shared"] = str(error)
    with open(f"{out}.{index}", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command in ("devices", "meshes"):
        {"devices": devices, "meshes": meshes}[command](*args)
    else:
        run = {"processes": processes, "process_meshes": process_meshes}[command]
        run(args[0], args[1], int(args[2]), int(args[3]))
