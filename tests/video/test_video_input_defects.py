"""#17 defects 21 and 22 (input side): every announced frame accounted for; an empty file called
empty; no bare "p50 ms:"; FFmpeg's errno numbers turned into words."""
from __future__ import annotations

import errno
import json
import re
import socket
import threading
import time

import pytest
from video_helpers import assert_no_traceback, free_port, read_all, run_cli, summary, write_clip

from deblur.runtime.errors import InputError
from deblur.video.av_errors import describe
from deblur.video.readers import NO_PICTURE, ReaderOptions
from deblur.video.source import SourceEnded, SourceOptions, State, VideoSource
from deblur.video.stats import PipelineStats
from deblur.video.uri import SourceURI, parse_source

av = pytest.importorskip("av", reason="files are read through PyAV (pip install av)")

N = 144
GOP = 24
FRAMES_LINE = re.compile(r"frames: (?P<announced>\d+) announced = (?P<read>\d+) decoded \+ (?P<undecodable>\d+) undecodable "
                         r"\+ (?P<lost>\d+) lost(?:: (?P<why>.*))?$", re.MULTILINE)
NUMBER_LEAK = re.compile(r"\[Errno|errno \d|\b\d{5,}\b|-1\d\d\b")  # FFmpeg tags (1094995529), -110, [Errno 111]


def invert_packets(src, dst, which) -> None:
    """Invert every byte of the payloads of video packets ``which`` (file order)."""
    with av.open(str(src)) as c:
        payloads = [bytes(p) for p in c.demux(video=0) if p.size]
    data = src.read_bytes()
    out = bytearray(data)
    for k in which:
        start = data.find(payloads[k])
        assert start > 0
        out[start:start + len(payloads[k])] = bytes(b ^ 0xFF for b in payloads[k])
    dst.write_bytes(bytes(out))


@pytest.fixture(scope="module")
def damaged_mp4(tmp_path_factory):
    """A 144-frame H.264 MP4 (keyframe every 24) whose 12 packets from the middle keyframe on are inverted:
    the decoder rejects those and returns no picture for some later ones, whose references were damaged."""
    d = tmp_path_factory.mktemp("d21")
    clean = d / "clean.mp4"
    write_clip(clean, N, "libx264", options={"g": str(GOP)})
    with av.open(str(clean)) as c:
        s = c.streams.video[0]
        assert s.frames == N  # the MP4 index announces every frame
        keys = [k for k, p in enumerate(p for p in c.demux(s) if p.size) if p.is_keyframe]
    middle = keys[len(keys) // 2]
    assert 0 < middle < N - GOP
    bad = d / "damaged.mp4"
    invert_packets(clean, bad, range(middle, middle + 12))
    return bad


# ------------------------------------------------------------------------------------ defect 21


def test_cli_accounts_for_every_announced_frame(damaged_mp4, tmp_path):
    """Defect 21: 144 packets gave 132 frames read + 6 undecodable, and 6 frames were nowhere."""
    stats_json = tmp_path / "stats.json"
    r = run_cli(["--input", damaged_mp4, "--headless", "--stats-json", stats_json, "--stats-every", "0"],
                cwd=tmp_path, timeout=120)
    assert_no_traceback(r.stdout, r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    c = json.loads(stats_json.read_text())["counters"]
    assert c["announced"] == N
    assert c["read"] + c["undecodable"] + c["lost"] == c["announced"], c
    assert c["lost"] > 0, f"this FFmpeg decoded every undamaged frame: the scenario loses none ({c})"
    assert c["lost_reasons"] == {NO_PICTURE: c["lost"]}
    assert c["skipped"] == c["undecodable"] + c["lost"]  # what the bad-frame limit counts
    s = summary(r.stdout)
    assert (s["read"], s["skipped"]) == (c["read"], c["undecodable"])  # the summary's "undecodable" is only those
    m = FRAMES_LINE.search(r.stdout)
    assert m, r.stdout
    assert {k: int(m[k]) for k in ("announced", "read", "undecodable", "lost")} == \
        {"announced": N, "read": c["read"], "undecodable": c["undecodable"], "lost": c["lost"]}
    assert m["why"] == f"{c['lost']} {NO_PICTURE}"


def test_source_accounting_adds_up(damaged_mp4):
    src = VideoSource(parse_source(str(damaged_mp4)))
    n = len(read_all(src, timeout=60))
    assert src.state == State.EOS
    a = src.accounting()
    assert a["announced"] == N and n == src.delivered
    assert src.delivered + a["undecodable"] + a["lost"] == N, a
    assert src.skipped == a["undecodable"] + a["lost"]


def test_truncated_mkv_without_an_index_adds_up(tmp_path):
    """No index (Matroska): announced is what came plus the tail the declared duration is short of."""
    clip = tmp_path / "c.mkv"
    write_clip(clip, 48, "ffv1", options={"g": "1"})
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 3 // 4])
    stats_json = tmp_path / "s.json"
    r = run_cli(["--input", cut, "--headless", "--stats-json", stats_json, "--stats-every", "0"], cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    c = json.loads(stats_json.read_text())["counters"]
    assert c["read"] + c["undecodable"] + c["lost"] == c["announced"]
    assert abs(c["announced"] - 48) <= 3 and c["lost"] > 0
    assert "missing from the file" in FRAMES_LINE.search(r.stdout)["why"]


# ------------------------------------------------------------------------------------ defect 22a


def test_empty_file_opened_directly_says_empty(tmp_path):
    """The reader itself (a SourceURI made without parse_source, or a file emptied after the check)."""
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    src = VideoSource(SourceURI("file", str(empty), str(empty))).start()
    deadline = time.monotonic() + 10
    while src.state != State.FAILED and time.monotonic() < deadline:
        time.sleep(0.02)
    src.stop()
    assert isinstance(src.error, InputError), src.reason
    line = src.error.line()
    assert line.startswith(f"{empty}: the file is empty (0 bytes)"), line
    assert "nvalid data" not in line


def test_cli_empty_synthetic_clip_says_empty(tmp_path):
    empty = tmp_path / "clip.mp4"
    empty.write_bytes(b"")
    r = run_cli(["--input", f"synthetic://{empty}?fps=30", "--headless"], cwd=tmp_path, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert_no_traceback(r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("deblur-video: error: ")]
    assert len(errors) == 1 and f"{empty}: the clip is empty (0 bytes)" in errors[0], r.stderr


def test_cli_empty_file_says_empty(tmp_path):
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    r = run_cli(["--input", empty, "--headless"], cwd=tmp_path, timeout=30)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("deblur-video: error: ")]
    assert len(errors) == 1 and "empty (0 bytes)" in errors[0] and "nvalid data" not in errors[0], r.stderr


# ------------------------------------------------------------------------------------ defect 22b


def test_status_line_before_any_timing_has_no_empty_field():
    line = PipelineStats().status_line({"read": 0, "out": 0, "lost_reasons": {}, "announced": None})
    assert not line.rstrip().endswith(":"), line
    assert "p50 ms: n/a" in line
    assert "{" not in line and "None" not in line  # only scalar counters in the one-line status
    stats = PipelineStats()
    stats.add({"capture": 2.0, "infer_ms": 10.0}, time.perf_counter())
    assert re.search(r"p50 ms: capture 2\.0 infer 10\.0$", stats.status_line({"read": 1}))


# ------------------------------------------------------------------------------------ defect 22c


def test_describe_real_pyav_errors(tmp_path):
    empty = tmp_path / "e.mkv"
    empty.write_bytes(b"")
    with pytest.raises(av.FFmpegError) as e:
        av.open(str(empty))
    assert describe(e.value) == "invalid data"
    with pytest.raises(av.FFmpegError) as e:
        av.open(f"tcp://127.0.0.1:{free_port()}", timeout=(2, 2))  # nobody listens there
    assert describe(e.value) == "connection refused"
    assert describe(av.error.ExitError(-0x54495845, "Immediate exit requested")) == "interrupted at a deadline"


@pytest.mark.parametrize("exc, words", [
    (OSError(errno.ETIMEDOUT, "Connection timed out"), "timed out"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection refused"),
    (TimeoutError(), "timed out"),
    (RuntimeError("avformat_open_input returned -110"), "avformat_open_input timed out"),
    (RuntimeError("read failed, errno 111"), "read failed, connection refused"),
    (RuntimeError("[Errno 1094995529] Invalid data found when processing input: 'x.mp4'"),
     "invalid data found when processing input"),
    (RuntimeError("HTTP error 404"), "HTTP error 404"),  # not an errno: kept as it is
])
def test_describe_turns_numbers_into_words(exc, words):
    assert describe(exc) == words


def test_decode_errors_are_logged_in_words(damaged_mp4, deblur_log):
    read_all(VideoSource(parse_source(str(damaged_mp4))), timeout=60)
    undecodable = [m for m in deblur_log.messages() if "undecodable packet" in m]
    assert undecodable and all(m.endswith(": invalid data") for m in undecodable), undecodable[:3]
    leaks = [m for m in deblur_log.messages() if NUMBER_LEAK.search(m.replace(str(damaged_mp4), "FILE"))]
    assert not leaks, leaks[:3]


@pytest.fixture
def stalling_http(tmp_path):
    """An HTTP server on loopback that sends half a Matroska clip and then nothing, keeping the connection open."""
    clip = tmp_path / "live.mkv"
    write_clip(clip, 96, "ffv1", options={"g": "1"})
    half = clip.read_bytes()[: clip.stat().st_size // 2]
    server = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []
    done = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conns.append(conn)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-matroska\r\nConnection: keep-alive\r\n\r\n" + half)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/live.mkv"
    done.set()
    t.join(2)
    for c in conns:
        c.close()
    server.close()


def test_read_deadline_message_has_no_ffmpeg_number(stalling_http, deblur_log):
    """A live stream that stops sending mid-read: the interrupt's AVERROR_EXIT came out as its tag number."""
    opts = SourceOptions(ReaderOptions(open_timeout=3, read_timeout=0.5), reconnect_attempts=0)
    src = VideoSource(parse_source(stalling_http), opts).start()
    deadline = time.monotonic() + 20
    got = 0
    try:
        while time.monotonic() < deadline:
            got += src.get(0.1) is not None
    except SourceEnded:
        pass
    finally:
        src.stop(join=3.0)
    assert got > 0 and src.state == State.FAILED, (got, src.state, src.reason)
    assert "no frame within 0.5 s" in src.reason, src.reason
    assert not NUMBER_LEAK.search(src.reason), src.reason
    assert not [m for m in deblur_log.messages() if NUMBER_LEAK.search(m.replace(stalling_http, "URL"))]
