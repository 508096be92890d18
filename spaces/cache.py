"""A directory of trained weights shared by every trial and every worker of a study.

Entries are safetensors files (never pickles) written atomically; an exclusive file lock
around "look up, else create" makes sure that concurrent workers (Ray actors, several
``frontier run`` processes) train each entry exactly once and reuse it afterwards.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from spaces.files import atomic_write, file_lock

_SAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


class WeightCache:
    """Trained weights keyed by a string, on disk under ``root``.

    ``created`` counts the entries this instance had to create (trained) rather than load;
    tests and logs use it to show that work was reused.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.created: list[str] = []

    def path(self, key: str) -> Path:
        return self.root / f"{_SAFE.sub('_', key)}.safetensors"

    def get_or_create(
        self, key: str, create: Callable[[], dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Load ``key``, or call ``create`` once (under a lock) and store its tensors."""
        path = self.path(key)
        if path.exists():
            return load_file(path)
        with file_lock(path.with_suffix(".lock")):
            if path.exists():  # another worker created it while we waited
                return load_file(path)
            tensors = {k: v.detach().contiguous().clone() for k, v in create().items()}
            atomic_write(path, lambda tmp: save_file(tensors, tmp))
            self.created.append(key)
            return tensors
