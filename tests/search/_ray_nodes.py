"""Ray nodes on this machine's 127.0.0.1 for tests: started with ``ray start``, ended by pid.

Each node is one ``ray start ... --block`` process (its own session, temporary folder and
resources) with the node's processes as its descendants: GCS server, raylet, agents and the
raylet's workers (which put themselves in process groups of their own, so a node is ended by
walking its process tree, never with ``ray stop``, which stops every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

_BESIDE_PYTHON = Path(sys.executable).with_name("ray")
#: The ``ray`` command of this environment (beside its python, else on the PATH).
_RAY = str(_BESIDE_PYTHON) if _BESIDE_PYTHON.is_file() else (shutil.which("ray") or "ray")
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_env(folder: Path) -> dict[str, str]:
    """The environment of every process of a loopback cluster: a token of its own (created in
    ``folder/home/.ray/auth_token``, never the user's ``~/.ray``), token authentication, Ray
    addresses kept at 127.0.0.1, and this checkout importable by Ray's workers."""
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home)}
    subprocess.run(
        [_RAY, "get-auth-token", "--generate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(home / ".ray" / "auth_token"),
        LOOPBACK_ENV: "0",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), path) if p),
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class RayNode:
    """A ``ray start --block`` process and the node it runs."""

    proc: subprocess.Popen[bytes]
    log: Path

    def started(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"ray start exited ({self.proc.returncode}):\n{self._tail()}")
        return "Ray runtime started" in self.log.read_text(errors="replace")

    def pids(self) -> list[int]:
        """The ``ray start`` process and all its descendants (none once it has ended)."""
        return [] if self.proc.poll() is not None else process_tree(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL every process of the node: each is stopped first (SIGSTOP), so none starts
        another or leaves the tree while the tree is read."""
        if self.proc.poll() is None:
            for pid in process_tree(self.proc.pid, stop=True):
                _signal(pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def start_head(folder: Path, env: Mapping[str, str], *, port: int, cpus: int) -> RayNode:
    """``ray start --head`` on 127.0.0.1 (``env`` from :func:`cluster_env`)."""
    return _start(
        [_RAY, "start", "--head", "--port", str(port)],
        folder / "head",
        env,
        cpus=cpus,
        extra=["--include-dashboard=false"],
    )


def start_node(folder: Path, env: Mapping[str, str], *, address: str, cpus: int) -> RayNode:
    """``ray start --address`` for a second node on 127.0.0.1 (:mod:`search.ray_node`:
    plain ``ray start`` refuses it)."""
    return _start(
        [sys.executable, "-m", "search.ray_node", "start", "--address", address],
        folder / "node",
        env,
        cpus=cpus,
    )


def _start(
    command: list[str],
    temp_dir: Path,
    env: Mapping[str, str],
    *,
    cpus: int,
    extra: Sequence[str] = (),
) -> RayNode:
    temp_dir.mkdir(parents=True, exist_ok=True)
    log = temp_dir.with_suffix(".log")
    args = [
        *command,
        "--node-ip-address",
        "127.0.0.1",
        "--temp-dir",
        str(temp_dir),
        "--num-cpus",
        str(cpus),
        "--disable-usage-stats",
        # every node has a dashboard agent, whose HTTP port is fixed (52365) unless given
        "--dashboard-agent-listen-port",
        str(free_port()),
        *extra,
        "--block",
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=dict(env),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RayNode(proc, log)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the task or process ended meanwhile
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def process_tree(root: int, *, stop: bool = False) -> list[int]:
    """``root`` and its descendants; ``stop``: SIGSTOP each one before reading its children."""
    seen: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        if stop and not _signal(pid, signal.SIGSTOP):
            continue
        seen.append(pid)
        todo += _children(pid)
    return seen


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running (zombies count as gone)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def listening(pids: list[int]) -> list[tuple[int, str, int]]:
    """``(pid, address, port)`` of every listening TCP socket of ``pids`` (from /proc)."""
    owner: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
        except OSError:
            continue
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in owner:  # 0A: LISTEN
                address, port = fields[1].split(":")
                out.append((owner[fields[9]], _address(address), int(port, 16)))
    return out


def is_loopback(ip: str) -> bool:
    """Whether ``ip`` is a loopback address (``::ffff:127.0.0.1``, a dual-stack socket's, too)."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def _address(hexed: str) -> str:
    """An address of /proc/net/tcp{,6} (little-endian 32-bit words) as text."""
    raw = b"".join(bytes.fromhex(hexed[i : i + 8])[::-1] for i in range(0, len(hexed), 8))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
