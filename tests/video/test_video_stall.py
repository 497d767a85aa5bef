"""A server that accepts the connection and then says nothing: the open deadline fires, the source
retries with backoff, and SIGINT still ends the tool at once."""
from __future__ import annotations

import signal
import time

import pytest
from video_helpers import SUMMARY, assert_no_traceback

from deblur.video.readers import ReaderOptions
from deblur.video.source import SourceOptions, State

pytest.importorskip("av", reason="network streams are read through PyAV (pip install av)")


def test_cli_open_deadline_then_sigint(silent_server, spawn_cli, tmp_path):
    p = spawn_cli("--input", silent_server.url("/cam"), "--headless", "--open-timeout", "1", "--stats-every", "0",
                  cwd=tmp_path)
    t_connecting, _ = p.wait_for(r"source rtsp://127\.0\.0\.1:\d+/cam: CONNECTING$", timeout=30, which="err")
    t_first, m = p.wait_for(r"RECONNECTING \(attempt 1 in [\d.]+ s; no answer within 1 s", timeout=10, which="err")
    waited = t_first - t_connecting
    assert 0.9 <= waited <= 2.0 + 0.3, f"the open gave up after {waited:.2f} s (deadline 1 s)"
    assert silent_server.conns, "the client never connected: this was not the open deadline"
    t_second, m2 = p.wait_for(r"RECONNECTING \(attempt 2 in (?P<delay>[\d.]+) s", timeout=10, after=t_first + 1e-6,
                              which="err")
    assert t_second - t_first >= 1.0 + 0.4 * 0.8 - 0.1  # the backoff, then another full deadline
    time.sleep(float(m2.group("delay")) + 0.4)  # the third open is under way, blocked on the silent server
    p.stop_with(signal.SIGINT, 130)  # while an open is blocked
    assert_no_traceback(p.text())
    err = p.text("err")
    after_stop = err.split("SIGINT: stopping", 1)[1]
    assert "RECONNECTING" not in after_stop and "STALLED" not in after_stop, "a stopped source must not retry"
    m = SUMMARY.search(p.text("out"))
    assert m and m.group("ended") == "stopped"
    assert int(m.group("reconnects")) == err.count("RECONNECTING")  # the counter matches the log


def test_source_open_deadline_and_backoff(silent_server, video_source, deblur_log):
    opts = SourceOptions(ReaderOptions(open_timeout=0.5, read_timeout=0.5), backoff_start=0.2, backoff_max=0.4)
    src = video_source(silent_server.url(), opts, seed=3, start=False)
    t0 = time.monotonic()
    src.start()
    deadline = t0 + 10
    while src.reconnects < 3 and time.monotonic() < deadline:
        assert src.get(0.1) is None
    assert src.reconnects >= 3
    assert src.state == State.RECONNECTING
    src.stop(join=2.0)
    lines = [r for r in deblur_log.records if "RECONNECTING" in r.message]
    assert all("no answer within 0.5 s" in r.message for r in lines)
    gaps = [b.t - a.t for a, b in zip(lines, lines[1:])]
    assert all(g >= 0.5 + 0.2 * 0.8 - 0.05 for g in gaps), gaps  # deadline + backoff: no tight loop
    assert len(lines) <= (time.monotonic() - t0) / 0.6 + 1


def test_source_gives_up_after_the_attempts(silent_server, video_source, deblur_log):
    opts = SourceOptions(ReaderOptions(open_timeout=0.3), reconnect_attempts=2, backoff_start=0.1, backoff_max=0.1)
    src = video_source(silent_server.url(), opts)
    deadline = time.monotonic() + 15
    with pytest.raises(Exception) as e:
        while time.monotonic() < deadline:
            src.get(0.1)
    assert type(e.value).__name__ == "SourceEnded"
    assert e.value.state == State.FAILED
    src.stop()
    assert src.state == State.FAILED and src.reconnects == 2
    assert "gave up after 2 reconnect attempt(s)" in src.reason
    assert sum("RECONNECTING" in m for m in deblur_log.messages()) == 2


def test_stopped_source_does_not_retry(silent_server, video_source, deblur_log):
    """A stop that comes while an open is blocked ends the capture thread when the open returns:
    no RECONNECTING line and no reconnect counted after the stop."""
    opts = SourceOptions(ReaderOptions(open_timeout=1.0), backoff_start=0.2, backoff_max=0.2)
    src = video_source(silent_server.url(), opts, seed=0)
    deadline = time.monotonic() + 10
    while src.reconnects < 1 and time.monotonic() < deadline:
        src.get(0.05)
    assert src.reconnects == 1
    time.sleep(0.5)  # past the backoff (<= 0.24 s): the second open is blocked now
    t_stop = time.monotonic()
    src.stop(join=3.0)
    assert not src._thread.is_alive(), "the capture thread did not end after its open deadline"
    late = [r.message for r in deblur_log.between(t_stop) if r.level >= 20]
    assert not any("RECONNECTING" in m or "STALLED" in m for m in late), late
    assert src.reconnects == 1


@pytest.mark.slow
@pytest.mark.parametrize("offset", [0.3, 0.35, 0.4, 0.45, 0.5])
def test_sigint_during_a_blocked_open_exits_130_not_a_crash(silent_server, spawn_cli, tmp_path, offset):
    """SIGINT a moment into a blocked open, so that the open's deadline passes while the process shuts
    down: the tool must wait for its capture thread, or the thread coming back from FFmpeg during
    interpreter shutdown crashes it (SIGSEGV, rc -11, seen about 1 run in 3 before the fix)."""
    p = spawn_cli("--input", silent_server.url("/cam"), "--headless", "--open-timeout", "1", "--stats-every", "0",
                  cwd=tmp_path)
    _, m = p.wait_for(r"RECONNECTING \(attempt 1 in (?P<delay>[\d.]+) s", timeout=30, which="err")
    time.sleep(float(m.group("delay")) + offset)
    p.stop_with(signal.SIGINT, 130)
