"""SIGTERM treated like Ctrl-C by one-shot tools, and short sections no signal may cut in half.

A one-shot tool (``deblur-export``) cleans up in ``finally`` blocks; Python runs those for Ctrl-C
(``KeyboardInterrupt``) but not for SIGTERM, whose default action ends the process on the spot. So
SIGTERM raises ``KeyboardInterrupt`` too, and the CLI turns it into one line and exit code 130.
Some steps must finish or roll back whole (renaming a set of files into place): ``signals_deferred``
holds SIGINT and SIGTERM until the step is done, then delivers them.

Long-running tools that stop gracefully (``deblur-video``) use ``deblur.video.signals`` instead.
Signal handlers can only be set from the main thread; elsewhere both helpers change nothing.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

DEFERRED = (signal.SIGINT, signal.SIGTERM)
log = logging.getLogger("deblur")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises ``KeyboardInterrupt``, as Ctrl-C does, so cleanup code runs."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive within the block are held and delivered once it ends (to the
    handlers in place before it), so the block is never left half done."""
    if not _main_thread():
        yield
        return
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: held.append(signum)) for s in DEFERRED}
    failed = True
    try:
        yield
        failed = False
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        if failed and held:  # the block's own error (e.g. "nothing was published") is the one to report
            log.warning("%s received while the step failed; its error is reported", signal.Signals(held[0]).name)
        elif held:
            log.info("%s received during a step that must not be cut in half: acting on it now that it is done",
                     signal.Signals(held[0]).name)
            for s in dict.fromkeys(held):
                signal.raise_signal(s)
