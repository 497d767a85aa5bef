"""Helpers for the deblur.video tests: test clips, frame stamps, free ports, CLI subprocesses.

Every frame a test writes carries its index as 8 black/white cells along the top edge
(``pattern_frame`` / ``frame_index``), so order and identity survive lossy codecs.
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLI = Path(sys.executable).parent / "deblur-video"
SYSTEM_PYTHON = Path("/usr/bin/python3")
RTSP_SERVER = HERE / "rtsp_server.py"
SUMMARY = re.compile(r"ended \((?P<ended>[^)]*)\); (?P<read>\d+) frames read, (?P<out>\d+) written, (?P<dropped>\d+) dropped, "
                     r"(?P<skipped>\d+) undecodable, (?P<reconnects>\d+) reconnects")
STATUS = re.compile(r"FPS \| read (?P<read>\d+), out (?P<out>\d+), dropped (?P<dropped>\d+), skipped (?P<skipped>\d+)")
BITS = 8  # frame indices 0..255


def free_port() -> int:
    """A TCP port nobody listens on right now (bind port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_server(handle: Callable[[socket.socket], None], backlog: int = 16) -> Iterator[int]:
    """A real TCP listener on 127.0.0.1 whose accept loop (a daemon thread) hands each connection to ``handle``
    (which owns it: closes it, or keeps it open); yields the port. Socket errors inside ``handle`` end that
    connection only."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(backlog)
    srv.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except (socket.timeout, OSError):
                continue
            try:
                handle(c)
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        done.set()
        t.join(2.0)
        srv.close()


def pattern_frame(i: int, w: int = 160, h: int = 120) -> np.ndarray:
    """A BGR frame unique to ``i``: index bits in the top band, a gradient that moves with ``i`` below."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // max(w, 1) + 7 * i) % 256, (y * 255 // max(h, 1) + 3 * i) % 256,
                    np.full_like(x, 90 + (i * 37) % 100)], -1).astype(np.uint8)
    cell, band = w // BITS, max(8, h // 4)
    for b in range(BITS):
        img[:band, b * cell:(b + 1) * cell] = 235 if (i >> b) & 1 else 20
    return img


def frame_index(img: np.ndarray) -> int:
    """The index ``pattern_frame`` stamped into ``img`` (robust to H.264 at normal quality)."""
    h, w = img.shape[:2]
    cell, band = w // BITS, max(8, h // 4)
    value = 0
    for b in range(BITS):
        patch = img[2:band - 2, b * cell + 2:(b + 1) * cell - 2]
        if patch.mean() > 128:
            value |= 1 << b
    return value


def write_video(path: Path, frames: Iterable[np.ndarray], codec: str = "ffv1", fps: int = 24,
                pix_fmt: str | None = None, options: dict[str, str] | None = None) -> int:
    """Encode BGR ``frames`` with PyAV; FFV1 is stored as bgr0 (lossless). Returns the frame count."""
    import av

    frames = list(frames)
    h, w = frames[0].shape[:2]
    pix_fmt = pix_fmt or {"ffv1": "bgr0", "libx264": "yuv420p", "mjpeg": "yuvj420p"}[codec]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps, options=options or {})
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            f.pts, f.time_base = i, Fraction(1, fps)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return len(frames)


def write_clip(path: Path, n: int, codec: str = "ffv1", w: int = 160, h: int = 120, fps: int = 24,
               options: dict[str, str] | None = None) -> list[np.ndarray]:
    """A test clip of ``n`` distinct frames (``pattern_frame(0..n-1)``, ``w`` x ``h``); returns the frames written."""
    frames = [pattern_frame(i, w, h) for i in range(n)]
    write_video(path, frames, codec, fps=fps, options=options)
    return frames


def write_images(folder: Path, indices: Iterable[int], w: int, h: int, name: str = "{k:02d}.png") -> list[np.ndarray]:
    """A new folder of PNGs, the ``k``-th named ``name.format(k=k)`` holding ``pattern_frame(indices[k], w, h)``;
    returns the frames written, in that order."""
    import cv2

    folder.mkdir()
    frames = [pattern_frame(i, w, h) for i in indices]
    for k, img in enumerate(frames):
        cv2.imwrite(str(folder / name.format(k=k)), img)
    return frames


def read_all(source, timeout: float = 30.0, delay: float = 0.0) -> list:
    """Start ``source`` and take every frame until it ends, then stop it; fails the test if it does not
    end within ``timeout``. ``delay``: seconds a slow consumer sleeps after each frame."""
    from deblur.video.source import SourceEnded

    frames = []
    deadline = time.monotonic() + timeout
    source.start()
    try:
        while True:
            assert time.monotonic() < deadline, f"source did not end within {timeout} s (state {source.state})"
            try:
                f = source.get(0.2)
            except SourceEnded as e:
                assert e.state == source.state
                return frames
            if f is not None:
                frames.append(f)
                if delay:
                    time.sleep(delay)
    finally:
        source.stop()


def decode_frames(path: Path) -> list[np.ndarray]:
    """Every decodable frame of the first video stream, as BGR."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def decode_times(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_cli(args: Sequence[str], cwd: Path, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``deblur-video ARGS`` to completion; a run past ``timeout`` is killed and fails the test."""
    try:
        return subprocess.run([str(CLI), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=env or cli_env())
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"deblur-video {' '.join(map(str, args))} did not finish within {timeout} s (hang); "
                             f"stderr so far:\n{e.stderr}") from None


def summary(stdout: str) -> dict[str, str | int]:
    m = SUMMARY.search(stdout)
    assert m, f"no summary line in stdout:\n{stdout}"
    return {k: (v if k == "ended" else int(v)) for k, v in m.groupdict().items()}


def assert_no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t, t
        assert "internal error" not in t, t


class Proc:
    """A subprocess whose stdout and stderr lines are read as they come, each with its arrival time."""

    def __init__(self, argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None):
        self.argv = [str(a) for a in argv]
        self.popen = subprocess.Popen(self.argv, cwd=cwd, env=env or cli_env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.t_start = time.monotonic()
        self.lines: list[tuple[float, str, str]] = []  # (monotonic time, "out"|"err", line)
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(f, name), daemon=True)
                         for f, name in ((self.popen.stdout, "out"), (self.popen.stderr, "err"))]
        for t in self._readers:
            t.start()

    def _read(self, stream, name: str) -> None:
        for line in stream:
            with self._cond:
                self.lines.append((time.monotonic(), name, line.rstrip("\n")))
                self._cond.notify_all()
        stream.close()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self, which: str | None = None) -> str:
        with self._cond:
            return "\n".join(line for _, n, line in self.lines if which is None or n == which)

    def wait_for(self, pattern: str, timeout: float, after: float = 0.0, which: str | None = None) -> tuple[float, re.Match]:
        """The first line matching ``pattern`` that arrived after ``after`` (monotonic s); fails after ``timeout``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, n, line in self.lines:
                    if t >= after and (which is None or n == which):
                        m = rx.search(line)
                        if m:
                            return t, m
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s (rc={self.popen.poll()});"
                                         f" output:\n{self.text_unlocked()}")
                self._cond.wait(min(left, 0.1))

    def text_unlocked(self) -> str:
        return "\n".join(f"[{t - self.t_start:6.2f} {n}] {line}" for t, n, line in self.lines)

    def signal(self, sig: int) -> float:
        self.popen.send_signal(sig)
        return time.monotonic()

    def stop_with(self, sig: int, code: int, within: float = 3.0, timeout: float = 10.0) -> float:
        """Send ``sig``; the process must exit with ``code`` less than ``within`` s later. Returns when it was sent."""
        t_sig = self.signal(sig)
        rc = self.wait(timeout)
        took = time.monotonic() - t_sig
        assert rc == code, f"rc {rc}, expected {code}\n{self.text()}"
        assert took < within, f"{signal.Signals(sig).name} took {took:.2f} s to end the run (limit {within} s)"
        return t_sig

    def wait(self, timeout: float) -> int:
        """The exit code; a process still running after ``timeout`` fails the test (and is killed later)."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.argv[0]} still running {timeout} s later; output:\n{self.text()}") from None
        for t in self._readers:
            t.join(2.0)
        return rc

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for t in self._readers:
            t.join(1.0)
