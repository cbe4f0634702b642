"""Feeding and placing the data: on one device, or split over a mesh's ``"data"`` axis.

`Layout` says where a run's arrays live (one device; a mesh, replicated; or, for `fit_many`,
split by model); `OnDevice` keeps all the data on the device, batches gathered inside the
compiled epoch; `Feed` places each process's slice of every batch on its own devices.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from nnrs_jax import parallel
from nnrs_jax.layers.base import PRNGKey
from nnrs_jax.train.state import TrainState

__all__ = ["Feed", "Layout", "OnDevice"]


class Layout(NamedTuple):
    """Where a run's arrays live: one device (no mesh), or a mesh, replicated or split.

    ``models``: `fit_many` on a mesh: the train state's leading model axis is split over it.
    """

    mesh: Mesh | None = None
    models: bool = False

    def out_shardings(self) -> Any:
        """The ``out_shardings`` of the compiled step and epoch (``None``: no mesh)."""
        if self.mesh is None:
            return None
        whole = parallel.replicated(self.mesh)
        if not self.models:
            return whole
        split = parallel.split(self.mesh)
        return (TrainState(split, split, split, whole, whole), whole)

    def place(self, ts: TrainState) -> TrainState:
        """``ts`` where the compiled code wants it."""
        if self.mesh is None:
            return ts
        if not self.models:
            return parallel.replicate(ts, self.mesh)
        per_model = parallel.distribute(tuple(ts[:3]), parallel.split(self.mesh))
        return TrainState(*per_model, *parallel.replicate((ts.step, ts.key), self.mesh))

    def key(self, key: PRNGKey) -> PRNGKey:
        return key if self.mesh is None else parallel.replicate(key, self.mesh)


class OnDevice(NamedTuple):
    """All the data on the device (replicated on a mesh); batches gathered inside the epoch."""

    x: Any
    y: jax.Array

    @property
    def rows(self) -> int:
        return self.y.shape[0]


class Feed:
    """Data-parallel input: each process puts its slice of every batch on its own devices.

    Without ``local_data`` every process holds all ``N`` examples and the batches are those of
    the one-device run: the epoch's permutation of ``range(N)``, cut into batches, each split
    over the devices. With ``local_data`` each process holds its own share, shuffles it with
    the same key, and gives every batch its block of rows.
    """

    def __init__(self, mesh: Mesh, x: np.ndarray, y: np.ndarray, local_data: bool) -> None:
        self.mesh, self.x, self.y, self.local_data = mesh, x, y, local_data
        blocks = parallel.data_size(mesh)  # a batch's blocks: the positions along "data"
        own = parallel.process_rows(mesh, blocks)
        self.own = own.stop - own.start  # the blocks this process holds
        self.rows = x.shape[0] * blocks // self.own if local_data else x.shape[0]
        if local_data:
            parallel.check_local_rows("fit", mesh)
            if x.shape[0] % self.own:
                raise ValueError(
                    f"fit: with local_data=True, the {x.shape[0]} examples of this process "
                    f"must be divisible by the {self.own} positions of the mesh's 'data' axis "
                    "on its devices"
                )
            per_device = multihost_utils.process_allgather(np.int64(x.shape[0] // self.own))
            if len(set(np.ravel(per_device).tolist())) != 1:
                raise ValueError(
                    "fit: with local_data=True every process must hold the same number of "
                    "examples per position of the mesh's 'data' axis, got "
                    f"{np.ravel(per_device).tolist()}"
                )
        self.order = np.arange(0)

    def _place(self, rows: np.ndarray, shape: tuple[int, ...], axis: int) -> tuple[Any, Any]:
        sharding = parallel.split(self.mesh, axis)
        return tuple(
            parallel.assemble(a[rows], sharding, (*shape, *a.shape[1:])) for a in (self.x, self.y)
        )

    def whole(self) -> tuple[jax.Array, jax.Array]:
        """All examples as one batch split by rows (full-batch training)."""
        parallel.check_divisible(
            "fit", "the number of examples (full-batch training's batch)", self.rows, self.mesh
        )
        rows = np.arange(self.x.shape[0])
        if not self.local_data:
            rows = rows[parallel.process_rows(self.mesh, self.rows)]
        return self._place(rows, (self.rows,), 0)

    def check(self, batch_size: int, rest: int) -> None:
        parallel.check_divisible("fit", "batch_size", batch_size, self.mesh)
        if rest:
            parallel.check_divisible(
                "fit", "the partial last batch (drop_last=False) of", rest, self.mesh
            )

    def epoch(self, perm_key: PRNGKey, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """The epoch's batches, ``(n_batches, batch_size, ...)``, split on axis 1."""
        share = parallel.process_rows(self.mesh, batch_size)
        width = share.stop - share.start
        self.order = np.asarray(jax.random.permutation(perm_key, self.x.shape[0]))
        if self.local_data:
            count = self.x.shape[0] // width
            rows = self.order[: count * width].reshape(count, width)
        else:
            count = self.rows // batch_size
            rows = self.order[: count * batch_size].reshape(count, batch_size)[:, share]
        return self._place(rows, (count, batch_size), 1)

    def tail(self, perm_key: PRNGKey, batch_size: int) -> tuple[jax.Array, jax.Array]:
        """The partial last batch of the permutation `epoch` drew, split by rows."""
        rest = self.order[self.rows // batch_size * batch_size :]
        return self._place(rest[parallel.process_rows(self.mesh, rest.size)], (rest.size,), 0)
