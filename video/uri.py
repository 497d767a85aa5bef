"""Source URIs in jetson-utils' conventions, and credential redaction for every log line.

    0, /dev/video0, v4l2:///dev/video0   a V4L2 camera (live)
    csi://0                              a MIPI CSI camera through GStreamer's nvarguscamerasrc (live)
    rtsp://user:pass@host:8554/path      a network stream (live); also rtsps, rtmp, http(s), udp, tcp, and srt
                                         where FFmpeg has it (the PyAV wheels do not: refused at start)
    file://clip.mp4, clip.mp4            a video file (every frame, ends at end of stream)
    file://frames/, frames/              a folder of images, in name order
    synthetic://demo?fps=30              a clip replayed as a live camera at a fixed rate (tests, benchmarks)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from deblur.runtime.errors import InputError

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "srt", "tcp")
DEMO_CLIP = Path(__file__).resolve().parent / "demo" / "shake_street.mp4"
# User info runs to the last @ before the path (/, ? or #), as FFmpeg splits it: "p@ss" is one password.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]*@")


def redact(text: str) -> str:
    """``rtsp://user:secret@host`` -> ``rtsp://***@host`` anywhere in ``text``."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", str(text))


def refuse_unsupported(scheme: str, url: str, output: bool, schemes: tuple[str, ...] = NETWORK_SCHEMES) -> None:
    """An ``InputError`` now for a scheme this FFmpeg build cannot open (e.g. srt:// in the PyAV
    wheels), naming those it can, instead of retrying for ever or failing at the first frame."""
    from deblur.video.protocols import supported, usable

    if supported(scheme, output) is False:
        ok = ", ".join(s + "://" for s in usable(schemes, output))
        raise InputError(f"this FFmpeg (the one in PyAV) cannot {'write' if output else 'read'} {scheme}://", redact(url),
                         hint=f"it {'streams to' if output else 'reads'} {ok}")


@dataclass(frozen=True)
class SourceURI:
    """What ``--input``/``--camera`` names: ``kind`` is camera, csi, network, file, images or synthetic."""

    kind: str
    location: str  # device path, sensor id, URL, file or folder path
    text: str  # as the user wrote it
    fps: float | None = None  # synthetic sources only

    @property
    def live(self) -> bool:
        """Live sources keep only the newest frame; files and folders drop nothing."""
        return self.kind in ("camera", "csi", "network", "synthetic")

    def __str__(self) -> str:
        return redact(self.text)


def _camera(location: str, raw: str) -> SourceURI:
    """A V4L2 camera; a path that exists but cannot be one (``/dev/null``, a file, a metadata node) is an error now."""
    from deblur.video.v4l2 import not_a_camera

    why = not_a_camera(location)
    if why:
        raise InputError(why, location, hint="list cameras with v4l2-ctl --list-devices; for a video file use --input FILE")
    return SourceURI("camera", location, raw)


def parse_source(text: str) -> SourceURI:
    """Parse what the user gave; a file or folder that does not exist is an error now, not later."""
    raw = str(text).strip()
    if not raw:
        raise InputError("empty --input", hint="give a camera index, /dev/videoN, csi://N, rtsp://..., or a file")
    if raw.isdigit():
        return SourceURI("camera", f"/dev/video{int(raw)}", raw)
    scheme, sep, rest = raw.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme == "v4l2":
        return _camera(rest or "/dev/video0", raw)
    if scheme == "csi":
        if not rest.isdigit():
            raise InputError(f"bad CSI camera {raw!r}", hint="write csi://0 (the sensor id)")
        return SourceURI("csi", rest, raw)
    if scheme in NETWORK_SCHEMES:
        if not urlsplit(raw).hostname and scheme != "udp":
            raise InputError(f"no host in {redact(raw)!r}", hint=f"write {scheme}://host:port/path")
        refuse_unsupported(scheme, raw, output=False)
        return SourceURI("network", raw, raw)
    if scheme == "synthetic":
        return _synthetic(raw, rest)
    if sep and scheme != "file":
        raise InputError(f"unknown source scheme {scheme + '://'!r} in {redact(raw)!r}",
                         hint=f"use v4l2://, csi://, file://, synthetic:// or one of {', '.join(s + '://' for s in NETWORK_SCHEMES)}")
    path = Path(unquote(rest) if scheme == "file" else raw).expanduser()  # file:///a%20b.mkv is "/a b.mkv"
    if str(path).startswith("/dev/"):  # /dev/videoN, or a stable /dev/v4l/by-id/... link
        return _camera(str(path), raw)
    if path.is_dir():
        return SourceURI("images", str(path), raw)
    if not path.is_file():
        raise InputError("video file not found", path, hint="check the path, or pass --camera N / --demo")
    if path.stat().st_size == 0:
        raise InputError("the video file is empty (0 bytes)", path, hint="was the recording interrupted before its first frame?")
    return SourceURI("file", str(path), raw)


def _synthetic(raw: str, rest: str) -> SourceURI:
    """``synthetic://demo?fps=30`` or ``synthetic:///path/clip.mp4?fps=60``: a clip as a live camera."""
    location, _, query = rest.partition("?")
    params = parse_qs(query)
    try:
        fps = float(params.get("fps", ["30"])[0])
    except ValueError:
        fps = -1.0
    if not 0 < fps <= 1000:
        raise InputError(f"bad fps in {raw!r}", hint="write synthetic://demo?fps=30")
    path = DEMO_CLIP if location in ("", "demo") else Path(location).expanduser()
    if not path.is_file():
        raise InputError("clip for the synthetic source not found", path, hint="write synthetic://demo?fps=30")
    return SourceURI("synthetic", str(path), raw, fps=fps)
