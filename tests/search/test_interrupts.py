"""Ctrl-C is not lost when it lands in a finalizer."""

from __future__ import annotations

import os
import signal
import time

import pytest

from search.interrupts import CtrlC


class _Swallows:
    """Raises Ctrl-C inside its finalizer, where Python ignores exceptions."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):  # the handler runs here, inside the finalizer
            pass


def test_a_ctrl_c_swallowed_by_a_finalizer_is_delivered_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    caught_after = None
    with CtrlC(retry_s=0.2) as ctrl_c:
        start = time.monotonic()
        try:
            _Swallows()  # finalized at once: the first KeyboardInterrupt is ignored there
            while time.monotonic() - start < 10:
                time.sleep(0.01)
        except KeyboardInterrupt:
            ctrl_c.handled()
            caught_after = time.monotonic() - start
    assert ctrl_c.pressed
    assert caught_after is not None and caught_after < 10
    assert "Exception ignored" not in capsys.readouterr().err


def test_a_handled_ctrl_c_is_not_delivered_again_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGINT)
    with CtrlC(retry_s=0.05) as ctrl_c:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            ctrl_c.handled()
        time.sleep(0.3)  # a second delivery would raise here, outside any handler
    assert signal.getsignal(signal.SIGINT) is before
