"""JAX's persistent compilation cache, so a second process skips compilation."""

from __future__ import annotations

import os
from pathlib import Path

import jax

__all__ = ["enable_compilation_cache"]


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path:
    """Store compiled XLA programs on disk and reuse them in later processes.

    Every program is cached, however fast it compiled (minimum compile time 0 s, any size), so
    the first training step of a second run with the same shapes loads instead of compiling.

    Args:
        path: the cache folder; default ``$NNRS_JAX_CACHE`` or ``~/.cache/nnrs_jax/jit``.

    Returns:
        The folder in use (created if missing).
    """
    folder = Path(
        path or os.environ.get("NNRS_JAX_CACHE") or Path.home() / ".cache" / "nnrs_jax" / "jit"
    ).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder
