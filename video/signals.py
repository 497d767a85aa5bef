"""SIGINT and SIGTERM: the first asks for a clean stop, the second exits at once.

Exit codes follow the shell's convention, 128 + signal number: 130 for SIGINT, 143 for SIGTERM.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

log = logging.getLogger("deblur")


class StopOnSignal:
    """Context manager: sets ``stop`` on the first signal, ``os._exit`` on the second."""

    def __init__(self, stop: threading.Event, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)):
        self.stop, self.signals = stop, signals
        self.signum: int | None = None
        self.t_signal: float | None = None  # time.monotonic() of the first signal
        self._previous: dict[int, object] = {}

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            sys.stderr.write(f"deblur-video: second {signal.Signals(signum).name}: exiting now\n")
            sys.stderr.flush()
            os._exit(128 + self.signum)
        self.signum, self.t_signal = signum, time.monotonic()
        self.stop.set()
        log.warning("%s: stopping (finishing the frames in flight and the recording); send it again to exit at once",
                    signal.Signals(signum).name)

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
