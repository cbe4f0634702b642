"""Any JAX mesh with a ``"data"`` axis trains like one device: `jax.make_mesh` meshes (their axes
typed Explicit), Auto and mixed axis types, a ``("data", "model")`` mesh whose other axis holds
copies, arrays placed on such a mesh beforehand, a mesh set with ``jax.set_mesh``, and two
processes. Unusable meshes fail with an error that names the function called, before anything
compiles.

Multi-device checks run ``tests/parallel_worker.py`` in fresh processes, as in
tests/test_parallel.py (its ``run_group`` starts them and kills them when they overrun): one
process with 4 CPU devices for every mesh of one process, and one group of 2 processes.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType, Mesh
from parallel_worker import compiles
from test_parallel import FLOAT32, WORKER, free_port, run_group

import nnrs_jax as nj
from nnrs_jax import parallel

ONE_PROCESS = ["make/2", "make/4", "data_model", "data_model/auto", "model_data/mixed"]
TWO_PROCESSES = ["make", "data_model", "model_data"]


@pytest.fixture(scope="module")
def meshes(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("meshes") / "result.json"
    run_group([[str(WORKER), "meshes", str(out)]], local_devices=4)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def processes(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("process_meshes") / "result.json"
    coordinator = f"localhost:{free_port()}"
    commands = [
        [str(WORKER), "process_meshes", str(out), coordinator, "2", str(i)] for i in range(2)
    ]
    run_group(commands, local_devices=2)
    return [json.loads(Path(f"{out}.{i}").read_text()) for i in range(2)]


def assert_like_one_device(result: dict, name: str) -> None:
    """Every run on mesh ``name`` equals the one-device run to float32 rounding."""
    checks = ["full", "full/history", "epochs", "epochs/history", "step_loop", "fit_many",
              "evaluate"]  # fmt: skip
    for check in checks:
        assert result[f"{name}/{check}"] <= FLOAT32, f"{name}: {check}"
    assert result[f"{name}/evaluate/same_matrix"], name
    # Placed on the normalized mesh: the same devices, every axis Auto, params replicated.
    assert result[f"{name}/auto"], name


def test_the_meshes_are_the_ones_meant(meshes):
    assert meshes["devices"] == 4
    assert meshes["axis_types"] == {
        "make/2": ["Explicit"],  # jax.make_mesh's default
        "make/4": ["Explicit"],
        "data_model": ["Explicit", "Explicit"],
        "data_model/auto": ["Auto", "Auto"],
        "model_data/mixed": ["Explicit", "Auto"],
    }


@pytest.mark.parametrize("name", ONE_PROCESS)
def test_fit_step_sweep_and_evaluate_on_a_mesh_train_like_one_device(meshes, name):
    assert_like_one_device(meshes, name)


def test_batches_split_over_the_data_axis_only(meshes):
    # On a (2, 2) ("data", "model") mesh a batch of 30 splits in 2, though not over 4 devices.
    assert meshes["data_model/epochs/30"] <= FLOAT32
    assert meshes["indivisible"] == (
        "fit: batch_size 31 is not divisible by 2, the size of the mesh's 'data' axis; "
        "use a multiple of 2"
    )


def test_an_equal_mesh_reuses_the_compiled_code(meshes):
    assert meshes["same_mesh"]
    assert meshes["compiles_again"] == 0
    assert meshes["compiles_counted"] == 1  # a new function does compile


def test_arrays_placed_on_an_explicit_mesh_are_accepted(meshes):
    assert meshes["placed/shard_batch"] == ["Explicit"]  # shard_batch keeps the mesh given
    assert meshes["placed/fit"] <= FLOAT32
    assert meshes["placed/step"] <= FLOAT32


@pytest.mark.parametrize("name", ["make/4", "data_model"])
def test_a_mesh_set_with_jax_set_mesh_changes_nothing(meshes, name):
    prefix = f"set_mesh/{name}"
    errors = {k: v for k, v in meshes.items() if k.startswith(prefix) and k.endswith("/error")}
    assert errors == {}
    for check in ("epochs", "step_loop", "evaluate", "no_mesh"):
        assert meshes[f"{prefix}/{check}"] <= FLOAT32, check


@pytest.mark.parametrize("name", TWO_PROCESSES)
def test_make_mesh_over_two_processes_trains_like_one_device(processes, name):
    main, other = processes
    assert [r["process"] for r in processes] == [0, 1] and main["devices"] == 4
    assert_like_one_device(main, name)
    assert other[f"{name}/auto"]
    assert main[f"{name}/params"] == other[f"{name}/params"]  # the same replicas


def test_each_process_places_its_rows_of_every_batch(processes):
    # One position of "data" per process: a block each. "data" spanning both processes (the
    # ("model", "data") mesh): every process holds, and places, every row.
    assert [r["make/rows"] for r in processes] == [[0, 16], [16, 32]]
    assert [r["data_model/rows"] for r in processes] == [[0, 16], [16, 32]]
    assert [r["model_data/rows"] for r in processes] == [[0, 32], [0, 32]]


def test_data_split_per_host_needs_each_block_on_one_process(processes):
    for result in processes:
        assert result["local_data/shared"].startswith(
            "fit: local_data=True needs each position of the mesh's 'data' axis on the devices "
            "of one process"
        )


# In this process (one device): which meshes are refused, and how.


def small_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    return nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 2)), x, y


def callers(mesh):
    """Every public function that takes a mesh, each called with ``mesh``."""
    model, x, y = small_problem()
    params, opt = model.init(jax.random.key(0)), nj.sgd(0.1)
    common = {"key": jax.random.key(0), "steps": 1, "progress": False, "mesh": mesh}
    return {
        "fit": lambda: nj.fit(model, nj.cross_entropy, opt, x, y, **common),
        "make_train_step": lambda: nj.make_train_step(model, nj.cross_entropy, opt, mesh=mesh),
        "fit_many": lambda: nj.fit_many(model, nj.cross_entropy, opt, x, y, num_models=1, **common),
        "evaluate": lambda: nj.evaluate(model, params, x, y, mesh=mesh),
        "shard_batch": lambda: nj.parallel.shard_batch(x, mesh),
    }


@pytest.mark.parametrize("caller", ["fit", "make_train_step", "fit_many", "evaluate",
                                    "shard_batch"])  # fmt: skip
def test_a_mesh_without_a_data_axis_is_refused_before_compiling(caller):
    mesh = jax.make_mesh((1, 1), ("batch", "model"), devices=jax.devices()[:1])
    message = f"{caller}: mesh must have one axis named 'data', got axes ('batch', 'model')"
    call = callers(mesh)[caller]

    def refused() -> None:
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            call()

    assert compiles(refused) == 0
    assert compiles(lambda: jax.jit(lambda a: a * 3)(np.ones(3))) == 1  # counting works


@pytest.mark.parametrize("caller", ["fit", "make_train_step", "fit_many", "evaluate",
                                    "shard_batch"])  # fmt: skip
def test_an_abstract_mesh_or_a_name_is_refused(caller):
    abstract = AbstractMesh((1,), ("data",))
    expected = f"^{caller}: mesh must be a jax.sharding.Mesh .*got AbstractMesh; an AbstractMesh"
    with pytest.raises(TypeError, match=expected):
        callers(abstract)[caller]()
    with pytest.raises(TypeError, match=f"^{caller}: mesh must be a jax.sharding.Mesh .*got str$"):
        callers("data")[caller]()


def test_check_mesh_makes_every_axis_auto_and_keeps_the_rest():
    device = jax.devices()[:1]
    auto = jax.make_mesh((1, 1), ("model", "data"), (AxisType.Auto,) * 2, devices=device)
    assert parallel.check_mesh("fit", auto) is auto
    for types in [(AxisType.Explicit,) * 2, (AxisType.Explicit, AxisType.Auto)]:
        mesh = jax.make_mesh((1, 1), ("model", "data"), types, devices=device)
        normal = parallel.check_mesh("fit", mesh)
        assert normal.axis_types == (AxisType.Auto, AxisType.Auto)
        assert normal.axis_names == ("model", "data")
        assert normal.devices.tolist() == mesh.devices.tolist()
        assert parallel.check_mesh("fit", normal) is normal
        again = jax.make_mesh((1, 1), ("model", "data"), types, devices=device)
        assert parallel.check_mesh("evaluate", again) is normal
    manual = Mesh(np.array(device), ("data",), axis_types=(AxisType.Manual,))
    assert parallel.check_mesh("fit", manual).axis_types == (AxisType.Auto,)


@pytest.mark.parametrize("axis_types", [AxisType.Explicit, AxisType.Manual], ids=lambda t: t.name)
def test_a_one_device_mesh_of_any_axis_types_changes_nothing(axis_types):
    model, x, y = small_problem()
    mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("model", "data"), (axis_types,) * 2)
    fit = functools.partial(nj.fit, model, nj.cross_entropy, nj.adam(1e-2), x, y, epochs=2,
                            batch_size=8, key=jax.random.key(0), progress=False)  # fmt: skip
    plain, meshed = fit(), fit(mesh=mesh)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(meshed.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=FLOAT32)


def test_one_process_holds_whole_positions_of_the_data_axis():
    device = jax.devices()[:1]
    for mesh in [
        parallel.data_mesh(device),
        jax.make_mesh((1, 1), ("model", "data"), devices=device),
    ]:
        parallel.check_local_rows("fit", mesh)  # the refusal itself runs on two processes
