"""Files shared between processes: the one file lock and the one JSON store.

Every cross-process file in frontier (the weight cache, the latency lookup table, the quiet
floor, a results folder's outputs, a SQLite or journal storage's claim lock) goes through
these two helpers. The lock is ``fcntl.flock`` on a separate lock file, so it is released
when its process dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, shared: bool = False) -> Iterator[None]:
    """Hold a lock on the file ``path`` (created if missing) for the ``with`` block.

    Args:
        path: The lock file. Use a name of its own, never the file the lock protects
            (writes replace that file, and a lock on a replaced file protects nothing).
        shared: Take a shared (reader) lock; several holders may share it, and an exclusive
            holder waits for all of them.
    """
    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Write ``path`` all at once: ``write(tmp)`` fills a temporary file that then replaces it.

    Readers see the old file or the new one, never a partial one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value stored at ``path``, or ``None`` when the file is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def update_json(path: str | os.PathLike[str], merge: Callable[[Any], Any]) -> Any:
    """Read, merge and write the JSON file ``path`` under its lock; return what was written.

    ``merge(current)`` gets the stored value (``None`` when there is none) and returns the
    value to store, so what other processes stored meanwhile is never lost.
    """
    target = Path(path)
    with file_lock(target.with_name(target.name + ".lock")):
        value = merge(read_json(target))
        text = json.dumps(value, sort_keys=True)
        atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return value
