"""Implementations chosen by measurement: timed once per host in the real step, kept on disk.

A layer with several implementations of the same computation (`conv2d`: the patch matrix,
shifted products, XLA's convolution) is built with ``impl="auto"``. At trace time it asks
`policy` for the implementation of its *site*, a signature of everything static about it
(family, shapes, dtype, geometry). The answer comes from, in order:

1. a policy forced for the family (`forcing`, used while measuring);
2. this process's table, then the JSON file of earlier processes on the same host;
3. the family's default, when nothing has been measured or the mode is ``"fixed"``.

`tune` fills the table. `fit` calls it before compiling (on one device): each of the family's
policies is compiled into the real training step (the model, loss, optimizer and batch
shapes of the run, inside a ``lax.scan``) and timed, and the fastest is stored for every site
still unknown. Timing the whole step matters: on XLA's CPU backend the implementation that is
fastest alone is often not the fastest inside a step, where products share operands and
fusions. This is what ``torch.backends.cudnn.benchmark`` does per convolution.

Two rules keep results stable:

- another policy replaces the default only if it is at least `MARGIN` faster, so timing noise
  does not flip choices between equals;
- a site's choice is measured once per host and then only read: later runs, and a resumed
  one, compile the same program and get the same bits.

The host key holds the backend, the device kind, the CPU model, the usable cores and the JAX
and jaxlib versions: a choice measured on one host is never used on another.

``NNRS_JAX_AUTOTUNE=off`` (or ``set_mode("fixed")``) gives the defaults, the same on every
host, with nothing measured or read. ``NNRS_JAX_AUTOTUNE_CACHE`` moves the file (default
``~/.cache/nnrs_jax/autotune.json``). Both are read when a layer is traced; `trace_token`
changes whenever an answer can change, and `fit`'s compiled steps are keyed by it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jaxlib

from nnrs_jax.checkpoint.atomic import write_atomically

__all__ = [
    "MARGIN",
    "ROUNDS",
    "Choice",
    "cache_path",
    "choices",
    "clear",
    "forcing",
    "host_key",
    "mode",
    "policy",
    "set_mode",
    "trace_token",
    "tune",
]

MARGIN = 0.05
"""Another policy must beat the default's time by this fraction to replace it."""
ROUNDS = 3
"""Timed rounds after the warm-up; each policy keeps its fastest round."""
_MODES = ("measure", "fixed")
_OFF = ("off", "0", "false", "no", "fixed")


class Choice(NamedTuple):
    """One site's decision: the policy, each policy's step time in seconds, where it came from.

    ``source`` is ``"measured"`` (timed in this process) or ``"cache"`` (read from the file).
    """

    policy: str
    times: dict[str, float]
    source: str


_lock = threading.RLock()
_mode: str | None = None
_forced: dict[str, str] = {}
_recording: list[tuple[str, str]] | None = None
_memory: dict[str, Choice] = {}
_disk: dict[str, Any] | None = None
_version = 0


def set_mode(value: str | None) -> None:
    """``"measure"`` (the default) or ``"fixed"``; ``None`` goes back to ``NNRS_JAX_AUTOTUNE``.

    Raises:
        ValueError: any other value.
    """
    global _mode, _version
    if value is not None and value not in _MODES:
        raise ValueError(f"autotune.set_mode: value must be one of {_MODES} or None, got {value!r}")
    with _lock:
        _mode = value
        _version += 1


def mode() -> str:
    """The mode in force: `set_mode`'s, else ``NNRS_JAX_AUTOTUNE`` (``off`` means ``"fixed"``)."""
    if _mode is not None:
        return _mode
    return "fixed" if os.environ.get("NNRS_JAX_AUTOTUNE", "").strip().lower() in _OFF else "measure"


def cache_path() -> Path:
    """``$NNRS_JAX_AUTOTUNE_CACHE``, else ``~/.cache/nnrs_jax/autotune.json``."""
    path = os.environ.get("NNRS_JAX_AUTOTUNE_CACHE")
    if path:
        return Path(path).expanduser()
    return Path.home() / ".cache" / "nnrs_jax" / "autotune.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.cache
def host_key() -> str:
    """Backend, device kind, CPU model, usable cores and JAX versions, as one string."""
    device = jax.devices()[0]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{device.platform}/{device.device_kind}/{_cpu_name()}/{cores} cores/"
        f"jax {jax.__version__}/jaxlib {jaxlib.__version__}"
    )


def _read_disk() -> dict[str, Any]:
    """The file's table, ``{}`` when missing; an unreadable file is reported and ignored."""
    path = cache_path()
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        warnings.warn(f"autotune: ignoring the unreadable file {path} ({err}); it is "
                      "rewritten after the next measurement", stacklevel=4)  # fmt: skip
        return {}
    if not isinstance(table, dict):
        warnings.warn(f"autotune: ignoring {path}: not a JSON object", stacklevel=4)
        return {}
    return table


def _save(entries: dict[str, Choice]) -> None:
    """Merge measured choices into the file (re-read first: other processes may have written)."""
    path = cache_path()
    table = _read_disk()
    table.update({key: {"policy": c.policy, "times": c.times} for key, c in entries.items()})
    data = json.dumps(table, indent=1, sort_keys=True).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda f: f.write(data))
    except OSError as err:
        warnings.warn(f"autotune: could not save the choices to {path} ({err})", stacklevel=3)


def _lookup(key: str, policies: Sequence[str]) -> Choice | None:
    """The remembered or stored choice for ``key``, if it names one of ``policies``."""
    global _disk
    choice = _memory.get(key)
    if choice is not None and choice.policy in policies:
        return choice
    if _disk is None:
        _disk = _read_disk()
    entry = _disk.get(key)
    if isinstance(entry, dict) and entry.get("policy") in policies:
        choice = _memory[key] = Choice(entry["policy"], dict(entry.get("times", {})), "cache")
        return choice
    return None


def _key(family: str, signature: str) -> str:
    return f"{host_key()} | {family} {signature}"


def policy(family: str, signature: str, policies: Sequence[str], default: str) -> str:
    """The policy for one site, read at trace time (see the module's docstring for the order).

    Args:
        family: the layer family, e.g. ``"conv2d"``.
        signature: every static thing about the site: shapes, dtype, geometry.
        policies: the family's policy names.
        default: the policy without a measurement.
    """
    with _lock:
        if _recording is not None:
            _recording.append((family, signature))
        if family in _forced:
            return _forced[family]
        if mode() == "fixed":
            return default
        choice = _lookup(_key(family, signature), policies)
        return default if choice is None else choice.policy


@contextlib.contextmanager
def forcing(family: str, name: str) -> Iterator[None]:
    """Within the block, every ``impl="auto"`` site of ``family`` traces with policy ``name``."""
    global _version
    with _lock:
        previous = _forced.get(family)
        _forced[family] = name
        _version += 1
    try:
        yield
    finally:
        with _lock:
            if previous is None:
                _forced.pop(family, None)
            else:
                _forced[family] = previous
            _version += 1


def trace_token() -> tuple[str, tuple[tuple[str, str], ...], int]:
    """Changes whenever a site could trace differently: mode, forced policies, new choices."""
    with _lock:
        return mode(), tuple(sorted(_forced.items())), _version


def tune(
    families: dict[str, tuple[Sequence[str], str]],
    trace: Callable[[], Any],
    lower_step: Callable[[], jax.stages.Lowered],
    time_step: Callable[[jax.stages.Compiled], float],
) -> dict[str, Choice]:
    """Measure the policies of every unknown site that ``trace`` reaches; store the winners.

    Each policy's step is lowered with the policy forced and compiled; then the programs are
    timed in turns (`_race`). (Compiling them side by side in threads was slower on a 2-core
    CPU: XLA's compiler already uses the cores.)

    Args:
        families: family -> (its policy names, its default).
        trace: traces the step once (e.g. ``jax.eval_shape``), so the sites say who they are.
        lower_step: traces and lowers the step afresh (``jax.jit(f).lower(...)`` of a new
            ``f``); called once per policy, with that policy forced.
        time_step: runs a compiled step and returns one sample of its time in seconds.

    Returns:
        The new choices, by key; ``{}`` when the mode is ``"fixed"`` or every site is known.
    """
    global _recording, _version
    for family, (names, default) in families.items():
        if default not in names:
            raise ValueError(f"autotune.tune: default {default!r} of family {family!r} is not "
                             f"one of its policies {tuple(names)}")  # fmt: skip
    if mode() == "fixed":
        return {}
    with _lock:
        _recording = []
        try:
            trace()
            sites = list(dict.fromkeys(_recording))
        finally:
            _recording = None
    new: dict[str, Choice] = {}
    for family, (names, default) in families.items():
        unknown = [
            _key(f, s) for f, s in sites if f == family and _lookup(_key(f, s), names) is None
        ]
        if not unknown:
            continue
        compiled = {}
        for name in names:
            with forcing(family, name):
                compiled[name] = lower_step().compile()
        times = _race([default, *(n for n in names if n != default)], compiled, time_step)
        best = min(times, key=times.__getitem__)
        winner = best if times[best] < (1.0 - MARGIN) * times[default] else default
        for key in dict.fromkeys(unknown):
            new[key] = Choice(winner, times, "measured")
    if new:
        with _lock:
            _memory.update(new)
            _version += 1
        _save(new)
    return new


def _race(
    order: list[str], compiled: dict[str, Any], time_step: Callable[[Any], float]
) -> dict[str, float]:
    """Each policy's time: one untimed warm-up sample each, then `ROUNDS` rounds taking turns
    (so that a drift of the machine hits every policy alike), the fastest round kept. A policy
    three times slower than the best in the first round is not run again."""
    for name in order:
        time_step(compiled[name])
    times = {name: time_step(compiled[name]) for name in order}
    live = [name for name in order if times[name] < 3 * min(times.values())]
    for _ in range(ROUNDS - 1):
        for name in live:
            times[name] = min(times[name], time_step(compiled[name]))
    return times


def choices() -> dict[str, Choice]:
    """Every choice this process has measured or read, by key (host, family and signature)."""
    with _lock:
        return dict(_memory)


def clear(*, disk: bool = False) -> None:
    """Forget this process's choices; with ``disk=True`` also delete the file."""
    global _disk, _version
    with _lock:
        _memory.clear()
        _disk = None
        _version += 1
        if disk:
            cache_path().unlink(missing_ok=True)
