"""Network outputs (``--output rtsp://``, ``rtmp://``, ``udp://``) in a child process, every step under a deadline.

FFmpeg's RTSP and RTMP muxers connect and handshake inside calls that PyAV makes with the GIL held
and no interrupt callback (``avio_open``, ``avformat_write_header``): a server that accepts the
connection and never answers froze every thread and every signal handler of the tool (RTMP for
ever; no option reaches the RTMP socket). So the encoder and muxer (a plain ``Recorder``) run in a
child, ``python -m deblur.video.netout``; the parent sends raw frames down a pipe and keeps every
deadline itself, in slices of 0.1 s in which signals are handled:

- open: ``timeout`` s for the connection and handshake; past it, or on a refusal, ``InputError``
  (exit 2: the URL or the server is to be fixed);
- each frame: the child must take it within ``timeout`` s; a server that stops taking data or
  closes the stream is an ``OutputFailedError`` (exit 1: the run failed);
- after a stop (``stop`` set by SIGINT/SIGTERM): at most ``STOP_GRACE_S`` more for a frame or the
  close, then the stream is dropped, so the tool still exits within its 3 s.

A child that overruns is killed; it dies with the parent too (``PR_SET_PDEATHSIG``), and lives in
its own session so a Ctrl-C at the terminal reaches only the parent, which decides.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import numpy as np

from deblur.runtime.errors import InputError, OutputFailedError
from deblur.video.av_errors import describe
from deblur.video.recorder import coded_size, fit
from deblur.video.uri import redact

log = logging.getLogger("deblur")
STOP_GRACE_S = 1.0  # after a stop: this long at most for the frames in flight and the close
START_S = 60.0  # the child's imports (numpy, OpenCV, PyAV) on a loaded machine
HEADER = struct.Struct("<d")  # each frame: its time in s (NaN: none), then h*w*3 bytes BGR
CHUNK = 1 << 16
DEFAULT_PORTS = {"rtsp": 554, "rtmp": 1935, "tcp": 0}  # TCP-based outputs a connection can check


class StreamRecorder:
    """A ``Recorder`` in a child process: ``write(bgr, t_s)``, ``close()``, ``describe``, ``frames``."""

    def __init__(self, target: str | Path, size: tuple[int, int], fps: float, codec: str = "h264",
                 timeout: float = 5.0, stop: threading.Event | None = None):
        self.target, self.codec, self.timeout = str(target), codec, float(timeout)
        self.size = (int(size[0]), int(size[1]))
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.stop = stop or threading.Event()
        self.frames = 0
        self.describe = f"{redact(self.target)} (not open)"
        self._warned_size = False
        self._dropped = False  # given up after a stop: later writes do nothing
        self._t_stop: float | None = None
        self._inbox = b""
        self._messages: list[dict[str, Any]] = []
        self.proc: subprocess.Popen | None = None
        if self.stop.is_set():  # stopping already: no stream to open for the frames in flight
            self._dropped = True
            return
        env = dict(os.environ, DEBLUR_NETOUT_PARENT=str(os.getpid()))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deblur.video.netout"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if log.isEnabledFor(logging.DEBUG) else subprocess.DEVNULL, start_new_session=True, env=env)
        for f in (self.proc.stdin, self.proc.stdout):
            os.set_blocking(f.fileno(), False)
        w, h = coded_size(codec, *self.size)
        if (w, h) != self.size:
            log.info("streaming %s: %dx%d padded to %dx%d (H.264 4:2:0 needs even sizes; the edge repeated)",
                     redact(self.target), *self.size, w, h)
        config = {"target": self.target, "size": self.size, "fps": self.fps, "codec": codec, "timeout": self.timeout + 1}
        self._send((json.dumps(config) + "\n").encode(), time.monotonic() + START_S, "starting")
        if self._await("ready", START_S, "starting") and self._await("open", self.timeout, "open"):
            self.describe = f"{self._messages[-1]['describe']} (in a child process, deadline {self.timeout:g} s)"

    # ----------------------------------------------------------------------------------- parent side
    def _stopping(self) -> bool:
        if self.stop.is_set() and self._t_stop is None:
            self._t_stop = time.monotonic()
        return self._t_stop is not None

    def _deadline(self, deadline: float) -> float:
        return min(deadline, self._t_stop + STOP_GRACE_S) if self._stopping() else deadline

    def _poll(self) -> None:
        """Take what the child said (JSON lines) without blocking."""
        if self.proc is None:
            return
        try:
            while chunk := os.read(self.proc.stdout.fileno(), CHUNK):
                self._inbox += chunk
        except BlockingIOError:
            pass
        while b"\n" in self._inbox:
            line, _, self._inbox = self._inbox.partition(b"\n")
            with contextlib.suppress(ValueError):
                self._messages.append(json.loads(line))

    def _error(self) -> dict[str, Any] | None:
        return next((m for m in self._messages if m.get("event") == "error"), None)

    def _drop(self, why: str) -> None:
        """After a stop: give the stream up (kill the child), say so once."""
        if not self._dropped:
            log.warning("%s: %s; the stream is dropped to stop in time", redact(self.target), why)
        self._dropped = True
        self._kill()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(2.0)
            for f in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    f.close()
        self.proc = None

    def _fail(self, stage: str, waited: float) -> None:
        """Raise the error for ``stage`` (open/write/close) from what the child said, or from the deadline."""
        self._poll()
        err = self._error()
        self._kill()
        where = redact(self.target)
        if err is None and waited >= 0:
            if stage in ("open", "starting"):
                raise InputError(f"no answer from the server within {self.timeout:g} s", where,
                                 hint="check that a server at that address accepts published streams "
                                      "(or raise --output-timeout)")
            raise OutputFailedError(f"the server took no data for {self.timeout:g} s", where,
                                    hint="check the server and the network (--output-timeout sets this deadline)")
        why = redact(err["message"]) if err else "the output process ended"
        if stage in ("open", "starting") or (err and err.get("stage") == "open"):
            if err and err.get("kind") == "input":
                raise InputError(why, where)
            if err and err.get("timed_out"):
                why = f"no answer within {self.timeout:g} s"
            hint = ("is a server running and listening there?" if "refused" in why else
                    "check that a server at that address accepts published streams")
            raise InputError(f"cannot stream there ({why})", where, hint=hint)
        raise OutputFailedError(f"the stream broke: {why}", where,
                                hint="check the server (it closed the stream or stopped taking data)")

    def _await(self, event: str, timeout: float, stage: str) -> bool:
        """Wait for the child's ``event``; False when a stop came first (the stream is then dropped)."""
        t0 = time.monotonic()
        while True:
            self._poll()
            if any(m.get("event") == event for m in self._messages):
                return True
            if self._error() is not None or self.proc is None or self.proc.poll() is not None:
                self._poll()
                if any(m.get("event") == event for m in self._messages):
                    return True
                self._fail(stage, -1)
            now = time.monotonic()
            if self._stopping() and now > self._deadline(t0 + timeout):
                self._drop(f"stopped while the stream was {'opening' if stage == 'open' else stage}")
                return False
            if now > t0 + timeout:
                self._fail(stage, now - t0)
            select.select([self.proc.stdout.fileno()], [], [], 0.1)

    def _send(self, data: bytes, deadline: float, stage: str) -> bool:
        """Write ``data`` to the child; False if a stop made it drop the stream."""
        view, off, t0 = memoryview(data), 0, time.monotonic()
        while off < len(view):
            if self.proc is None or self.proc.poll() is not None:
                self._fail(stage, -1)
            now = time.monotonic()
            if self._stopping() and now > self._deadline(deadline):
                self._drop("the server did not take the last frames")
                return False
            if now > deadline:
                self._fail(stage, now - t0)
            _, ready, _ = select.select([], [self.proc.stdin.fileno()], [], 0.1)
            if ready:
                try:
                    off += os.write(self.proc.stdin.fileno(), view[off:off + CHUNK])
                except BlockingIOError:
                    pass
                except BrokenPipeError:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(1.0)
                    self._fail(stage, -1)
            self._poll()
            if self._error() is not None:
                self._fail(stage, -1)
        return True

    def write(self, bgr: np.ndarray, t_s: float | None = None) -> None:
        """Hand one frame to the child (``OutputFailedError`` if it cannot take it within the deadline)."""
        if self._dropped or self.proc is None:
            return
        bgr, self._warned_size = fit(bgr, self.size, self._warned_size)
        self.frames += 1
        head = HEADER.pack(math.nan if t_s is None else float(t_s))
        self._send(head + np.ascontiguousarray(bgr).tobytes(), time.monotonic() + self.timeout, "write")

    def close(self) -> None:
        """Let the child flush and end the stream, within the deadline (``STOP_GRACE_S`` after a stop)."""
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        t0 = time.monotonic()
        try:
            while self.proc.poll() is None:
                now = time.monotonic()
                if now > self._deadline(t0 + self.timeout):
                    if self._stopping():
                        self._drop("the server did not take the end of the stream")
                        return
                    self._fail("close", now - t0)
                select.select([self.proc.stdout.fileno()], [], [], 0.1)
                self._poll()
            self._poll()
            if self._error() is not None:
                self._fail("close", -1)
        finally:
            self._kill()


def check_reachable(target: str, timeout: float) -> None:
    """Before a model loads: a TCP connection to an RTSP/RTMP server, so that a wrong host or port
    (nothing listening: "connection refused") is one line at start, not an error at the first frame."""
    u = urlsplit(target)
    scheme = u.scheme.lower()
    try:
        port = u.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        raise InputError("bad port in the URL", redact(target), hint=f"write {scheme}://host:port/path") from None
    if scheme not in DEFAULT_PORTS or not u.hostname or not port:
        return
    try:
        socket.create_connection((u.hostname, port), timeout=timeout).close()
    except socket.gaierror:
        raise InputError(f"cannot resolve the host {u.hostname!r}", redact(target), hint="check the host name in --output") from None
    except OSError as e:
        why = describe(e)
        hint = (f"is a server running and listening on port {port}?" if "refused" in why
                else "check the address, the network and any firewall (--output-timeout sets the deadline)")
        raise InputError(f"cannot stream there ({why})", redact(target), hint=hint) from None


# ------------------------------------------------------------------------------------------ child side
def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the parent dies (a second Ctrl-C exits the parent at once)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.environ.get("DEBLUR_NETOUT_PARENT") not in (None, str(os.getppid())):
        os._exit(1)  # the parent died before prctl took effect


def _say(out: BinaryIO, **message: Any) -> None:
    out.write((json.dumps(message) + "\n").encode())
    out.flush()


def _read_exact(f: BinaryIO, n: int) -> bytes | None:
    data = f.read(n)
    return data if data is not None and len(data) == n else None


def _error_message(stage: str, e: BaseException) -> dict[str, Any]:
    import errno

    from deblur.runtime.errors import DeblurError

    if isinstance(e, DeblurError):
        return {"event": "error", "stage": stage, "message": e.line(), "kind": "input"}
    return {"event": "error", "stage": stage, "message": describe(e), "timed_out": getattr(e, "errno", None) == errno.ETIMEDOUT}


def child_main() -> int:
    """Read the config line, open the output, then frames until end of input; report on stdout."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the stream ends
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    logging.basicConfig(level=logging.INFO, format="deblur-video output: %(message)s")
    from deblur.video.recorder import Recorder

    _say(out, event="ready")
    line = inp.readline()
    if not line:
        return 0
    cfg = json.loads(line)
    try:
        rec = Recorder(cfg["target"], tuple(cfg["size"]), cfg["fps"], cfg["codec"], timeout=cfg["timeout"])
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises the typed error
        _say(out, **_error_message("open", e))
        return 2
    _say(out, event="open", describe=rec.describe)
    w, h = rec.size
    try:
        while (head := _read_exact(inp, HEADER.size)) is not None and (data := _read_exact(inp, w * h * 3)) is not None:
            (t,) = HEADER.unpack(head)
            rec.write(np.frombuffer(data, np.uint8).reshape(h, w, 3), None if math.isnan(t) else t)
        stage = "close"
        rec.close()
    except Exception as e:  # noqa: BLE001 - the server closed the stream, or stopped taking data
        _say(out, **_error_message("write", e))
        with contextlib.suppress(Exception):
            rec._abort()
        return 1
    _say(out, event="closed", stage=stage)
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
