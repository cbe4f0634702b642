"""Atomic file writing: a crash or an error leaves either the old file or the new one.

The data go to a temporary file in the folder of the target, which is flushed, synced and
renamed over the target with `os.replace`; on any error the temporary file is removed and an
existing target is left untouched. On POSIX the folder is synced too, so that the rename itself
survives a power loss.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomically"]


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a synced temporary file in its folder, then rename it over.

    The temporary file is ``.{name}.{16 hex digits}.tmp`` beside ``path`` (the same file
    system, so the rename is atomic), created exclusively with mode ``0o666`` less the umask,
    as for a file made by plain `open`. The folder of ``path`` must exist.

    Args:
        path: the file to create or replace.
        write: called once with the temporary file, open for binary writing; its return value
            is ignored. Whatever it raises propagates, after the temporary file is removed.

    Examples:
        >>> import os, tempfile
        >>> from pathlib import Path
        >>> from nnrs_jax.checkpoint.atomic import write_atomically
        >>> path = Path(tempfile.mkdtemp()) / "notes.txt"
        >>> write_atomically(path, lambda f: f.write(b"saved"))
        >>> path.read_bytes(), os.listdir(path.parent)
        (b'saved', ['notes.txt'])
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # Mode 0o666 lets the umask set the permissions, as for a file made by plain open().
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself survives a power loss only once the folder is synced (POSIX only).
    if os.name == "posix":
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
