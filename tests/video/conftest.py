"""Fixtures for the deblur.video tests: the deblur logger's records, subprocesses that are always
killed, video sources that are always stopped, a real GStreamer RTSP server and a silent TCP server
on loopback, the bundled model."""
from __future__ import annotations

import functools
import logging
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest
from video_helpers import CLI, RTSP_SERVER, SYSTEM_PYTHON, Proc, free_port, loopback_server


@dataclass
class Record:
    t: float  # time.monotonic() when logged
    level: int
    message: str


class LogRecords(logging.Handler):
    """Collects every record of the ``deblur`` logger with its time (the CLI's handler is not involved)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[Record] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(Record(time.monotonic(), record.levelno, record.getMessage()))

    def messages(self, since: float = 0.0, until: float = float("inf")) -> list[str]:
        with self._lock2:
            return [r.message for r in self.records if since <= r.t < until]

    def between(self, since: float, until: float = float("inf")) -> list[Record]:
        with self._lock2:
            return [r for r in self.records if since <= r.t < until]


@pytest.fixture
def deblur_log():
    log = logging.getLogger("deblur")
    handler = LogRecords()
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


@pytest.fixture
def spawn():
    """``spawn(argv, cwd=..., env=...) -> Proc``; every process still running at the end is SIGKILLed."""
    procs: list[Proc] = []

    def start(argv, cwd=None, env=None) -> Proc:
        p = Proc(argv, cwd=cwd, env=env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()


@pytest.fixture
def spawn_cli(spawn):
    """``spawn_cli(*args, cwd=...)``: ``deblur-video ARGS`` as a ``Proc``."""
    if not CLI.exists():
        pytest.skip(f"the deblur-video entry point is not installed at {CLI}")

    def start(*args, cwd=None, env=None) -> Proc:
        return spawn([CLI, *args], cwd=cwd, env=env)

    return start


@functools.lru_cache(maxsize=1)
def _rtsp_unavailable() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None."""
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} not found (the RTSP server needs Debian's python3 with python3-gi)"
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'videoconvert') if Gst.ElementFactory.find(e) is None];"
             "print(' '.join(missing))")
    try:
        r = subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return f"{SYSTEM_PYTHON} could not import GStreamer within 30 s"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"{SYSTEM_PYTHON} cannot import gi / GstRtspServer ({last}); apt install python3-gi gir1.2-gst-rtsp-server-1.0"
    if r.stdout.strip():
        return f"GStreamer elements missing: {r.stdout.strip()} (apt install gstreamer1.0-plugins-base/-good/-ugly)"
    return None


@dataclass
class RtspServer:
    proc: Proc
    port: int
    path: str

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def url_with(self, user: str, password: str) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}{self.path}"

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients, as when a camera loses power."""
        self.proc.kill()


@pytest.fixture
def rtsp_server(spawn):
    """``rtsp_server(port=None, user=None, password=None, fps=25, size='160x120') -> RtspServer``, READY."""
    why = _rtsp_unavailable()
    if why:
        pytest.skip(why)

    def start(port: int | None = None, user: str | None = None, password: str | None = None, fps: int = 25,
              size: str = "160x120", path: str = "/test") -> RtspServer:
        port = port or free_port()
        argv = [SYSTEM_PYTHON, RTSP_SERVER, "--port", port, "--path", path, "--fps", fps, "--size", size]
        if user:
            argv += ["--user", user, "--password", password or ""]
        last = ""
        for _ in range(10):  # the port of a server just killed can take a moment to be free again
            p = spawn(argv)
            try:
                p.wait_for(r"^READY rtsp://", timeout=20, which="out")
                return RtspServer(p, port, path)
            except AssertionError as e:
                last = str(e)
                p.kill()
                if "cannot listen" not in last:
                    raise
                time.sleep(0.3)
        raise AssertionError(f"the RTSP server could not listen on port {port}: {last}")

    return start


@pytest.fixture
def video_source():
    """``video_source(text, options=None, seed=None, start=True) -> VideoSource`` for ``parse_source(text)``,
    started unless ``start=False``; every source is stopped at teardown too, so a test that fails half-way
    leaves no capture thread behind. A test that checks what happens after a stop still calls ``stop()``
    itself, where it matters (stopping twice is harmless)."""
    from deblur.video.source import SourceOptions, VideoSource
    from deblur.video.uri import parse_source

    sources = []

    def make(text, options: SourceOptions | None = None, seed: int | None = None, start: bool = True):
        src = VideoSource(parse_source(str(text)), options or SourceOptions(), seed=seed)
        sources.append(src)
        return src.start() if start else src

    yield make
    for src in sources:
        src.stop()


@dataclass
class SilentServer:
    port: int
    conns: list  # the accepted connections, held open

    def url(self, path: str = "/x") -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"


@pytest.fixture
def silent_server():
    """A TCP listener on loopback that accepts every connection and never sends a byte."""
    conns: list[socket.socket] = []
    with loopback_server(conns.append, backlog=64) as port:
        try:
            yield SilentServer(port, conns)
        finally:
            for c in conns:
                c.close()


@pytest.fixture(scope="session")
def deblurrer():
    """The bundled ``default`` model as the CLI runs it for a file on a CPU: one thread per worker, on the
    backend chosen for that (the same cached decision: the tests share DEBLUR_CACHE_DIR with the CLI)."""
    pytest.importorskip("onnxruntime", reason="the bundled default model runs through ONNX Runtime (pip install onnxruntime)")
    from deblur.runtime import Deblurrer

    with Deblurrer("default", threads=1) as d:
        yield d
