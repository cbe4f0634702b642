"""Datasets as NumPy arrays: MNIST (found locally or downloaded, checksummed), idx pairs, CSV,
and the synthetic adding problem.

Every loader returns ``(x, y)``. ``x`` is float32 in ``[0, 1]``, each value the float32 quotient
``float32(pixel) / 255`` (the same bits from every loader), of shape ``(N, rows·cols)`` with
``flatten=True`` (the default) or ``(N, rows, cols, 1)`` with ``flatten=False`` (NHWC, channel
last, as convolution layers take it); ``y`` is int32 of shape ``(N,)``. The arrays stay on the
host; the training code moves them to the device once.

What is verified:

* :func:`mnist` checks the SHA-256 of each file's decompressed content against
  :data:`MNIST_SHA256` (unless ``verify=False``), then the idx structure.
* :func:`load_idx` checks the idx structure: magic numbers, declared dimensions against the bytes
  present, equal image and label counts. It checks SHA-256 sums only when given ``sha256=``.
* :func:`load_csv` checks the structure: a ``label`` column and 784 pixel columns, rows of
  equal length, numbers only, labels that are non-negative integers, pixels in ``[0, 255]``. A
  CSV file carries no checksum.

Every failed check raises `ValueError` naming the function, the file, and the expected and
actual values.

Modules, one concern each: ``idx`` (the idx format), ``csv`` (the CSV data format), ``store``
(finding, downloading and verifying files: the look-up order and checksums), ``mnist`` (the
MNIST files, their sums and mirrors), ``synthetic`` (tasks generated from a seed:
:func:`adding_problem`, whose ``x`` is a float32 sequence ``(N, time, 2)`` and ``y`` a float32
target ``(N, 1)``).
"""

from __future__ import annotations

from nnrs_jax.datasets.csv import load_csv
from nnrs_jax.datasets.idx import load_idx

# Binds the name ``mnist`` in this package to the function, in place of its module; the module
# stays reachable as ``sys.modules["nnrs_jax.datasets.mnist"]``.
from nnrs_jax.datasets.mnist import MNIST_MIRRORS, MNIST_SHA256, mnist
from nnrs_jax.datasets.synthetic import adding_problem

__all__ = ["MNIST_MIRRORS", "MNIST_SHA256", "adding_problem", "load_csv", "load_idx", "mnist"]
