"""Small parts on their own: reconnect backoff, pipeline statistics, the latency verdict, views, signals."""
from __future__ import annotations

import json
import os
import random
import signal
import threading

import numpy as np
import pytest

from deblur.video.latency import LatencyReport, latency_report
from deblur.video.signals import StopOnSignal
from deblur.video.source import backoff_delay
from deblur.video.stats import STAGES, PipelineStats
from deblur.video.view import compose, window_unavailable


# ------------------------------------------------------------------------------------- backoff
def test_backoff_doubles_from_start():
    rng = random.Random(0)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0)]:
        for _ in range(200):
            d = backoff_delay(attempt, 0.5, 100.0, rng)
            assert 0.8 * base <= d <= 1.2 * base, (attempt, d)


def test_backoff_is_capped():
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 10.0, rng) for a in range(1, 60) for _ in range(20)]
    assert max(delays) <= 12.0  # cap times the largest jitter
    late = [backoff_delay(a, 0.5, 10.0, rng) for a in (6, 10, 40, 1000) for _ in range(200)]
    assert all(8.0 <= d <= 12.0 for d in late)


def test_backoff_jitter_spreads_within_bounds():
    rng = random.Random(2)
    delays = np.array([backoff_delay(3, 1.0, 60.0, rng) for _ in range(2000)])
    assert delays.min() >= 3.2 and delays.max() <= 4.8  # 4 s * [0.8, 1.2]
    assert delays.min() < 3.4 and delays.max() > 4.6  # really jittered: clients do not retry in lockstep
    assert len(np.unique(delays.round(3))) > 100


def test_backoff_attempt_zero_and_seeding():
    assert 0.4 <= backoff_delay(0, 0.5, 10, random.Random(0)) <= 0.6  # never below the first step
    a = [backoff_delay(k, 0.5, 10, random.Random(7)) for k in range(1, 6)]
    b = [backoff_delay(k, 0.5, 10, random.Random(7)) for k in range(1, 6)]
    assert a == b


# ------------------------------------------------------------------------------------- stats
def _filled(n: int = 100, t0: float = 1000.0, dt: float = 0.04) -> PipelineStats:
    s = PipelineStats()
    for i in range(n):
        s.add({"capture": 1.0 + i, "pre_ms": 2.0, "infer_ms": 10.0 + i % 10, "post_ms": 0.5, "output": 3.0,
               "latency": 20.0 + i, "infer_cuda_ms": 9.0, "unknown_ms": 99.0}, t0 + i * dt)
    return s


def test_stats_summary():
    s = _filled()
    summ = s.summary()
    assert set(summ) == set(STAGES) | {"infer (CUDA)"}  # unknown keys are ignored
    inf = summ["infer"]
    assert inf["n"] == 100
    assert inf["p50_ms"] == pytest.approx(np.percentile([10 + i % 10 for i in range(100)], 50))
    assert inf["p99_ms"] == pytest.approx(np.percentile([10 + i % 10 for i in range(100)], 99))
    assert inf["mean_ms"] == pytest.approx(14.5)
    assert summ["latency"]["p50_ms"] == pytest.approx(69.5)
    assert summ["infer (CUDA)"]["mean_ms"] == pytest.approx(9.0)
    assert s.frames_out == 100 and s.t_first_out == 1000.0
    assert PipelineStats().summary() == {}


def test_stats_fps():
    s = _filled(101, dt=0.04)
    assert s.fps() == pytest.approx(25.0)
    assert s.fps(since=1000.0 + 50 * 0.04) == pytest.approx(25.0)
    one = PipelineStats()
    one.add({"latency": 1.0}, 5.0)
    assert one.fps() == 0.0  # one frame: no rate yet
    assert PipelineStats().fps() == 0.0


def test_stats_window():
    s = _filled(100, t0=0.0, dt=0.1)  # frame i output at i/10 s, latency 20 + i
    assert s.window("latency", 0.0, 1.0) == [20.0 + i for i in range(10)]
    assert s.window("latency", 9.0, 10.0) == [20.0 + i for i in range(90, 100)]
    assert s.window("latency", 2.0, 2.0) == []  # [t0, t1) is half open
    assert s.window("infer", 0.0, 0.35) == [10.0, 11.0, 12.0, 13.0]


def test_stats_window_when_a_stage_is_missing_on_some_frames():
    """A deblur callable without timings (or a CUDA-only frame) leaves some stages out of some frames:
    the window must still pair every sample with its own frame's output time."""
    s = PipelineStats()
    for i in range(10):
        timings = {"latency": float(i)}
        if i >= 5:
            timings["infer"] = 100.0 + i  # only the second half has an inference time
        s.add(timings, float(i))
    assert s.window("infer", 5.0, 10.0) == [105.0, 106.0, 107.0, 108.0, 109.0]
    assert s.window("infer", 0.0, 5.0) == []
    assert s.window("latency", 0.0, 3.0) == [0.0, 1.0, 2.0]


def test_stats_table_and_status_line():
    s = _filled()
    table = s.table().splitlines()
    assert table[0] == "| stage | p50 ms | p99 ms | mean ms | frames |"
    assert any(line.startswith("| end-to-end latency | 69.50 |") and line.endswith("| 100 |") for line in table)
    assert any(line.startswith("| infer | ") for line in table)
    assert len(table) == 2 + len(STAGES) + 1
    line = s.status_line({"read": 120, "out": 100, "dropped": 20, "state": "STREAMING"})
    assert "| read 120, out 100, dropped 20, state STREAMING |" in line
    assert "p50 ms: capture " in line and " latency " in line
    assert line.split(" FPS")[0].strip().replace(".", "").isdigit()


def test_stats_to_dict_is_json():
    s = _filled()
    s.t_end = s.t_start + 4.0
    d = s.to_dict({"read": 100, "out": 100})
    assert json.loads(json.dumps(d)) == d
    assert d["frames_out"] == 100 and d["elapsed_s"] == pytest.approx(4.0)
    assert d["fps"] == pytest.approx(25.0)
    assert d["counters"] == {"read": 100, "out": 100}
    assert d["stages"]["latency"]["n"] == 100


# ------------------------------------------------------------------------------------- latency
def _run(latencies, infer_ms=30.0, dt=0.05) -> PipelineStats:
    s = PipelineStats()
    for i, lat in enumerate(latencies):
        s.add({"infer": infer_ms, "latency": lat}, i * dt)
    return s


def test_latency_report_flat_passes_and_growing_fails():
    flat = latency_report(_run([40.0] * 200), window_s=2.0, source_fps=40.0)
    assert (flat.first_p99_ms, flat.last_p99_ms, flat.period_ms) == (40.0, 40.0, 25.0)
    assert flat.frames_first == 40 and flat.frames_last == 40
    assert flat.passed and not flat.grows and flat.bounded
    growing = latency_report(_run([40.0 + 10 * i for i in range(200)]), window_s=2.0, source_fps=40.0)
    assert growing.grows and not growing.passed
    high = latency_report(_run([200.0] * 200), window_s=2.0, source_fps=40.0)  # flat but far above inference
    assert not high.grows and not high.bounded and not high.passed
    assert set(flat.to_dict()) >= {"first_p99_ms", "last_p99_ms", "grows", "bounded", "passed"}


def test_latency_report_edges():
    r = LatencyReport(50.0, 74.9, 40.0, 25.0, 10, 10)
    assert not r.grows and r.passed  # within one period
    assert LatencyReport(50.0, 75.1, 40.0, 25.0, 10, 10).grows


@pytest.mark.parametrize("frames, match", [
    (3, "too few"),
    (20, "shorter than two"),  # 0.95 s of output
])
def test_latency_report_refuses_short_runs(frames, match):
    with pytest.raises(ValueError, match=match):
        latency_report(_run([1.0] * frames), 1.0, 30.0)


# ------------------------------------------------------------------------------------- views
def test_compose_views():
    a = np.full((90, 160, 3), 10, np.uint8)
    b = np.full((90, 160, 3), 200, np.uint8)
    assert compose(a, b, "output") is b
    sbs = compose(a, b, "side-by-side", labels=False)
    assert sbs.shape == (90, 320, 3)
    assert (sbs[:, :160] == 10).all() and (sbs[:, 160:] == 200).all()
    assert compose(a, b, "side-by-side").shape == (90, 320, 3)
    split = compose(a, b, "split", labels=False)
    assert split.shape == (90, 160, 3)
    assert (split[:, :79] == 10).all() and (split[:, 81:] == 200).all() and (split[:, 79:81] == 255).all()
    assert (b == 200).all() and (a == 10).all()  # inputs untouched
    with pytest.raises(ValueError, match="unknown view"):
        compose(a, b, "mosaic")


def test_window_unavailable_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    why = window_unavailable()
    assert why and ("no GUI" in why or "no display" in why)


# ------------------------------------------------------------------------------------- signals
def test_stop_on_signal_first_signal_sets_stop():
    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    with StopOnSignal(stop) as s:
        assert s.exit_code is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(2.0)
        assert s.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before  # the old handler is back
    stop2 = threading.Event()
    with StopOnSignal(stop2) as s2:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop2.wait(2.0)
        assert s2.exit_code == 130
