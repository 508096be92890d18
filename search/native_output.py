"""Silencing what native code writes to the standard output (HiGHS's debug lines)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Send what the block writes to the standard output (file descriptor 1) to the null
    device, native code's included: HiGHS (``milp``) prints debug lines from C++ on some
    problems (``HighsMipSolverData::transformNewIntegerFeasibleSolution``, 38 lines on
    EfficientNet-Lite0 with scipy 1.17, presolve off or on). Buffers are flushed on both
    sides of the block."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        sys.stdout.flush()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).fflush(None)  # C's buffered output goes to the null device too
        os.dup2(saved, 1)
        os.close(saved)
