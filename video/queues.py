"""The two hand-over policies between capture and inference.

``LatestSlot``: live sources; holds one frame, a new one replaces it and the old one counts as
dropped, so the consumer always gets the newest frame and latency cannot build up.
``FifoQueue``: files (bounded, the producer waits: nothing is dropped), or, unbounded, the naive
live policy that the latency benchmark uses as its negative control.
"""
from __future__ import annotations

import collections
import threading
from typing import Any

CLOSED = object()  # what get() returns once the producer has closed the queue and it is empty


class LatestSlot:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._has = False
        self._closed = False
        self.dropped = 0

    def put(self, item: Any, stop: threading.Event | None = None) -> bool:  # noqa: ARG002 - never waits
        with self._cond:
            if self._has:
                self.dropped += 1
            self._item, self._has = item, True
            self._cond.notify()
        return True

    def get(self, timeout: float) -> Any:
        """The newest item, None after ``timeout`` s without one, or CLOSED."""
        with self._cond:
            if not self._has and not self._closed:
                self._cond.wait(timeout)
            if self._has:
                item, self._item, self._has = self._item, None, False
                return item
            return CLOSED if self._closed else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return int(self._has)


class FifoQueue:
    """First in, first out; ``maxsize`` 0 is unbounded. ``put`` waits for room, or gives up on ``stop``."""

    def __init__(self, maxsize: int = 0) -> None:
        self._cond = threading.Condition()
        self._items: collections.deque[Any] = collections.deque()
        self._closed = False
        self.maxsize = maxsize
        self.dropped = 0  # never: a FIFO drops nothing

    def put(self, item: Any, stop: threading.Event | None = None) -> bool:
        with self._cond:
            while self.maxsize and len(self._items) >= self.maxsize and not self._closed:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.05)
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
        return True

    def get(self, timeout: float) -> Any:
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            return CLOSED if self._closed else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)
