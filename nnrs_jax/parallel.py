"""Data parallelism on JAX's own engine: a device mesh, placement, and several processes.

Training is data parallel over a `jax.sharding.Mesh`: every batch is split along its first axis
over the mesh's ``"data"`` axis, the parameters, the model state and the optimizer state are
replicated, and XLA's SPMD partitioner inserts the all-reduce of the gradients
(``fit(..., mesh=mesh)``, ``make_train_step(..., mesh=mesh)``, ``evaluate(..., mesh=mesh)``).
``fit_many(..., mesh=mesh)`` splits its model axis over ``"data"`` instead.

**Which meshes.** Any concrete `Mesh` with an axis named ``"data"``: `data_mesh`,
``jax.make_mesh((n,), ("data",))``, or a mesh with more axes such as
``jax.make_mesh((2, 2), ("data", "model"))``. Batches are split over ``"data"`` only; every
other axis holds copies (the devices along it compute the same thing), so batch sizes must
be divisible by the size of the ``"data"`` axis, not by the device count. Each caller checks
its mesh with `check_mesh` before anything is compiled: a mesh without a ``"data"`` axis, or
anything but a `Mesh` (an `~jax.sharding.AbstractMesh` has no devices to put data on), is
refused with an error that names the function called.

**Axis types are normalized.** `check_mesh` returns the mesh with every axis typed
`~jax.sharding.AxisType.Auto` (the same devices and names), and everything is placed and
compiled on that mesh. Why: ``jax.make_mesh`` types its axes ``Explicit`` by default (as of
JAX 0.10; sharding in types), under which every operation must be able to infer its output
sharding from its inputs' types. A data-parallel backward pass cannot: ``dW = xᵀ·dy`` contracts two
arrays split over ``"data"``, and JAX refuses to guess that the sum is to be all-reduced;
``vmap`` over models split over ``"data"`` meets arrays that are not. With Auto axes XLA's
partitioner propagates the shardings placed at the edges of each compiled function and
inserts the all-reduce, which is what this module relies on. An ``Explicit`` or ``Manual``
axis type says how code traced under that mesh sees shardings; the library traces its own
code, so nothing is lost. Arrays the caller placed on the original mesh are re-placed on the
normalized one without a copy (the same devices and layout). Equal meshes normalize to the
same object, so compiled code cached on the mesh is reused. While a call trains or
evaluates, JAX's mesh context (``jax.set_mesh``) is the mesh it was given (see `scope`), so
a mesh the user set in context cannot leak into the library's compiled code.

Several processes (hosts, or several processes on one host) form one mesh with JAX's
distributed runtime: each process calls `initialize` before any other JAX call, builds the
same mesh over all processes' devices (`data_mesh`, or ``jax.make_mesh``), and makes the same
calls; each process puts only
its own slice of every global batch on its own devices
(`jax.make_array_from_process_local_data`). CPU processes talk through gloo, GPU processes
through NCCL.

Examples:
    >>> import nnrs_jax as nj
    >>> mesh = nj.parallel.data_mesh()
    >>> mesh.axis_names, nj.parallel.is_main_process()
    (('data',), True)
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "MAX_AHEAD",
    "data_mesh",
    "initialize",
    "is_main_process",
    "process_rows",
    "replicate",
    "shard_batch",
]

DATA_AXIS = "data"
"""The name of the mesh axis that batches (or, in `fit_many`, models) are split over; every
other axis of a mesh holds copies."""

MAX_AHEAD = 8
"""Dispatches a loop may run ahead of the devices when a mesh spans several CPU devices of one
process.

Why: XLA's CPU client launches each device's share of a multi-device program from its own
thread pool, which has ``max(cores, devices)`` threads, and runs the shares on the same pool;
a launch waits while its device already has 32 computations in flight. When the host runs far
ahead, a launch for a lagging device can block a pool thread while the other devices' shares
hold the remaining threads, waiting in the collective's rendezvous for that very device: every
thread waits, and XLA aborts after 40 s ("Expected N threads to join the rendezvous").
Waiting for the results every `MAX_AHEAD` (< 32) dispatches keeps every launch from
blocking. A pool of at least twice as many threads as devices (one launch and one running
share each; e.g. the environment variable ``PJRT_NPROC=8`` for 4 devices, set before JAX
starts) is safe without waiting, and `paced` then says so. Accelerators are not affected.
"""


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis `Mesh` named ``"data"`` over ``devices`` (default: every process's devices).

    The devices are ordered by process, then by id, so that each process holds one contiguous
    block of every batch. In a multi-process run, call it after `initialize`, with the same
    arguments on every process.

    Args:
        devices: the devices to use, e.g. ``jax.devices()[:2]``.

    Raises:
        ValueError: if ``devices`` is empty or names a device twice.
    """
    chosen = list(jax.devices() if devices is None else devices)
    if not chosen:
        raise ValueError("data_mesh: devices is empty; pass at least one device")
    if len({d.id for d in chosen}) != len(chosen):
        raise ValueError(f"data_mesh: devices lists a device twice: {chosen}")
    chosen.sort(key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(chosen), (DATA_AXIS,))


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run: `jax.distributed.initialize`, before any other JAX call.

    Every process calls it with the same ``coordinator`` (``HOST:PORT`` of process 0, which
    serves it) and ``num_processes``, and its own ``process_id`` in ``[0, num_processes)``.
    Arguments left ``None`` come from the environment as JAX reads it: the address from
    ``JAX_COORDINATOR_ADDRESS``, and all three from the cluster JAX detects (Slurm, Open MPI,
    Kubernetes, Cloud TPU). On CPUs the processes exchange gradients through gloo, so each
    process may hold one or several CPU devices (``jax.config.update("jax_num_cpu_devices",
    n)`` before this call).

    Raises:
        ValueError: a malformed ``coordinator`` or an out-of-range count or id.
        RuntimeError: JAX has already started its backends, or was already initialized.
    """
    if coordinator is not None:
        host, _, port = str(coordinator).rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"initialize: coordinator must be HOST:PORT, got {coordinator!r}")
    for name, value, low in (("num_processes", num_processes, 1), ("process_id", process_id, 0)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low
        ):
            raise ValueError(f"initialize: {name} must be an int >= {low}, got {value!r}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(
            f"initialize: process_id must be < num_processes, got {process_id} and {num_processes}"
        )
    if jax.distributed.is_initialized():
        raise RuntimeError("initialize: this process has already joined a distributed run")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=None if num_processes is None else int(num_processes),
        process_id=None if process_id is None else int(process_id),
    )


def is_main_process() -> bool:
    """Whether this is process 0, the one that prints, draws progress bars and writes files."""
    return jax.process_index() == 0


def check_mesh(caller: str, mesh: Any) -> Mesh:
    """``mesh`` with every axis type `~jax.sharding.AxisType.Auto`; a clear error if unusable.

    Any concrete `Mesh` with an axis named ``"data"`` is usable, whatever its other axes and
    axis types (see the module docstring). The result has the same devices and axis names; it
    is ``mesh`` itself when every axis is already Auto, and the same object for equal meshes,
    so that compiled code cached on it is reused.

    Raises:
        TypeError: ``mesh`` is not a `jax.sharding.Mesh` (e.g. a `jax.sharding.AbstractMesh`,
            which has no devices to place data on).
        ValueError: ``mesh`` has no axis named ``"data"``.
    """
    return _auto(_usable(caller, mesh))


def _usable(caller: str, mesh: Any) -> Mesh:
    """``mesh`` as it is if it is a `Mesh` with a ``"data"`` axis; `check_mesh`'s errors."""
    if not isinstance(mesh, Mesh):
        hint = (
            "; an AbstractMesh has no devices, pass the concrete Mesh"
            if isinstance(mesh, AbstractMesh)
            else ""
        )
        raise TypeError(
            f"{caller}: mesh must be a jax.sharding.Mesh (e.g. nj.parallel.data_mesh() or "
            f"jax.make_mesh((n,), ('data',))), got {type(mesh).__name__}{hint}"
        )
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(
            f"{caller}: mesh must have one axis named {DATA_AXIS!r}, got axes "
            f"{tuple(mesh.axis_names)}; batches are split over it, any other axes hold copies"
        )
    return mesh


@functools.lru_cache(maxsize=16)
def _auto(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis type Auto: the same devices and names (cached per mesh)."""
    if all(t == AxisType.Auto for t in mesh.axis_types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)


def data_size(mesh: Mesh) -> int:
    """The number of blocks a batch is split into over ``mesh``: the size of its ``"data"`` axis.

    The other axes hold copies of each block, so this is the device count only for a mesh
    whose one axis is ``"data"``.
    """
    return mesh.shape[DATA_AXIS]


@contextlib.contextmanager
def scope(mesh: Mesh | None) -> Iterator[None]:
    """Run the block with ``mesh`` (from `check_mesh`; ``None``: one device) as JAX's mesh context.

    A mesh the user set with ``jax.set_mesh`` would otherwise be the context in which the
    library traces its compiled code: an ``Explicit`` one types every array created inside it,
    and any other mesh conflicts with the arrays placed on ``mesh``. Enter it around whatever
    places arrays on ``mesh`` or runs compiled code on them; not inside ``jax.jit``.
    """
    with jax.set_mesh(mesh):
        yield


def check_divisible(caller: str, what: str, count: int, mesh: Mesh) -> None:
    """Raise unless ``count`` splits evenly over the ``"data"`` axis of ``mesh``."""
    blocks = data_size(mesh)
    if count % blocks:
        where = (
            f"the {blocks} devices of the mesh"
            if blocks == mesh.devices.size
            else f"{blocks}, the size of the mesh's {DATA_AXIS!r} axis"
        )
        raise ValueError(
            f"{caller}: {what} {count} is not divisible by {where}; use a multiple of {blocks}"
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec())


def split(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """The sharding that splits axis ``axis`` of an array over the ``"data"`` axis of ``mesh``."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def paced(mesh: Mesh | None) -> bool:
    """Whether loops over ``mesh`` must wait every `MAX_AHEAD` dispatches (see there).

    Only when this process drives several CPU devices from a thread pool of fewer than twice
    as many threads (one launch and one running share per device): XLA sizes it from
    ``PJRT_NPROC``, else ``NPROC``, else the usable cores, and at least the device count.
    """
    if mesh is None:
        return False
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    if len(local) < 2 or local[0].platform != "cpu":
        return False
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for name in ("PJRT_NPROC", "NPROC"):
        if os.environ.get(name, "").strip().isdigit():
            threads = int(os.environ[name])
            break
    return max(threads or 1, len(local)) < 2 * len(local)


def process_rows(mesh: Mesh, rows: int, axis: int = 0) -> slice:
    """The rows of a global batch of ``rows`` rows (split on ``axis``) this process holds.

    One contiguous block, by the mesh's device order along ``"data"``: all rows in a
    single-process run, and all rows too when each process has devices at every position of
    ``"data"`` (another axis spans the processes).

    Raises:
        ValueError: if ``rows`` is not divisible by the size of the ``"data"`` axis, or the mesh
            interleaves processes along it (then a process's rows are not one block; use
            `data_mesh`).
    """
    check_divisible("process_rows", "the batch size", rows, mesh)
    shape = (1,) * axis + (rows,)
    indices = split(mesh, axis).addressable_devices_indices_map(shape).values()
    blocks = sorted({s[axis].indices(rows)[:2] for s in indices})
    start, stop = blocks[0][0], blocks[-1][1]
    if sum(b - a for a, b in blocks) != stop - start:
        raise ValueError(
            "process_rows: the mesh interleaves the devices of different processes along its "
            f"{DATA_AXIS!r} axis; build it with nj.parallel.data_mesh(), which keeps each "
            "process's devices together"
        )
    return slice(start, stop)


def check_local_rows(caller: str, mesh: Mesh) -> None:
    """Raise unless each position along the ``"data"`` axis lies on one process's devices.

    Data split per host (``fit(..., local_data=True)``) puts each process's own rows on its
    own devices. A block of a batch whose copies (along the other axes) sit on several
    processes would hold a different process's rows on each copy, and the replicas would
    silently drift apart.
    """
    along = np.moveaxis(mesh.devices, mesh.axis_names.index(DATA_AXIS), 0)
    for position, block in enumerate(along.reshape(along.shape[0], -1)):
        owners = sorted({d.process_index for d in block})
        if len(owners) > 1:
            raise ValueError(
                f"{caller}: local_data=True needs each position of the mesh's {DATA_AXIS!r} "
                f"axis on the devices of one process, got position {position} on processes "
                f"{owners}; make {DATA_AXIS!r} the mesh's first axis, so that the other axes "
                "stay within a process"
            )


def assemble(local: Any, sharding: NamedSharding, shape: tuple[int, ...]) -> jax.Array:
    """A global array of ``shape`` from ``local``, this process's block of it.

    The block is what ``sharding`` puts on this process's devices (all of it in a
    single-process run); a global array with that sharding is returned as it is.
    """
    if isinstance(local, jax.Array) and local.sharding == sharding and local.shape == shape:
        return local
    if jax.process_count() == 1 or (
        isinstance(local, jax.Array) and not local.is_fully_addressable
    ):
        return jax.device_put(local, sharding)
    return jax.make_array_from_process_local_data(sharding, np.asarray(local), shape)


def distribute(tree: Any, sharding: NamedSharding) -> Any:
    """Every leaf of ``tree`` placed with ``sharding``, from the whole value on every process.

    In a multi-process run every process must pass the same values (e.g. parameters from the
    same key); each keeps only what ``sharding`` puts on its devices. PRNG key arrays are
    accepted.
    """

    def one(leaf: Any) -> Any:
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = distribute(jax.random.key_data(leaf), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jax.device_put(leaf, sharding)
        whole = np.asarray(leaf)
        return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])

    return jax.tree.map(one, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` as a global array with a full copy on each device of ``mesh``.

    In a multi-process run every process must pass the same values (e.g. parameters from the
    same key). PRNG key arrays are accepted.

    Examples:
        >>> import jax.numpy as jnp, nnrs_jax as nj
        >>> mesh = nj.parallel.data_mesh()
        >>> nj.parallel.replicate({"w": jnp.ones(3)}, mesh)["w"].sharding.is_fully_replicated
        True
    """
    return distribute(tree, replicated(mesh))


def shard(caller: str, x: Any, mesh: Mesh, axis: int = 0) -> jax.Array:
    """`shard_batch`, with errors that name ``caller``."""
    x = x if isinstance(x, jax.Array) else np.asarray(x)
    sharding = split(mesh, axis)
    blocks = data_size(mesh)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        check_divisible(caller, "the batch size", x.shape[axis], mesh)
        return jax.device_put(x, sharding)
    own = process_rows(mesh, blocks, axis)
    own = own.stop - own.start
    if own == blocks:
        check_divisible(caller, "the batch size", x.shape[axis], mesh)
    elif x.shape[axis] % own:
        raise ValueError(
            f"{caller}: this process holds {own} of the {blocks} blocks of a batch (the size of "
            f"the mesh's {DATA_AXIS!r} axis), so its part of the batch must have a multiple of "
            f"{own} rows, got {x.shape[axis]}"
        )
    rows = x.shape[axis] // own * blocks
    check_divisible(caller, "the batch size", rows, mesh)
    return assemble(x, sharding, (*x.shape[:axis], rows, *x.shape[axis + 1 :]))


def shard_batch(x: Any, mesh: Mesh, *, axis: int = 0) -> jax.Array:
    """A global batch split over ``mesh`` along ``axis``, from this process's part ``x``.

    In a single-process run ``x`` is the whole batch; with several processes, each passes its
    own block of rows (`process_rows` says which rows of a batch that is), and the global batch
    is their concatenation in process order. The batch size must be divisible by the size of
    the mesh's ``"data"`` axis; the other axes hold copies. A global array is resharded if
    needed. The result lives on ``mesh`` as given (its axis types kept); the library's own
    functions re-place it on their normalized mesh without a copy.

    Examples:
        >>> import numpy as np, nnrs_jax as nj
        >>> mesh = nj.parallel.data_mesh()
        >>> nj.parallel.shard_batch(np.zeros((8, 3), np.float32), mesh).shape
        (8, 3)
    """
    return shard("shard_batch", x, _usable("shard_batch", mesh), axis)
