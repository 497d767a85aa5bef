"""The latency-does-not-grow check, shared by the test and the benchmark.

A live source runs at twice the model's rate. Passing means: the p99 end-to-end latency of the
last window is within one source frame period of the first window's, and below the inference
p99 plus two frame periods. Keep-newest passes; a FIFO, where every frame waits its turn, must
fail (the negative control), or the check proves nothing.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from deblur.video.stats import PipelineStats


@dataclass(frozen=True)
class LatencyReport:
    first_p99_ms: float
    last_p99_ms: float
    infer_p99_ms: float
    period_ms: float
    frames_first: int
    frames_last: int

    @property
    def grows(self) -> bool:
        return self.last_p99_ms > self.first_p99_ms + self.period_ms

    @property
    def bounded(self) -> bool:
        return self.last_p99_ms < self.infer_p99_ms + 2 * self.period_ms

    @property
    def passed(self) -> bool:
        return not self.grows and self.bounded

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "grows": self.grows, "bounded": self.bounded, "passed": self.passed}


def latency_report(stats: PipelineStats, window_s: float, source_fps: float) -> LatencyReport:
    """Compare the first and last ``window_s`` seconds of output (by output time) of a finished run."""
    times = list(stats.out_times)
    if len(times) < 4:
        raise ValueError(f"too few output frames ({len(times)}) for a latency check")
    t0, t1 = times[0], times[-1]
    if t1 - t0 < 2 * window_s:
        raise ValueError(f"the run ({t1 - t0:.1f} s of output) is shorter than two {window_s:g} s windows")
    first = stats.window("latency", t0, t0 + window_s)
    last = stats.window("latency", t1 - window_s, t1 + 1e-9)
    infer = list(stats.samples["infer"])
    return LatencyReport(float(np.percentile(first, 99)), float(np.percentile(last, 99)),
                         float(np.percentile(infer, 99)), 1e3 / source_fps, len(first), len(last))


def model_rate(deblur: Callable[[np.ndarray], np.ndarray], frame: np.ndarray, calls: int = 8) -> float:
    """Frames per second of ``deblur`` alone (pre + infer + post) on ``frame``: median of ``calls``."""
    from deblur.runtime.timing import time_step

    return 1e3 / float(np.median(time_step(lambda: deblur(frame), calls, warmup=1)))


def run_live(deblur: Callable[[np.ndarray], np.ndarray], policy: str, fps: float, size: tuple[int, int],
             seconds: float) -> Any:
    """The real pipeline on a synthetic live source (the demo clip at ``fps``, ``size``) for ``seconds``,
    headless, nothing recorded; ``policy`` newest or fifo. Returns the finished ``Pipeline``."""
    from deblur.video.pipeline import Pipeline, PipelineOptions, Sinks
    from deblur.video.readers import ReaderOptions
    from deblur.video.source import SourceOptions, VideoSource
    from deblur.video.uri import DEMO_CLIP, parse_source

    uri = parse_source(f"synthetic://{DEMO_CLIP}?fps={fps:.3f}")
    source = VideoSource(uri, SourceOptions(ReaderOptions(width=size[0], height=size[1]), live_policy=policy))
    stop = threading.Event()
    pipe = Pipeline(source, deblur, Sinks(), PipelineOptions(stats_every=0, drain_s=0.5), stop)
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        pipe.run()
    finally:
        timer.cancel()
    return pipe
