"""``ray start`` for a Ray node of a cluster on this machine's 127.0.0.1 only.

``python -m search.ray_node start --address 127.0.0.1:PORT --node-ip-address
127.0.0.1 ...`` runs Ray's own ``ray start`` command with the same options. Plain ``ray start``
cannot add a second node on 127.0.0.1 (Ray 2.60): it rewrites ``127.0.0.1`` to the machine's
network address (and then binds there) unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, and with
that variable it refuses to start any node but a head ("Multi-node Ray clusters are not
supported on Windows and OSX"). Here the variable is 0, so addresses stay 127.0.0.1, and only
that refusal is lifted. A head needs none of this (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray
start --head ...``), nor do nodes on separate machines (plain ``ray start``).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any


def main() -> None:
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported

    from ray._private import ray_constants
    from ray.scripts import scripts

    class _MultiNodeAllowed(ModuleType):
        ENABLE_RAY_CLUSTER = True  # what the command checks before it starts a non-head node

        def __getattr__(self, name: str) -> Any:
            return getattr(ray_constants, name)

    # only the command module sees the check lifted; address resolution (ray._private.services)
    # reads the real constant, and keeps 127.0.0.1
    scripts.ray_constants = _MultiNodeAllowed("ray_constants")
    sys.argv[0] = "ray"
    sys.exit(scripts.main())


if __name__ == "__main__":
    main()
