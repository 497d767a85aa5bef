"""The real-time pipeline: capture thread -> deblur thread -> output stage, joined by bounded queues.

Capture runs in ``VideoSource``'s thread (keep-newest for live sources, a bounded FIFO for files);
the ``Deblurrer`` in its own thread (or several, each with its own model, output kept in order);
the output stage (views, recording, window) in the calling thread, because GUI toolkits want the
main thread and Python delivers signals there. The result queue holds two frames and blocks, so a
slow encoder slows inference instead of piling up frames, and live sources then drop at the capture
slot, the only place frames are ever dropped.

Stopping (``stop`` set by a signal, the window, or ``max_frames``): capture stops at once, frames
already captured are deblurred and written while ``drain_s`` lasts, then the recorder is closed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deblur.video.queues import CLOSED, FifoQueue
from deblur.video.source import Frame, SourceEnded, State, VideoSource
from deblur.video.stats import PipelineStats
from deblur.video.testing_leak import per_frame as leak_for_test  # DEBLUR_TEST_LEAK: a no-op unless set
from deblur.video.view import compose

log = logging.getLogger("deblur")


@dataclass(frozen=True)
class PipelineOptions:
    view: str = "side-by-side"  # window view
    save_view: str = "output"  # what --output-save records
    max_frames: int | None = None
    stats_every: float = 5.0  # s between status lines; 0 = only at the end
    drain_s: float = 2.0  # after a stop, at most this long for frames in flight
    title: str = "deblur-video"


@dataclass
class Sinks:
    """Where output frames go; recorder factories get the first frame's (w, h) and the source's rate."""

    make_recorders: list[Callable[[tuple[int, int], float | None], Any]] = field(default_factory=list)
    window: Any = None
    recorders: list[Any] = field(default_factory=list)

    def close(self) -> Exception | None:
        """Close every sink even if one fails; the first failure is returned for the run to report (a
        recording that could not be finished must not end as a success)."""
        first = None
        for r in self.recorders:
            try:
                r.close()
            except Exception as e:  # noqa: BLE001 - close every sink even if one fails
                log.debug("closing %s failed: %s", getattr(r, "target", r), e)
                first = first or e
        if self.window is not None:
            self.window.close()
        return first


@dataclass
class Result:
    seq: int  # order in which the frame was taken from the source: the output order
    frame: Frame
    sharp: np.ndarray
    timings: dict[str, float]


class Pipeline:
    """``run()`` until the source ends, ``max_frames``, or ``stop`` is set; returns why it ended.

    ``deblur`` is one callable, or one per inference thread (each its own ``Deblurrer``): frames are
    handed out in order and written in the same order, whichever thread finishes first. Two
    single-threaded workers give about 1.4x the throughput of one two-threaded model on two cores
    (ONNX Runtime's threads scale poorly at this size), at the price of a longer time per frame.
    """

    def __init__(self, source: VideoSource, deblur: Callable[[np.ndarray], np.ndarray] | Sequence[Callable[[np.ndarray], np.ndarray]],
                 sinks: Sinks, options: PipelineOptions = PipelineOptions(), stop: threading.Event | None = None):
        self.workers = list(deblur) if isinstance(deblur, (list, tuple)) else [deblur]
        self.source, self.sinks, self.options = source, sinks, options
        self.stop = stop or threading.Event()
        self.stats = PipelineStats()
        self.results = FifoQueue(2 * len(self.workers))
        self.error: BaseException | None = None
        self.ended: str = ""
        self._halt = threading.Event()
        self._take = threading.Lock()  # one worker at a time takes a frame and its sequence number
        self._seq = 0
        self._running = len(self.workers)
        self._threads = [threading.Thread(target=self._infer_loop, args=(d,), name=f"deblur-infer-{i}", daemon=True)
                         for i, d in enumerate(self.workers)]
        self._pending: dict[int, Result] = {}
        self._next = 0
        self._t0: float | None = None  # time stamp origin for the recording
        self._pts0: float | None = None

    @property
    def alive(self) -> bool:
        """An inference thread is still running (a model call that has not returned)."""
        return any(t.is_alive() for t in self._threads)

    # ------------------------------------------------------------------------- infer threads
    def _next_frame(self) -> tuple[int, Frame] | None:
        """(sequence number, frame), or None when this worker should end (source ended, stop, max_frames)."""
        with self._take:
            while not self._halt.is_set():
                if self.options.max_frames and self._seq >= self.options.max_frames:
                    self.ended = "max-frames"
                    self.source.stop(join=0)
                    return None
                try:
                    frame = self.source.get(0.1)
                except SourceEnded:
                    return None
                if frame is not None:
                    self._seq += 1
                    return self._seq - 1, frame
        return None

    def _infer_loop(self, deblur: Callable[[np.ndarray], np.ndarray]) -> None:
        try:
            while (item := self._next_frame()) is not None:
                seq, frame = item
                sharp = deblur(frame.image)
                timings = dict(getattr(deblur, "timings", {}) or {})
                timings["capture"] = frame.capture_ms
                if not self.results.put(Result(seq, frame, sharp, timings), self._halt):
                    break
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
            self.error = e
            self._halt.set()
        finally:
            with self._take:
                self._running -= 1
                last = self._running == 0
            if last or self.error is not None:
                self.results.close()

    # ------------------------------------------------------------------------- output stage
    def counters(self) -> dict[str, Any]:
        s = self.source
        return {"read": s.delivered, "out": self.stats.frames_out, "dropped": s.dropped, "skipped": s.skipped,
                "reconnects": s.reconnects, "state": s.state.value,
                **s.accounting()}  # undecodable, lost, lost_reasons; announced once a file ended (#17 defect 21)

    def _timestamp(self, frame: Frame) -> float:
        """Recording time of a frame: stream time for files, capture time for live sources."""
        if frame.pts is not None:
            if self._pts0 is None:
                self._pts0 = frame.pts
            return frame.pts - self._pts0
        if self._t0 is None:
            self._t0 = frame.t_capture
        return frame.t_capture - self._t0

    def _emit(self, r: Result) -> bool:
        """Views, recorders, window; False when the window was closed."""
        t0 = time.perf_counter()
        leak_for_test()  # the soak test's negative control; nothing unless DEBLUR_TEST_LEAK is set
        sinks = self.sinks
        if sinks.make_recorders and not sinks.recorders:
            h, w = r.frame.image.shape[:2]
            factor = 2 if self.options.save_view == "side-by-side" else 1
            fps = self.source.info.get("fps")
            for make in sinks.make_recorders:  # one at a time: if one fails, those opened are still closed
                sinks.recorders.append(make((w * factor, h), fps))
                log.info("recording: %s", sinks.recorders[-1].describe)
        if sinks.recorders:
            img = compose(r.frame.image, r.sharp, self.options.save_view)
            t = self._timestamp(r.frame)
            for rec in sinks.recorders:
                rec.write(img, t)
        keep = True
        if sinks.window is not None:
            fps = self.stats.fps(since=time.perf_counter() - 2.0)
            keep = sinks.window.show(compose(r.frame.image, r.sharp, self.options.view), f"{self.options.title} | {fps:.1f} FPS")
        t1 = time.perf_counter()
        r.timings["output"] = (t1 - t0) * 1e3
        r.timings["latency"] = (t1 - r.frame.t_capture) * 1e3
        self.stats.add(r.timings, t1)
        return keep

    def _in_order(self, r: Result) -> bool:
        """Hold ``r`` until every earlier frame is out, then emit what is due; False: window closed."""
        self._pending[r.seq] = r
        keep = True
        while self._next in self._pending:
            keep = self._emit(self._pending.pop(self._next)) and keep
            self._next += 1
        return keep

    def run(self) -> str:
        """Start the threads and run the output stage here; always closes the sinks."""
        self.source.start()
        for t in self._threads:
            t.start()
        deadline: float | None = None
        last_status = time.perf_counter()
        try:
            while True:
                now = time.perf_counter()
                if self.stop.is_set() and deadline is None:
                    deadline = now + self.options.drain_s
                    self.ended = self.ended or "stopped"
                    self.source.stop(join=0)
                if deadline is not None and now > deadline:
                    left = len(self.results) + len(self.source.queue) + len(self._pending)
                    if left:
                        log.warning("stop: %d frame(s) in flight not written (drain budget %.1f s)", left, self.options.drain_s)
                    break
                item = self.results.get(0.1)
                if item is CLOSED:
                    break
                if item is not None and not self._in_order(item):
                    self.ended = "window closed"
                    self.stop.set()
                if self.options.stats_every and now - last_status >= self.options.stats_every:
                    last_status = now
                    log.info("%s", self.stats.status_line(self.counters()))
        finally:
            self._halt.set()
            self.source.stop(join=0.5)
            for t in self._threads:
                t.join(1.0)
            close_error = self.sinks.close()
            self.stats.t_end = time.perf_counter()
        if self.error is not None:
            if close_error is not None:
                log.warning("closing an output failed too: %s", close_error)
            raise self.error
        if close_error is not None:
            raise close_error
        if not self.ended:
            self.ended = "eos" if self.source.state == State.EOS else self.source.state.value.lower()
        return self.ended
