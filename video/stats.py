"""Per-stage timing of the video pipeline: rolling samples, a status line, a table, JSON.

Stages per output frame, in ms of CPU wall time: capture (the source's read and decode; for a
live source it includes waiting for the frame), pre, infer, post (from ``Deblurrer.timings``;
``*_cuda_ms`` keys there, CUDA event times, are kept beside them), output (view, encoding,
window) and latency (end to end: capture to output done). Samples are kept with their output
time so windows of a run can be compared (the latency benchmark).
"""
from __future__ import annotations

import collections
import itertools
import math
import threading
import time
from typing import Any

import numpy as np

STAGES = ("capture", "pre", "infer", "post", "output", "latency")
MAX_SAMPLES = 200_000  # about 2 h at 30 FPS; percentiles are over the newest samples


class PipelineStats:
    def __init__(self) -> None:
        self.t_start = time.perf_counter()
        self.t_end: float | None = None
        self.samples: dict[str, collections.deque[float]] = {s: collections.deque(maxlen=MAX_SAMPLES) for s in STAGES}
        self.sample_times: dict[str, collections.deque[float]] = {s: collections.deque(maxlen=MAX_SAMPLES) for s in STAGES}
        self.out_times: collections.deque[float] = collections.deque(maxlen=MAX_SAMPLES)
        self.cuda: dict[str, collections.deque[float]] = {}
        self.frames_out = 0
        self.t_first_out: float | None = None
        self._lock = threading.Lock()
        self._last_print = (self.t_start, 0)

    def add(self, timings: dict[str, float], t_out: float) -> None:
        """One output frame's stage times (``name`` or ``name_ms``; ``name_cuda_ms`` for CUDA events)."""
        with self._lock:
            for name, value in timings.items():
                if name.endswith("_cuda_ms"):
                    self.cuda.setdefault(name[: -len("_cuda_ms")], collections.deque(maxlen=MAX_SAMPLES)).append(value)
                elif name.removesuffix("_ms") in self.samples:
                    self.samples[name.removesuffix("_ms")].append(value)
                    self.sample_times[name.removesuffix("_ms")].append(t_out)  # a stage may be missing on some frames
            self.out_times.append(t_out)
            self.frames_out += 1
            if self.t_first_out is None:
                self.t_first_out = t_out

    def fps(self, since: float | None = None) -> float:
        """Output frames per second over the run (or since ``since``), first frame excluded."""
        with self._lock:
            if since is None:
                times = list(self.out_times)
            else:  # newest first, stopping at ``since``: cheap every frame, however long the run
                times = list(itertools.takewhile(lambda t: t >= since, reversed(self.out_times)))[::-1]
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def window(self, stage: str, t0: float, t1: float) -> list[float]:
        """Samples of ``stage`` whose frame was output in [t0, t1) (perf_counter seconds)."""
        with self._lock:
            return [v for v, t in zip(self.samples[stage], self.sample_times[stage]) if t0 <= t < t1]

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        with self._lock:
            items = [(s, list(v)) for s, v in self.samples.items()] + [(f"{s} (CUDA)", list(v)) for s, v in self.cuda.items()]
        for name, values in items:
            if values:
                a = np.asarray(values)
                out[name] = {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                             "mean_ms": float(a.mean()), "n": len(values)}
        return out

    def status_line(self, counters: dict[str, Any]) -> str:
        """One line for the periodic log: FPS since the last line, the scalar counters, p50 of every stage
        (``n/a`` before the first frame is out: a bare ``p50 ms:`` read as a cut line)."""
        now = time.perf_counter()
        t_prev, n_prev = self._last_print
        fps = (self.frames_out - n_prev) / max(now - t_prev, 1e-9)
        self._last_print = (now, self.frames_out)
        parts = []
        with self._lock:
            for s in STAGES:
                recent = list(self.samples[s])[-100:]
                if recent:
                    parts.append(f"{s} {np.median(recent):.1f}")
        counts = ", ".join(f"{k} {v}" for k, v in counters.items() if isinstance(v, (int, float, str)))
        timing = f" | p50 ms: {' '.join(parts)}" if parts else " | p50 ms: n/a"  # no frame out yet: no timing
        return f"{fps:5.1f} FPS | {counts}{timing}"

    def table(self) -> str:
        lines = ["| stage | p50 ms | p99 ms | mean ms | frames |", "|---|---:|---:|---:|---:|"]
        for name, s in self.summary().items():
            label = "end-to-end latency" if name == "latency" else name
            lines.append(f"| {label} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['mean_ms']:.2f} | {s['n']} |")
        return "\n".join(lines)

    def to_dict(self, counters: dict[str, Any]) -> dict[str, Any]:
        elapsed = (self.t_end or time.perf_counter()) - self.t_start
        fps = self.fps()
        return {"frames_out": self.frames_out, "elapsed_s": elapsed, "fps": fps if math.isfinite(fps) else None,
                "counters": counters, "stages": self.summary()}
