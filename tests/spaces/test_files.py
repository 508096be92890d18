"""The one file lock and the one JSON store, across real processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from spaces.files import atomic_write, file_lock, read_json, update_json

HOLD = textwrap.dedent(
    """
    import sys, time
    from spaces.files import file_lock
    with file_lock(sys.argv[1], shared=sys.argv[2] == "shared"):
        print("held", flush=True)
        time.sleep(float(sys.argv[3]))
    """
)


def _holder(lock: Path, mode: str, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock), mode, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _try(lock: Path, *, shared: bool) -> bool:
    """Whether this process gets the lock at once (non-blocking probe in a child)."""
    code = textwrap.dedent(
        """
        import fcntl, sys
        fh = open(sys.argv[1], "a+")
        try:
            fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if sys.argv[2] == "1" else fcntl.LOCK_EX)
                        | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit(1)
        """
    )
    res = subprocess.run([sys.executable, "-c", code, str(lock), "1" if shared else "0"])
    return res.returncode == 0


def test_shared_holders_share_and_an_exclusive_holder_excludes(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / "machine.lock"  # the folder is created
    reader = _holder(lock, "shared", 30)
    try:
        assert _try(lock, shared=True)
        assert not _try(lock, shared=False)
    finally:
        reader.kill()
        reader.wait()
    writer = _holder(lock, "exclusive", 30)
    try:
        assert not _try(lock, shared=True)
    finally:
        writer.kill()  # killed: the lock goes with its process
        writer.wait()
    assert _try(lock, shared=False)
    with file_lock(lock):
        assert not _try(lock, shared=True)


def test_update_json_merges_with_what_is_stored_and_writes_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    assert read_json(path) is None
    update_json(path, lambda old: {**(old or {}), "a": 1})
    written = update_json(path, lambda old: {**(old or {}), "b": 2})
    assert written == read_json(path) == {"a": 1, "b": 2}
    path.write_text("{not json")
    assert read_json(path) is None
    atomic_write(path, lambda tmp: Path(tmp).write_text("[1]"))
    assert read_json(path) == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.json", "store.json.lock"]
