"""Crash-safe recording: MKV or fragmented MP4 through PyAV, flushed about once a second.

A plain MP4 keeps its index (``moov``) for the end, so a killed recorder leaves an unplayable
file. Here MKV closes a cluster every second
(``cluster_time_limit``) and MP4 is fragmented (``frag_keyframe+empty_moov+default_base_moof``,
one fragment a second, never ``faststart``), packets are flushed to the OS as they are muxed,
and the encoder puts a keyframe every second with no look-ahead: a SIGKILL loses about the last
second. Frames carry their own time stamps (ms), so a live recording with dropped frames plays
at the real speed.

Codecs: H.264 (libx264 through PyAV; OpenCV's wheels carry no H.264 encoder), MJPG and FFV1
(lossless). Without PyAV, MJPG and FFV1 go through OpenCV's FFmpeg writer, which flushes only
when it closes. Network outputs (``rtsp://``, ``rtmp://``, ``udp://``; ``srt://`` where FFmpeg has
it) use the same path with the matching muxer, opened at once rather than at the first frame; the
CLI runs them in a child process (``deblur.video.netout``), because FFmpeg's RTSP/RTMP handshakes
block with the GIL held.

H.264 is always 4:2:0 (``yuv420p``), the only chroma format every player and hardware decoder
takes; 4:2:0 needs even sizes, so an odd width or height is padded by one column or row that
repeats the edge (logged once), rather than silently becoming 4:4:4.
"""
from __future__ import annotations

import errno
import importlib.util
import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from deblur.runtime.errors import InputError, OutputFailedError
from deblur.runtime.fileio import can_create, disk_full
from deblur.video.av_errors import describe
from deblur.video.uri import redact, refuse_unsupported

log = logging.getLogger("deblur")
CODECS = {"h264": "libx264", "mjpg": "mjpeg", "ffv1": "ffv1"}
CONTAINERS = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov"}
NETWORK_MUXERS = {"rtsp": "rtsp", "rtmp": "flv", "udp": "mpegts", "srt": "mpegts"}
FLUSH_S = 1.0


def _pix_fmt(codec: str, w: int, h: int) -> str:
    even = w % 2 == 0 and h % 2 == 0
    if codec == "ffv1":
        return "bgr0"  # lossless BGR: what went in comes out
    if codec == "mjpg":
        return "yuvj420p" if even else "yuvj444p"  # any JPEG decoder takes 4:4:4
    return "yuv420p"  # H.264 4:4:4 (High 4:4:4 profile) is refused by many players: odd sizes are padded


def coded_size(codec: str, w: int, h: int) -> tuple[int, int]:
    """The size the encoder gets: H.264 4:2:0 needs even sides, so odd ones grow by one pixel."""
    return (w + w % 2, h + h % 2) if codec == "h264" else (w, h)


def fit(bgr: np.ndarray, size: tuple[int, int], warned: bool) -> tuple[np.ndarray, bool]:
    """``bgr`` as 3-channel ``size`` (w, h): grey expanded, another size resized (one warning, ``warned``
    then True); returns (frame, warned)."""
    if (bgr.shape[1], bgr.shape[0]) != size:
        if not warned:
            log.warning("frame size changed to %dx%d; recording keeps %dx%d (resized)", bgr.shape[1], bgr.shape[0], *size)
            warned = True
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    return bgr, warned


def _muxer(target: str, timeout: float = 5.0) -> tuple[str, dict[str, str]]:
    scheme = target.partition("://")[0].lower() if "://" in target else ""
    if scheme:
        if scheme not in NETWORK_MUXERS:
            raise InputError(f"cannot stream to {redact(target)!r}", hint=f"use {', '.join(s + '://' for s in NETWORK_MUXERS)}")
        refuse_unsupported(scheme, target, output=True, schemes=tuple(NETWORK_MUXERS))
        # RTSP: a deadline on every socket call of the handshake and of each write (microseconds)
        opts = {"rtsp_transport": "tcp", "timeout": str(int(timeout * 1e6))} if scheme == "rtsp" else {}
        return NETWORK_MUXERS[scheme], opts
    suffix = Path(target).suffix.lower()
    if suffix not in CONTAINERS:
        raise InputError(f"cannot record to a {suffix or 'suffix-less'} file", target,
                         hint="use .mkv (crash-safe, the default) or .mp4 (fragmented)")
    if suffix == ".mkv":
        return "matroska", {"cluster_time_limit": str(int(FLUSH_S * 1000)), "flush_packets": "1"}
    return CONTAINERS[suffix], {"movflags": "frag_keyframe+empty_moov+default_base_moof",
                                "frag_duration": str(int(FLUSH_S * 1e6)), "flush_packets": "1"}


def check_target(target: str | Path, codec: str) -> None:
    """Fail now, before a model loads, on what ``Recorder`` would refuse at the first frame:
    an unknown suffix or scheme, a codec the container cannot hold, a folder that cannot be written."""
    target = str(target)
    if codec not in CODECS:
        raise InputError(f"unknown output codec {codec!r}", hint=f"choose one of {', '.join(CODECS)}")
    fmt, _ = _muxer(target)
    parent = Path(target).parent
    if "://" not in target and not parent.is_dir():  # a typo must not create folders anywhere
        raise InputError(f"the folder for the recording does not exist ({parent})", target, hint=f"create it first (mkdir -p {parent})")
    if "://" not in target and not can_create(target):
        raise InputError(f"cannot write the recording into {Path(target).parent}", target,
                         hint="choose a writable folder for --output-save")
    if importlib.util.find_spec("av") is None:
        if "://" in target or codec == "h264" or not target.endswith((".mkv", ".avi")):
            raise InputError(f"recording {codec} to {Path(target).suffix or 'a stream'} needs PyAV",
                             hint="pip install 'deblur-edge[video]', or use --output-codec mjpg/ffv1 with a .mkv file")
        return
    import io

    import av

    with av.open(io.BytesIO(), "w", format=fmt if fmt != "rtsp" else "mpegts") as probe:
        try:
            probe.add_stream(CODECS[codec], rate=30)
        except ValueError:
            raise InputError(f"a {Path(target).suffix or fmt} file cannot hold {codec}", redact(target),
                             hint="use .mkv, which takes every --output-codec") from None


class Recorder:
    """``write(bgr, t_s)`` frames of one size (others are resized, with one warning); ``close()``."""

    def __init__(self, target: str | Path, size: tuple[int, int], fps: float, codec: str = "h264", timeout: float = 5.0):
        """``timeout``: network outputs only, FFmpeg's deadline on each socket call (RTSP)."""
        if codec not in CODECS:
            raise InputError(f"unknown output codec {codec!r}", hint=f"choose one of {', '.join(CODECS)}")
        self.target, self.size, self.codec = str(target), (int(size[0]), int(size[1])), codec
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.frames = 0
        self._last_pts = -1
        self._warned_size = False
        self._pad = (0, 0)
        fmt, options = _muxer(self.target, timeout)
        network = "://" in self.target
        if not network:
            try:
                Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InputError(f"cannot create the folder for the recording ({e.strerror})", self.target,
                                 hint="choose a writable folder for --output-save") from None
        if importlib.util.find_spec("av") is None:
            self._open_opencv()
            return
        import av

        self._cv = None
        try:
            self.container = av.open(self.target, "w", format=fmt, options=options)
        except av.FFmpegError as e:
            raise InputError(f"cannot open for writing ({redact(describe(e))})", redact(self.target),
                             hint="check the folder is writable (or that the server accepts streams)") from None
        rate = Fraction(self.fps).limit_denominator(1001)
        try:
            self.stream = self.container.add_stream(CODECS[codec], rate=rate)
        except ValueError as e:  # the muxer has no tag for the codec, e.g. FFV1 in .mov
            self.container.close()
            raise InputError(f"cannot record {codec} in this container ({e})", redact(self.target),
                             hint="use .mkv, which takes every --output-codec") from None
        w, h = coded_size(codec, *self.size)
        self._pad = (w - self.size[0], h - self.size[1])
        if any(self._pad):
            log.info("recording %s: %dx%d padded to %dx%d (H.264 4:2:0 needs even sizes; the edge %s repeated)",
                     redact(self.target), *self.size, w, h, "column and row" if all(self._pad) else
                     "column" if self._pad[0] else "row")
        self.stream.width, self.stream.height = w, h
        self.stream.pix_fmt = _pix_fmt(codec, w, h)
        self.stream.codec_context.time_base = Fraction(1, 1000)
        gop = max(1, round(self.fps * FLUSH_S))
        if codec == "h264":
            self.stream.codec_context.gop_size = gop
            self.stream.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "20", "bf": "0"}
        elif codec == "mjpg":
            self.stream.options = {"q:v": "3"}
            self.stream.codec_context.qmin = 1
            self.stream.codec_context.qmax = 4
        else:
            self.stream.codec_context.gop_size = 1
            self.stream.options = {"level": "3", "slicecrc": "1"}
        self.describe = (f"PyAV {av.__version__}: {CODECS[codec]} {self.stream.pix_fmt} {w}x{h} @ {self.fps:g} fps, "
                         f"{fmt} ({', '.join(f'{k}={v}' for k, v in options.items()) or 'defaults'}) -> {redact(self.target)}")
        if network:  # connect and handshake now, not inside the first write
            try:
                self.container.start_encoding()
            except av.FFmpegError as e:
                self._abort()
                why = describe(e)
                if isinstance(e, (av.EOFError, av.InvalidDataError)):  # the handshake's answer was cut or not RTSP/RTMP
                    why = f"the server closed the connection without a valid {fmt.replace('flv', 'rtmp').upper()} answer"
                raise InputError(f"cannot stream there ({redact(why)})", redact(self.target),
                                 hint="check that a server at that address accepts published streams") from None

    def _abort(self) -> None:
        """Drop an output that failed to open, without a trailer."""
        container, self.container = self.container, None
        try:
            container.close()
        except Exception as e:  # noqa: BLE001 - the open error is the one to report
            log.debug("closing the failed output: %s", describe(e))

    def _open_opencv(self) -> None:
        check_target(self.target, self.codec)
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.codec == "mjpg" else "FFV1"))
        self._cv = cv2.VideoWriter(self.target, cv2.CAP_FFMPEG, fourcc, self.fps, self.size)
        if not self._cv.isOpened():
            raise InputError("OpenCV cannot open the file for writing", self.target, hint="check the folder is writable")
        self.describe = f"OpenCV FFmpeg writer {self.codec} {self.size[0]}x{self.size[1]} @ {self.fps:g} fps -> {self.target}"
        log.warning("recording through OpenCV (PyAV not installed): the file is complete only after a clean stop")

    def write(self, bgr: np.ndarray, t_s: float | None = None) -> None:
        """Append one frame shown at ``t_s`` s (default: the next frame slot at the nominal rate)."""
        bgr, self._warned_size = fit(bgr, self.size, self._warned_size)
        self.frames += 1
        if self._cv is not None:
            self._cv.write(np.ascontiguousarray(bgr))
            return
        import av

        pts = round((t_s if t_s is not None else (self.frames - 1) / self.fps) * 1000)
        pts = max(pts, self._last_pts + 1)  # strictly increasing, whatever the clock did
        self._last_pts = pts
        if any(self._pad):
            bgr = cv2.copyMakeBorder(bgr, 0, self._pad[1], 0, self._pad[0], cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (OSError, av.FFmpegError) as e:
            raise self._failed(e, self.frames - 1) from None

    def _failed(self, e: Exception, written: int) -> Exception:
        """A file that stopped taking data: one line; the crash-safe file keeps what was flushed before."""
        if "://" in self.target:
            return e
        full = getattr(e, "errno", None) == errno.ENOSPC or disk_full(Path(self.target).parent)
        why = "disk full" if full else describe(e)
        return OutputFailedError(f"{why} writing the recording; it holds what was flushed before (of {max(0, written)} "
                                 "frames written)", self.target,
                                 hint="free space or record elsewhere" if full else "check the disk and the folder")

    def close(self) -> None:
        """Flush the encoder and write the trailer (index, duration); safe to call twice."""
        if self._cv is not None:
            self._cv.release()
            self._cv = None
            return
        if getattr(self, "container", None) is None:
            return
        import av

        try:
            try:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
            finally:
                container, self.container = self.container, None
                container.close()
        except (OSError, av.FFmpegError) as e:
            raise self._failed(e, self.frames) from None
