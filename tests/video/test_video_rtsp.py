"""A real RTSP server (GStreamer's gst-rtsp-server, tests/video/rtsp_server.py) on loopback:
streaming, a server that dies and comes back, a server that freezes, and credentials that never leak."""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import time

import pytest
from video_helpers import STATUS, assert_no_traceback, decode_frames, decode_times, run_cli

from deblur.video.readers import ReaderOptions
from deblur.video.source import SourceEnded, SourceOptions, State, VideoSource

pytest.importorskip("av", reason="RTSP is read through PyAV (pip install av)")

STATE_LINE = re.compile(r"^source \S+: (?P<state>CONNECTING|STREAMING|STALLED|RECONNECTING|FAILED|EOS)\b")
FAST = SourceOptions(ReaderOptions(open_timeout=3.0, read_timeout=1.0), backoff_start=0.5, backoff_max=1.0)


def collect(src: VideoSource, n: int, timeout: float) -> list:
    frames = []
    deadline = time.monotonic() + timeout
    while len(frames) < n:
        assert time.monotonic() < deadline, f"only {len(frames)} of {n} frames within {timeout} s (state {src.state})"
        try:
            f = src.get(0.2)
        except SourceEnded as e:
            raise AssertionError(f"the source ended: {e}") from None
        if f is not None:
            frames.append(f)
    return frames


def drain(src: VideoSource, seconds: float) -> list:
    frames = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        f = src.get(0.1)
        if f is not None:
            frames.append(f)
    return frames


def states(log, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, str]]:
    out = []
    for r in log.between(since, until):
        m = STATE_LINE.match(r.message)
        if m:
            out.append((r.t, m.group("state")))
    return out


def in_order(seq: list[str], wanted: list[str]) -> bool:
    it = iter(seq)
    return all(any(s == w for s in it) for w in wanted)


@pytest.fixture
def rtsp_streaming(rtsp_server, video_source):
    """``rtsp_streaming(frames, seed=None) -> (server, source, frames)``: a fresh RTSP server and a started
    source (``FAST`` deadlines) on it that has delivered ``frames`` frames (within 20 s). The server is
    killed and the source stopped at teardown."""

    def start(frames: int, seed: int | None = None):
        srv = rtsp_server()
        src = video_source(srv.url, FAST, seed=seed)
        return srv, src, collect(src, frames, timeout=20)

    return start


def test_rtsp_streams(rtsp_streaming, deblur_log):
    _, src, frames = rtsp_streaming(25)
    assert src.state == State.STREAMING
    src.stop()
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    assert all(f.pts is None for f in frames)  # live: recorded by capture time, not stream time
    assert all(b.t_capture > a.t_capture for a, b in zip(frames, frames[1:]))
    assert [f.index for f in frames] == sorted(f.index for f in frames)
    assert src.info["codec"] == "h264" and src.info["fps"] == pytest.approx(25, abs=1)
    assert "rtsp demuxer" in src.info["pipeline"] and "rtsp_transport=tcp" in src.info["pipeline"]
    seen = [s for _, s in states(deblur_log)]
    assert seen == ["CONNECTING", "STREAMING"], seen  # a healthy stream: no STALLED on the way
    assert frames[-1].image.std() > 5  # a real picture, not a blank frame


def test_rtsp_server_killed_and_restarted(rtsp_server, rtsp_streaming, deblur_log):
    srv, src, before = rtsp_streaming(10, seed=0)
    t_kill = time.monotonic()
    srv.kill()  # SIGKILL: the connection just ends
    drain(src, 1.5)  # frames already in flight may still come
    t_quiet = time.monotonic()
    late = drain(src, 3.5)  # an outage of several seconds
    t_restart = time.monotonic()
    assert late == [], "frames during the outage?"
    assert src.state in (State.STALLED, State.RECONNECTING)
    rtsp_server(port=srv.port)  # the camera is back, same address
    after = collect(src, 10, timeout=25)
    assert src.state == State.STREAMING
    src.stop()
    assert after[0].index > before[-1].index
    seq = [s for _, s in states(deblur_log, since=t_kill)]
    assert in_order(seq, ["STALLED", "RECONNECTING", "STREAMING"]), seq
    assert seq[-1] == "STREAMING"
    back = [t for t, s in states(deblur_log, since=t_restart) if s == "STREAMING"][0]
    assert [s for _, s in states(deblur_log, since=back)] == ["STREAMING"], "STALLED again right after the reconnect"
    # the outage: one line per reconnect attempt (and the STALLED line), no tight loop
    outage = [r for r in deblur_log.between(t_kill, t_restart) if r.level >= logging.INFO]
    attempts = [r for r in outage if "RECONNECTING" in r.message]
    assert 2 <= len(attempts) <= 1 + (t_restart - t_kill) / (0.5 * 0.8)
    assert len(outage) <= len(attempts) + 1, [r.message for r in outage]
    assert all(b.t - a.t >= 0.5 * 0.8 - 0.05 for a, b in zip(attempts, attempts[1:]))
    quiet = [r for r in outage if r.t >= t_quiet]
    assert len(quiet) <= (t_restart - t_quiet) / (0.5 * 0.8) + 1
    assert src.reconnects >= len(attempts)


@pytest.mark.slow
def test_rtsp_server_frozen_read_deadline(rtsp_streaming, deblur_log):
    """SIGSTOP: the connection stays open and nothing comes. The read deadline (1 s) makes it STALLED."""
    srv, src, _ = rtsp_streaming(10, seed=1)
    os.kill(srv.proc.pid, signal.SIGSTOP)
    t_stop = time.monotonic()
    try:
        deadline = t_stop + 6
        while src.state == State.STREAMING and time.monotonic() < deadline:
            src.get(0.05)
        t_stalled = time.monotonic()
        assert src.state in (State.STALLED, State.RECONNECTING)
        assert t_stalled - t_stop <= 1.0 + 1.5, f"STALLED {t_stalled - t_stop:.2f} s after the server froze"
        drain(src, 2.0)
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
    collect(src, 10, timeout=25)  # it thaws: the source reconnects
    assert src.state == State.STREAMING
    src.stop()
    seq = states(deblur_log, since=t_stop)
    stalled = [t for t, s in seq if s == "STALLED"]
    assert stalled and stalled[0] - t_stop >= 0.9  # the deadline, not earlier
    assert any("no frame within 1 s" in m for m in deblur_log.messages(since=t_stop))
    assert in_order([s for _, s in seq], ["STALLED", "RECONNECTING", "STREAMING"])


USER, PASSWORD = "camuser", "Pw-s3cr3t@42"  # an @ inside: FFmpeg splits at the last one


def _leaks(text: str) -> list[str]:
    return [s for s in (PASSWORD, "s3cr3t", USER) if s in text]


def test_credentials_never_logged_through_an_outage(rtsp_server, spawn_cli, tmp_path):
    srv = rtsp_server(user=USER, password=PASSWORD)
    stats, out = tmp_path / "s.json", tmp_path / "cam.mkv"
    p = spawn_cli("--input", srv.url_with(USER, PASSWORD), "--headless", "--stats-every", "1",
                  "--open-timeout", "3", "--read-timeout", "1", "--reconnect-max-delay", "1",
                  "--output-save", out, "--stats-json", stats, "--log-level", "DEBUG", cwd=tmp_path)
    t_streaming, _ = p.wait_for(r": STREAMING", timeout=30, which="err")  # authentication worked
    p.wait_for(r"read [1-9]\d, out [1-9]\d", timeout=20, which="err")
    t_kill = time.monotonic()
    srv.kill()
    p.wait_for(r": RECONNECTING", timeout=10, after=t_kill, which="err")
    time.sleep(2.5)
    rtsp_server(port=srv.port, user=USER, password=PASSWORD)
    t_back, _ = p.wait_for(r": STREAMING", timeout=30, after=t_kill, which="err")
    _, m = p.wait_for(STATUS.pattern, timeout=10, after=t_back + 1.5, which="err")
    t_sig = p.stop_with(signal.SIGINT, 130)
    text = p.text()
    assert_no_traceback(text)
    assert not _leaks(text), f"credentials in the output: {_leaks(text)}\n{text}"
    assert "rtsp://***@127.0.0.1" in text
    data = stats.read_text()
    assert not _leaks(data)
    info = json.loads(data)
    assert info["source"].startswith("rtsp://***@") and info["counters"]["reconnects"] >= 1
    assert len(decode_frames(out)) == info["counters"]["out"] > 0
    # live time stamps are capture times: the outage is a gap in the recording, not a jump back in time
    # (the RTSP stream time restarts with each connection)
    times = decode_times(out)
    steps = [b - a for a, b in zip(times, times[1:])]
    # mixed stream times would go backwards and be clamped to +1 ms steps by the recorder; a burst of
    # frames right after the reconnect may legitimately be a few ms apart
    assert min(steps) > 0.0015, "time stamps clamped: stream time stamps from two connections mixed"
    assert 0.02 < sorted(steps)[len(steps) // 2] < 0.1  # capture times at the source's rate
    assert max(steps) >= 2.0  # the outage
    assert times[-1] >= (t_sig - t_streaming) - 2.0
    # the outage in the tool's own log: status lines, the STALLED line and one line per attempt
    outage = [line for t, n, line in p.lines if n == "err" and t_kill <= t < t_back]
    other = [line for line in outage if "RECONNECTING" not in line and not STATUS.search(line)
             and not line.startswith("DEBUG ")]
    assert len(other) <= 2, other


@pytest.mark.parametrize("guess", ["wr0ng-Guess", None], ids=["wrong-password", "no-credentials"])
def test_wrong_password_is_refused_and_not_logged(rtsp_server, tmp_path, guess):
    srv = rtsp_server(user=USER, password=PASSWORD)
    url = srv.url_with(USER, guess) if guess else srv.url
    r = run_cli(["--input", url, "--headless", "--open-timeout", "3", "--reconnect-attempts", "1",
                 "--reconnect-max-delay", "0.5", "--log-level", "DEBUG"], cwd=tmp_path, timeout=60)
    text = r.stdout + r.stderr
    assert r.returncode == 1, text  # the source failed for good, after its attempts
    assert_no_traceback(text)
    assert "wr0ng-Guess" not in text and not _leaks(text)
    assert "0 frames read" in r.stdout
    assert "gave up after 1 reconnect attempt(s)" in r.stderr
    assert re.search(r"401|[Uu]nauthori[sz]ed|authori[sz]ation", r.stderr), r.stderr
