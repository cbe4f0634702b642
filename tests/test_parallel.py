"""Data-parallel training over a mesh: several CPU devices in one process, and two processes.

JAX fixes its device count and its distributed runtime when it starts, so every multi-device
check runs ``tests/parallel_worker.py`` in a fresh process (its own process group, killed
with its children when it overruns) and reads back what the worker measured. The results
must equal a one-device run to float32 rounding: the same batches in the same order.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import nnrs_jax as nj
from nnrs_jax.specs import build_model

WORKER = Path(__file__).with_name("parallel_worker.py")
TIMEOUT = 300  # seconds for a whole group of workers; a hang is killed, never waited out
FLOAT32 = 1e-5  # float32 rounding accumulated over ~100 updates, far below any real mistake


def run_group(commands: list[list[str]], local_devices: int) -> list[str]:
    """Start the processes together, wait for all, kill every process group on a timeout."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(local_devices)}
    env.pop("XLA_FLAGS", None)
    procs = [
        subprocess.Popen([sys.executable, *c], env=env, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]  # fmt: skip
    deadline, outputs = time.monotonic() + TIMEOUT, []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        pytest.fail(f"processes still running after {TIMEOUT} s: killed")
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"exit {proc.returncode}:\n{out[-2000:]}\n{err[-4000:]}"
    return outputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("devices") / "result.json"
    run_group([[str(WORKER), "devices", str(out)]], local_devices=4)
    return json.loads(out.read_text())


# Two devices per process exercise gloo between the processes and XLA's in-process collectives
# within each; NNRS_JAX_ALL_LAYOUTS=1 adds one device per process (gloo alone).
LAYOUTS = [1, 2] if os.environ.get("NNRS_JAX_ALL_LAYOUTS") else [2]


@pytest.fixture(scope="module", params=LAYOUTS, ids=lambda n: f"{n}-devices-each")
def two_processes(request, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("processes") / "result.json"
    coordinator = f"localhost:{free_port()}"
    commands = [[str(WORKER), "processes", str(out), coordinator, "2", str(i)] for i in range(2)]
    run_group(commands, local_devices=request.param)
    return [json.loads(Path(f"{out}.{i}").read_text()) for i in range(2)]


def test_devices_of_one_process_train_like_one_device(four_devices):
    assert four_devices["devices"] == 4
    for run in ("full/2", "full/4", "epochs/4"):
        assert four_devices[run] <= FLOAT32 and four_devices[f"{run}/history"] <= FLOAT32


def test_user_step_loop_sweep_and_evaluate_on_devices(four_devices):
    assert four_devices["step_loop"] <= FLOAT32
    assert four_devices["fit_many"] <= FLOAT32
    assert four_devices["fit_many/spec"] == "P('data',)"
    assert four_devices["evaluate/loss"] <= FLOAT32
    assert four_devices["evaluate/same_matrix"]
    assert four_devices["indivisible"] == (
        "fit: batch_size 30 is not divisible by the 4 devices of the mesh; use a multiple of 4"
    )


def test_two_processes_train_like_one_device(two_processes):
    for index, result in enumerate(two_processes):
        assert result["process"] == index and result["processes"] == 2
        assert result["devices"] == 2 * result["local_devices"]
        assert result["main"] == (index == 0)
        assert result["full/replicated"] and result["epochs/replicated"]
    main, other = two_processes
    for mode in ("full", "epochs"):
        assert main[mode] <= FLOAT32 and main[f"{mode}/history"] <= FLOAT32
        assert main[f"{mode}/params"] == other[f"{mode}/params"]  # the same replicas
    assert main["local_data"] <= FLOAT32
    assert main["step_loop"] <= FLOAT32


def test_each_process_places_only_its_block_of_every_batch(two_processes):
    assert [r["rows"] for r in two_processes] == [[0, 16], [16, 32]]
    assert all(r["slice_matches"] for r in two_processes)


def test_command_line_on_two_processes_reports_and_writes_on_process_0(tmp_path):
    coordinator = f"localhost:{free_port()}"
    save, history = tmp_path / "model.npz", tmp_path / "history.csv"
    command = ["-m", "nnrs_jax", "train", "--arch", "784-10", "--steps", "2",
               "--save", str(save), "--history", str(history),
               "--coordinator", coordinator, "--num-processes", "2"]  # fmt: skip
    outputs = run_group([[*command, "--process-id", str(i)] for i in range(2)], local_devices=1)
    (out0, err0), (out1, err1) = outputs
    assert "test accuracy:" in out0 and f"saved model to {save}" in out0
    # Process 1 prints nothing (gloo's own connection line aside) and draws no progress bar.
    assert [line for line in out1.splitlines() if not line.startswith("[Gloo]")] == []
    assert "step" not in err1
    assert "step" in err0  # process 0's progress bar
    assert history.read_text().startswith("step,")
    meta = nj.load_meta(save)
    template = jax.eval_shape(build_model(meta["model"]).init, jax.random.key(0))
    assert meta["steps"] == 2 and nj.load(save, params=template).step == 2


def test_one_device_mesh_changes_nothing():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = nj.serial(nj.dense(4, 8), nj.relu(), nj.dense(8, 2))
    mesh = nj.parallel.data_mesh(jax.devices()[:1])
    fit = functools.partial(nj.fit, model, nj.cross_entropy, nj.adam(1e-2), x, y, steps=3,
                            key=jax.random.key(0), progress=False)  # fmt: skip
    runs = [fit(), fit(mesh=mesh)]
    for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=FLOAT32)
    assert runs[1].params[0].w.sharding.mesh == mesh


def test_bad_mesh_arguments():
    x, y = np.zeros((8, 4), np.float32), np.zeros(8, np.int32)
    model, opt = nj.serial(nj.dense(4, 2)), nj.sgd(0.1)
    with pytest.raises(TypeError, match=r"fit: mesh must be a jax\.sharding\.Mesh"):
        nj.fit(model, nj.cross_entropy, opt, x, y, key=jax.random.key(0), steps=1, mesh="data")
    other = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match="one axis named 'data', got axes \\('batch',\\)"):
        nj.evaluate(model, model.init(jax.random.key(0)), x, y, mesh=other)
    with pytest.raises(ValueError, match=r"local_data=True .* pass mesh="):
        nj.fit(model, nj.cross_entropy, opt, x, y, key=jax.random.key(0), steps=1,
               local_data=True)  # fmt: skip
    with pytest.raises(ValueError, match="coordinator must be HOST:PORT"):
        nj.parallel.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="process_id must be < num_processes, got 2 and 2"):
        nj.parallel.initialize("localhost:1234", 2, 2)
