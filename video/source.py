"""``VideoSource``: a capture thread with a state machine, deadlines and capped reconnects.

States (one log line per change): CONNECTING (first open),
STREAMING, STALLED (no frame within the read deadline, or the stream broke), RECONNECTING (one
line per attempt, after a capped exponential backoff with jitter), FAILED (attempts used up, or
a permanent error such as an unplugged camera or a file that is not a video) and EOS (a file or
folder ended). Live sources hand over through a keep-newest slot and count what they drop; files
through a bounded queue that drops nothing.
"""
from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deblur.runtime.errors import DeblurError, SourceFailedError
from deblur.video.av_errors import describe
from deblur.video.queues import CLOSED, FifoQueue, LatestSlot
from deblur.video.readers import ReaderOptions, StreamLost, StreamTimeout, open_reader
from deblur.video.uri import SourceURI, redact

log = logging.getLogger("deblur")


class State(str, enum.Enum):
    CONNECTING = "CONNECTING"
    STREAMING = "STREAMING"
    STALLED = "STALLED"
    RECONNECTING = "RECONNECTING"
    FAILED = "FAILED"
    EOS = "EOS"


@dataclass
class Frame:
    """One captured frame: ``t_capture`` is ``time.perf_counter()`` when the read returned."""

    image: np.ndarray
    index: int  # frames this source has delivered before this one
    t_capture: float
    capture_ms: float
    pts: float | None  # stream time in s (files, folders); None for live sources


@dataclass(frozen=True)
class SourceOptions:
    reader: ReaderOptions = ReaderOptions()
    reconnect_attempts: int = -1  # live sources; -1 = for ever
    backoff_start: float = 0.5
    backoff_max: float = 10.0
    live_policy: str = "newest"  # newest | fifo (unbounded: the latency benchmark's negative control)
    file_queue: int = 4


def _undecodable(reader: Any) -> int:
    """A reader's undecodable frames (readers without the split count every skipped frame so)."""
    return int(getattr(reader, "undecodable", getattr(reader, "skipped", 0)))


def backoff_delay(attempt: int, start: float, cap: float, rng: random.Random) -> float:
    """``start * 2**(attempt-1)`` capped at ``cap``, times a jitter in [0.8, 1.2] (attempt >= 1)."""
    return min(cap, start * 2 ** max(0, attempt - 1)) * rng.uniform(0.8, 1.2)


class SourceEnded(Exception):
    """The source will deliver no more frames; ``state`` says why (EOS or FAILED)."""

    def __init__(self, state: State, reason: str):
        super().__init__(f"{state.value}: {reason}")
        self.state, self.reason = state, reason


class VideoSource:
    """Start, ``get(timeout)`` frames until ``SourceEnded``, ``stop()``. Counters are public."""

    def __init__(self, uri: SourceURI, options: SourceOptions = SourceOptions(),
                 opener: Callable[[SourceURI, ReaderOptions], Any] = open_reader, seed: int | None = None):
        self.uri, self.options, self._open = uri, options, opener
        live_fifo = uri.live and options.live_policy == "fifo"
        self.queue = LatestSlot() if uri.live and not live_fifo else FifoQueue(0 if live_fifo else options.file_queue)
        self.state = State.CONNECTING
        self.reason = ""
        self.delivered = self.reconnects = 0
        self.skipped_before = 0  # skipped frames of earlier connections
        self._undecodable_before = 0
        self._lost_before: dict[str, int] = {}
        self._announced: int | None = None  # what a file or folder announced, once read to its end
        self.info: dict[str, Any] = {}
        self.error: DeblurError | None = None  # a permanent error (bad file, device gone)
        self._reader: Any = None
        self._stop = threading.Event()
        self._rng = random.Random(seed)
        self._thread = threading.Thread(target=self._run, name="deblur-capture", daemon=True)
        self._last_frame = time.perf_counter()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- public
    def start(self) -> VideoSource:
        self._thread.start()
        return self

    def stop(self, join: float = 0.5) -> None:
        """Stop capturing; waits at most ``join`` s (a read blocked in a driver is left to its deadline)."""
        self._stop.set()
        self.queue.close()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(join)

    @property
    def alive(self) -> bool:
        """The capture thread is still running (e.g. inside an open that has not reached its deadline)."""
        return self._thread.is_alive()

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    @property
    def skipped(self) -> int:
        with self._lock:
            reader, before = self._reader, self.skipped_before
        return before + (getattr(reader, "skipped", 0) if reader is not None else 0)

    def accounting(self) -> dict[str, Any]:
        """Where the frames went that were not read: ``undecodable``, ``lost`` (with ``lost_reasons``) and,
        once a file or folder has ended, ``announced`` (read + undecodable + lost == announced)."""
        with self._lock:
            reader, announced = self._reader, self._announced
            undecodable, lost = self._undecodable_before, dict(self._lost_before)
            if reader is not None:
                undecodable += _undecodable(reader)
                for why, n in dict(getattr(reader, "lost", {})).items():
                    lost[why] = lost.get(why, 0) + n
        out: dict[str, Any] = {"undecodable": undecodable, "lost": sum(lost.values()), "lost_reasons": lost}
        if announced is not None:
            out["announced"] = announced
        return out

    def get(self, timeout: float = 0.1) -> Frame | None:
        """The next frame (the newest, for live sources), None after ``timeout``; ``SourceEnded`` at the end."""
        item = self.queue.get(timeout)
        if item is CLOSED:
            raise SourceEnded(self.state, self.reason)
        if item is None and self.state == State.STREAMING:
            quiet = time.perf_counter() - self._last_frame
            if quiet > self.options.reader.read_timeout + 1.0:  # a reader that ignores its deadline
                self._set(State.STALLED, f"no frame for {quiet:.1f} s (the read is still blocked)")
        return item

    # ------------------------------------------------------------------------- thread
    def _set(self, state: State, reason: str = "") -> None:
        with self._lock:
            if state == self.state and state != State.RECONNECTING:
                return
            self.state, self.reason = state, reason
        log.info("source %s: %s%s", self.uri, state.value, f" ({redact(reason)})" if reason else "")

    def _run(self) -> None:
        try:
            self._loop()
        except DeblurError as e:
            self.error = e
            self._set(State.FAILED, e.line())
        except Exception as e:  # noqa: BLE001 - a capture thread must end in a state, never silently
            self.error = SourceFailedError(f"capture failed: {type(e).__name__}: {redact(describe(e))}")
            self._set(State.FAILED, self.error.message)
        finally:
            self.queue.close()

    def _loop(self) -> None:
        attempt = 0
        log.info("source %s: %s", self.uri, State.CONNECTING.value)
        while not self._stop.is_set():
            try:
                reader = self._open(self.uri, self.options.reader)
            except (StreamTimeout, StreamLost) as e:
                if not self.uri.live:
                    self._set(State.FAILED, str(e))
                    return
                attempt += 1
                if not self._wait_retry(attempt, str(e)):
                    return
                continue
            if self._stop.is_set():  # stopped while the open was in progress
                reader.close()
                return
            self._reader = reader
            first = not self.info
            self.info = {"width": reader.width, "height": reader.height, "fps": reader.fps, "codec": reader.codec,
                         "pipeline": redact(reader.describe)}
            if first:
                log.info("source %s: pipeline: %s", self.uri, self.info["pipeline"])
            self._last_frame = time.perf_counter()  # the watchdog in get() counts from the (re)connect
            self._set(State.STREAMING, f"{reader.width}x{reader.height} @ {reader.fps or 0:g} fps, {reader.codec}")
            before = self.delivered
            why = self._pump(reader)
            with self._lock:  # counters move from the reader to the source in one step
                self.skipped_before += reader.skipped
                self._undecodable_before += _undecodable(reader)
                for lost_why, n in getattr(reader, "lost", {}).items():
                    self._lost_before[lost_why] = self._lost_before.get(lost_why, 0) + n
                if getattr(reader, "announced", None) is not None:
                    self._announced = reader.announced
                self._reader = None
            reader.close()
            if why is None or self._stop.is_set():  # stopped, or a file ended
                return
            if not self.uri.live:  # reopening a file would start it again from frame 0
                self._set(State.FAILED, why)
                return
            if self.delivered > before:  # this connection worked: the next outage starts from the first step
                attempt = 0
            self._set(State.STALLED, why)
            attempt += 1
            if not self._wait_retry(attempt, why):
                return

    def _pump(self, reader: Any) -> str | None:
        """Read until stopped or the end (None), or until the stream stalls or breaks (why)."""
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                item = reader.read()
            except StreamTimeout as e:
                return f"no frame within {self.options.reader.read_timeout:g} s ({e})"
            except StreamLost as e:
                return str(e)
            t1 = time.perf_counter()
            if item is None:
                if self.uri.live:
                    return "the stream ended"
                self._set(State.EOS, f"{self.delivered} frames")
                return None
            if self.state != State.STREAMING:
                self._set(State.STREAMING, "frames again")
            self._last_frame = t1
            frame = Frame(item[0], self.delivered, t1, (t1 - t0) * 1e3, item[1])
            if not self.queue.put(frame, self._stop):
                return None
            self.delivered += 1
        return None

    def _wait_retry(self, attempt: int, why: str) -> bool:
        """Log one RECONNECTING line and sleep the backoff; False when attempts are used up or stopped."""
        if self._stop.is_set():  # stopped while an open or a read was blocked: no retry, no line
            return False
        limit = self.options.reconnect_attempts
        if limit >= 0 and attempt > limit:
            self._set(State.FAILED, f"gave up after {limit} reconnect attempt(s); last error: {why}")
            return False
        delay = backoff_delay(attempt, self.options.backoff_start, self.options.backoff_max, self._rng)
        self.reconnects += 1
        self._set(State.RECONNECTING, f"attempt {attempt} in {delay:.1f} s; {why}")
        return not self._stop.wait(delay)
