"""Latency must not grow, at a short duration: a synthetic live source at
twice the model's rate through the real pipeline and the bundled model. Keep-newest passes; the FIFO,
where every frame waits its turn, must fail, or the check proves nothing.

The same steps as benchmarks/video_latency.py (deblur.video.latency.model_rate and run_live).
"""
from __future__ import annotations

import cv2
import pytest

from deblur.video.latency import latency_report, model_rate, run_live
from deblur.video.uri import DEMO_CLIP

SIZE = (320, 180)
SECONDS, WINDOW = 8.0, 2.5


def run_policy(deblur, policy: str, fps: float, seconds: float):
    pipe = run_live(deblur, policy, fps, SIZE, seconds)
    assert pipe.ended == "stopped"
    return pipe


@pytest.fixture(scope="module")
def rate(deblurrer):
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    ok, frame = cap.read()
    cap.release()
    assert ok, f"cannot read {DEMO_CLIP}"
    return model_rate(deblurrer, cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA))


def test_keep_newest_latency_does_not_grow(deblurrer, rate):
    """Up to three runs: on a 2-core machine shared with a training job, a load burst in the last window
    can push its p99 past one frame period. A real growth (a queue) fails every run, by far."""
    reports = []
    for _ in range(3):
        pipe = run_policy(deblurrer, "newest", 2 * rate, SECONDS)
        rep = latency_report(pipe.stats, WINDOW, 2 * rate)
        reports.append(rep.to_dict())
        assert pipe.source.dropped > 0, "a source at twice the model's rate must drop frames"
        assert pipe.stats.frames_out <= pipe.source.delivered - pipe.source.dropped
        assert rep.last_p99_ms < 10 * rep.infer_p99_ms + 500, reports  # never a backlog of seconds
        if rep.passed:
            break
    assert rep.passed, reports


def test_fifo_negative_control_fails(deblurrer, rate):
    pipe = run_policy(deblurrer, "fifo", 2 * rate, SECONDS)
    rep = latency_report(pipe.stats, WINDOW, 2 * rate)
    assert pipe.source.dropped == 0
    assert rep.grows and not rep.passed, rep.to_dict()
    assert rep.last_p99_ms > rep.first_p99_ms + 1000  # about half of every second's frames wait in line
