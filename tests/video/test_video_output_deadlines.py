"""--output to servers that misbehave (#17 defects 1 and 14): every open and write of a network output
has a deadline, a stop ends the tool within 3 s whatever the server does, and every failure is one line
in words with exit 2 (the output cannot be opened) or 1 (a stream that was running broke).

The servers are real sockets on loopback: one that accepts and never answers (``silent_server``), one
that reads the first request and closes, and a minimal RTSP server that accepts a RECORD session and
then drops it. The tool runs as the real CLI in a subprocess.
"""
from __future__ import annotations

import re
import signal
import socket
import time

import pytest
from video_helpers import assert_no_traceback, free_port, loopback_server

av = pytest.importorskip("av", reason="network outputs go through PyAV (pip install av)")
pytest.importorskip("onnxruntime", reason="the CLI runs the bundled default model")

SCHEMES = ["rtsp", "rtmp"]
# raw FFmpeg/OS error numbers: "[Errno 111]", "-110", "error 104" (EPIPE, ECONNRESET, ETIMEDOUT, ECONNREFUSED, ...)
ERRNO_NUMBERS = re.compile(r"\[Errno|(?<![\w.])-\d+|\b(32|104|110|111|113)\b")


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("deblur-video: error:")]


def _one_error_line(p) -> str:
    """The run's error line: exactly one, no traceback, no raw errno number."""
    assert_no_traceback(p.text())
    lines = _error_lines(p.text("err"))
    assert len(lines) == 1, p.text()
    assert not ERRNO_NUMBERS.search(re.sub(r"\w+://\S+", "URL", lines[0])), lines[0]
    return lines[0]


@pytest.fixture
def closing_server():
    """A TCP listener on loopback that reads what a client sends first, then closes the connection."""
    got: list[bytes] = []

    def handle(c: socket.socket) -> None:
        with c:
            c.settimeout(5)
            try:
                got.append(c.recv(4096))
            except OSError:
                pass

    with loopback_server(handle) as port:
        yield port, got


@pytest.fixture
def rtsp_record_server():
    """A minimal RTSP server that accepts one publishing client (OPTIONS, ANNOUNCE, SETUP, RECORD: 200 OK),
    takes ``keep_bytes`` of its interleaved RTP data, then closes the connection, as a server that crashes."""
    state = {"recording": False, "media_bytes": 0, "keep_bytes": 200_000}

    def handle(c: socket.socket) -> None:
        buf = b""
        c.settimeout(10)
        while not state["recording"]:
            while b"\r\n\r\n" not in buf:
                chunk = c.recv(4096)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            text = head.decode("latin-1")
            length = int(re.search(r"(?im)^content-length:\s*(\d+)", text).group(1)) if "ontent-Length" in text or "ontent-length" in text else 0
            while len(buf) < length:
                buf += c.recv(4096)
            buf = buf[length:]
            method = text.split(" ", 1)[0]
            cseq = re.search(r"(?im)^cseq:\s*(\d+)", text).group(1)
            extra = ""
            if method == "SETUP":
                extra = re.search(r"(?im)^transport:.*$", text).group(0) + "\r\n"
            c.sendall(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nSession: 12345678\r\n{extra}\r\n".encode())
            state["recording"] = method == "RECORD"
        while state["media_bytes"] < state["keep_bytes"]:
            chunk = c.recv(65536)
            if not chunk:
                return
            state["media_bytes"] += len(chunk)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST, as a crash
        c.close()

    def handle_and_close(c: socket.socket) -> None:
        with c:
            handle(c)

    with loopback_server(handle_and_close, backlog=4) as port:
        yield port, state


def _wait_connected(conns: list, p, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not conns:
        assert p.popen.poll() is None, f"the tool ended before it connected:\n{p.text()}"
        assert time.monotonic() < deadline, f"the tool never connected to the output server:\n{p.text()}"
        time.sleep(0.05)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sigterm_while_the_output_handshake_hangs_exits_within_3_s(silent_server, spawn_cli, tmp_path, scheme):
    """The server accepts the connection and never answers: the tool still stops on SIGTERM within 3 s."""
    p = spawn_cli("--demo", "--headless", "--stats-every", "0", "--output-timeout", "60",
                  "--output", f"{scheme}://127.0.0.1:{silent_server.port}/x", cwd=tmp_path)
    p.wait_for(r"STREAMING", timeout=60, which="err")
    time.sleep(2.0)  # the first output frame came: well inside the handshake
    assert silent_server.conns, "the tool never connected to the output server"
    p.stop_with(signal.SIGTERM, 143, within=3.0)
    assert_no_traceback(p.text())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_silent_output_server_fails_at_the_deadline_in_one_line(silent_server, spawn_cli, tmp_path, scheme):
    p = spawn_cli("--demo", "--headless", "--stats-every", "0", "--output-timeout", "2",
                  "--output", f"{scheme}://127.0.0.1:{silent_server.port}/x", cwd=tmp_path)
    _wait_connected(silent_server.conns, p)
    t_connected = time.monotonic()
    assert p.wait(timeout=15) == 2, p.text()
    assert time.monotonic() - t_connected < 2 + 3, "the output deadline was not kept"
    line = _one_error_line(p)
    assert f"{scheme}://127.0.0.1:{silent_server.port}/x" in line and "no answer from the server within 2 s" in line, line


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_output_server_that_closes_at_once_is_one_line_exit_2(closing_server, spawn_cli, tmp_path, scheme):
    port, got = closing_server
    p = spawn_cli("--demo", "--headless", "--stats-every", "0", "--output", f"{scheme}://127.0.0.1:{port}/x", cwd=tmp_path)
    assert p.wait(timeout=60) == 2, p.text()
    assert got, "the tool never sent its first request: this was not the handshake"
    line = _one_error_line(p)
    assert "cannot stream there (the server closed the connection" in line, line


def test_nothing_listening_is_one_line_before_the_model_loads(spawn_cli, tmp_path):
    port = free_port()
    p = spawn_cli("--demo", "--headless", "--output", f"rtsp://127.0.0.1:{port}/x", cwd=tmp_path)
    assert p.wait(timeout=60) == 2, p.text()
    line = _one_error_line(p)
    assert "connection refused" in line and f"port {port}" in line, line
    assert p.text("out") == "" and p.text("err") == line, "only the error line: no model banner, no table"


@pytest.mark.parametrize("flag", ["--output", "--input"])
def test_a_scheme_this_ffmpeg_lacks_is_refused_naming_those_it_has(spawn_cli, tmp_path, flag):
    from deblur.video.protocols import supported

    if supported("srt", output=flag == "--output") is not False:
        pytest.skip("this FFmpeg has SRT")
    args = ["--demo", "--output", "srt://127.0.0.1:9000"] if flag == "--output" else ["--input", "srt://127.0.0.1:9000"]
    p = spawn_cli(*args, "--headless", cwd=tmp_path)
    assert p.wait(timeout=60) == 2, p.text()
    line = _one_error_line(p)
    assert "srt://" in line and "rtsp://" in line and "udp://" in line, line


def test_a_stream_that_breaks_after_it_started_is_exit_1(rtsp_record_server, spawn_cli, tmp_path):
    """A server that took the stream and then went away: the run failed (exit 1), in one line."""
    port, state = rtsp_record_server
    p = spawn_cli("--input", "synthetic://demo?fps=24", "--input-width", "320", "--input-height", "180", "--headless",
                  "--stats-every", "0", "--output", f"rtsp://127.0.0.1:{port}/x", cwd=tmp_path)
    rc = p.wait(timeout=90)
    assert state["recording"], f"the RTSP session never reached RECORD:\n{p.text()}"
    assert rc == 1, p.text()
    line = _one_error_line(p)
    assert "the stream broke" in line, line
