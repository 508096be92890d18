"""A local Ray listens on 127.0.0.1 only; a process joining a cluster imports ray as Ray intends.

Each check runs in a fresh Python process: ray reads at import whether it binds to this
machine's network address, and the test process may have imported ray already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tests.search._ray_nodes import is_loopback as _is_loopback

#: Starts a local Ray through frontier's connect(), runs two actors (two workers), and prints every
#: listening TCP socket of the Ray processes (this process and its children: GCS server, raylet,
#: workers, agents), with whether the loopback variable is left in the environment.
LISTENERS = textwrap.dedent(
    """
    import json, os
    from search.backends import RaySettings
    from search.ray_backend import LOOPBACK_ENV, connect
    import ray, psutil  # psutil: Ray's own copy, on the path once ray is imported

    leaked = LOOPBACK_ENV in os.environ
    connect(RaySettings(), None)

    @ray.remote(num_cpus=0)
    class Worker:
        def pid(self):
            return os.getpid()

    # actors, not tasks: a task's worker may be reaped as idle before the sockets are read
    # (a busy machine), an actor's lives until shutdown
    actors = [Worker.remote() for _ in range(2)]
    workers = set(ray.get([a.pid.remote() for a in actors]))
    me = psutil.Process()
    sockets = []
    for proc in [me, *me.children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    sockets.append([proc.pid, proc.name(), conn.laddr.ip, conn.laddr.port])
        except psutil.Error:
            pass
    ray.shutdown()
    print(json.dumps({"sockets": sockets, "workers": sorted(workers), "leaked": leaked}))
    """
)


def _python(code: str) -> str:
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


def test_loopback_means_what_it_says() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("::ffff:127.0.0.1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("::")
    assert not _is_loopback("192.0.2.2") and not _is_loopback("::ffff:192.0.2.2")


@pytest.mark.slow
def test_a_local_ray_listens_on_loopback_only() -> None:
    seen = json.loads(_python(LISTENERS))
    sockets = seen["sockets"]
    names = {name for _, name, _, _ in sockets}
    # the check sees the whole local Ray: its GCS server, raylet and the task's workers
    assert {"gcs_server", "raylet"} <= names, sockets
    assert set(seen["workers"]) <= {pid for pid, *_ in sockets}, sockets
    exposed = [s for s in sockets if not _is_loopback(s[2])]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert not seen["leaked"]  # a `ray start --address` run from here would not inherit it


@pytest.mark.parametrize(
    ("address", "cluster_mode"),
    [("", False), ("head-host:6380", True)],
    ids=["local", "joining"],
)
def test_ray_is_imported_for_a_local_ray_or_to_join_a_cluster(
    address: str, cluster_mode: bool
) -> None:
    code = textwrap.dedent(
        f"""
        import json, os
        from search.backends import importing_ray_to_join
        with importing_ray_to_join({address!r}):
            import search.ray_backend
        from ray._private import ray_constants
        print(json.dumps([ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(
            search.ray_backend.LOOPBACK_ENV)]))
        """
    )
    assert json.loads(_python(code)) == [cluster_mode, None]
