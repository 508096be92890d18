"""Ctrl-C that is never lost.

Python raises ``KeyboardInterrupt`` wherever the main thread is when SIGINT arrives; when that
is a finalizer or a weakref callback (a garbage collection in the middle of training, say),
Python prints "Exception ignored" and the run goes on as if nothing was pressed. While a
:class:`CtrlC` block is active, a press that was not handled within ``retry_s`` is delivered
again, until the driver's ``except KeyboardInterrupt`` says it has handled it.
"""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any


class CtrlC:
    """Deliver Ctrl-C again until it is handled (only in the main thread; elsewhere a no-op).

    Attributes:
        pressed: Ctrl-C was pressed during the block.
    """

    def __init__(self, retry_s: float = 1.0) -> None:
        self.retry_s = retry_s
        self.pressed = False
        self._handled = False
        self._timer: threading.Timer | None = None
        self._previous: Any = None
        self._hook: Any = None
        self._active = False

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
            self._active = True
        return self

    def _unraisable(self, unraisable: Any) -> None:
        # a press swallowed by a finalizer is delivered again: no "Exception ignored" for it
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            self._hook(unraisable)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True
        self._arm()
        raise KeyboardInterrupt

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self._handled:
            self._timer = threading.Timer(self.retry_s, self._again)
            self._timer.daemon = True
            self._timer.start()

    def _again(self) -> None:
        if not self._handled:
            _thread.interrupt_main(signal.SIGINT)  # runs _on_sigint in the main thread

    def handled(self) -> None:
        """The press reached the code that stops the run: deliver it no more."""
        self._handled = True
        if self._timer is not None:
            self._timer.cancel()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.handled()
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            sys.unraisablehook = self._hook
