"""Timing helpers of every benchmark: ``time_step`` (synchronised samples in ms) and ``stats`` (p50/p99/FPS).

Used by ``deblur-bench`` (runtime/bench.py), the video latency check (video/latency.py) and the
scripts in benchmarks/. Torch-free: torch is imported only for CUDA-event timing.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Step = Callable[[], Any]


def time_step(step: Step, runs: int, warmup: int, cuda_events: bool = False) -> list[float]:
    """Milliseconds of ``runs`` calls after ``warmup`` calls; every sample is synchronised.

    Wall clock by default (a CPU call, or a GPU call that copies its output back, returns when the
    work is done); ``cuda_events``: CUDA events around each call on torch's current stream, for
    steps that only enqueue GPU work (torch on a GPU).
    """
    for _ in range(warmup):
        step()
    out: list[float] = []
    if cuda_events:
        import torch

        torch.cuda.synchronize()
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            out.append(float(start.elapsed_time(end)))
        return out
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def stats(ms: list[float]) -> dict[str, float]:
    """``p50_ms``, ``p99_ms`` and ``fps`` (from the p50) of millisecond samples."""
    p50 = float(np.percentile(ms, 50))
    return {"p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)), "fps": 1e3 / p50 if p50 > 0 else math.inf}


def round_robin(steps: dict[str, Step], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Milliseconds per step, one call of each in turn per round, so a load that comes and goes (this
    machine's speed drifts by up to 30 % within minutes) hits every step alike: for ratios."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    out: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            out[name].append((time.perf_counter() - t0) * 1e3)
    return out
