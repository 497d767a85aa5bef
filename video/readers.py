"""Frame readers, one per kind of source, each with deadlines on open and read.

Every reader has ``read() -> (bgr_frame, stream_time_s | None) | None`` (None: end of stream),
``close()``, ``describe`` (the pipeline in use, printed at start), ``width``/``height``/``fps``/
``codec`` (what the source really delivers, read back) and ``skipped`` (frames not delivered:
undecodable or lost). Files also account for every frame they announce (``announced``,
``undecodable``, ``lost`` by reason, set at their end: decoded + undecodable + lost == announced). A read
past its deadline raises ``StreamTimeout``; a broken connection ``StreamLost``; a device that is
gone ``DeviceGone`` (not retried); a file that is not a video ``InputError``.

Files and network streams go through PyAV (FFmpeg with an interrupt deadline on every blocking
call); V4L2 cameras through OpenCV's V4L2 backend (FOURCC, size and rate requested, then read
back); CSI cameras through a GStreamer pipeline in OpenCV, where OpenCV was built with GStreamer.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from deblur.runtime.errors import DeviceGone, DeviceLost, InputError
from deblur.runtime.images import decode_image
from deblur.video.av_errors import describe
from deblur.video.uri import SourceURI, redact

log = logging.getLogger("deblur")
Item = tuple[np.ndarray, float | None]
MAX_BAD_IN_A_ROW = 200  # demux/decode failures in a row after which a file is treated as ended
NO_PICTURE = "decoded to no picture (damaged references)"  # a packet that decoded without error but gave no frame
MISSING = "missing from the file (truncated or damaged)"


class StreamTimeout(Exception):
    """No answer (open) or no frame (read) within the deadline."""


class StreamLost(Exception):
    """The connection broke or the stream ended where it should not (a live source)."""


@dataclass(frozen=True)
class ReaderOptions:
    """What the user asked of the source; cameras get it requested, others resized to it."""

    width: int | None = None
    height: int | None = None
    rate: float | None = None
    codec: str | None = None  # camera FOURCC request: mjpg, yuyv, h264
    open_timeout: float = 5.0
    read_timeout: float = 2.0


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise InputError("reading video files and network streams needs PyAV",
                         hint="pip install 'deblur-edge[video]' (or pip install av)") from None
    return av


def _not_empty(path: str, what: str = "file") -> None:
    """A zero-byte file is an interrupted write or copy; FFmpeg would only say "invalid data"."""
    p = Path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"the {what} is empty (0 bytes)", path,
                         hint="was the recording or copy interrupted before its first frame? pass a complete file")


def _size_of(opts: ReaderOptions, w: int, h: int) -> tuple[int, int]:
    """The output size: as delivered, or --input-width/--input-height (one given keeps the aspect)."""
    if opts.width and opts.height:
        return opts.width, opts.height
    if opts.width:
        return opts.width, max(1, round(h * opts.width / w))
    if opts.height:
        return max(1, round(w * opts.height / h)), opts.height
    return w, h


class PyAVReader:
    """Files and network streams (RTSP over TCP, HTTP, UDP, ...) through PyAV/FFmpeg."""

    def __init__(self, uri: SourceURI, opts: ReaderOptions):
        av = _av()
        self.uri, self.live = uri, uri.live
        self.packets = self.decoded = self.decode_errors = self.demux_errors = 0
        self.announced: int | None = None  # set when a file ends
        self.lost: dict[str, int] = {}  # frames announced but never decoded nor undecodable, by reason
        self._ended_early = ""  # why the file was not read to its end (the reason for the frames left)
        if not uri.live:
            _not_empty(uri.location)
        options: dict[str, str] = {}
        if uri.location.lower().startswith(("rtsp://", "rtsps://")):
            options = {"rtsp_transport": "tcp", "fflags": "nobuffer", "flags": "low_delay", "max_delay": "500000"}
        elif uri.live:
            options = {"fflags": "nobuffer", "flags": "low_delay"}
        t0 = time.monotonic()
        try:
            self.container = av.open(uri.location, options=options, timeout=(opts.open_timeout, opts.read_timeout))
        except av.FFmpegError as e:
            waited = time.monotonic() - t0
            why = redact(describe(e))
            if not self.live:
                raise InputError(f"cannot open as video ({why})", uri.location, hint="check that it is a video file FFmpeg can read") from None
            if waited >= opts.open_timeout * 0.9:
                raise StreamTimeout(f"no answer within {opts.open_timeout:g} s ({why})") from None
            raise StreamLost(why) from None
        except UnicodeDecodeError:  # fuzz: PyAV decodes the container's metadata as UTF-8
            raise InputError("cannot open as video (its metadata is not UTF-8 text)", uri.location,
                             hint="check that it is a video file FFmpeg can read") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError("has no video stream", uri.location if not self.live else str(uri), hint="pass a video file or stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "SLICE" if self.live else "AUTO"  # frame threads add frames of latency
        cc = self.stream.codec_context
        if cc is None:  # fuzz: a stream of a codec FFmpeg does not know has no decoder context
            self.container.close()
            raise InputError("has a video stream in a codec FFmpeg cannot decode", uri.location, hint="convert it to H.264")
        self.codec = cc.name
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.width, self.height = _size_of(opts, cc.width or 1, cc.height or 1)
        self._resize = (self.width, self.height) != (cc.width, cc.height)
        self._frames = self._decode()
        self._last_time: float | None = None
        self._ended = False
        opt_text = ",".join(f"{k}={v}" for k, v in options.items())
        self.describe = (f"PyAV {av.__version__} / FFmpeg: {self.container.format.name} demuxer"
                         f"{' (' + opt_text + ')' if opt_text else ''} -> {self.codec} decoder -> "
                         f"{'swscale resize ' + f'{self.width}x{self.height} ' if self._resize else ''}bgr24; "
                         f"deadlines: open {opts.open_timeout:g} s, read {opts.read_timeout:g} s")

    @property
    def undecodable(self) -> int:
        """Packets the decoder rejected, and damaged container elements the demuxer skipped."""
        return self.decode_errors + self.demux_errors

    @property
    def skipped(self) -> int:
        """Frames not delivered: undecodable, or (once a file has ended) lost."""
        return self.undecodable + sum(self.lost.values())

    def _decode(self) -> Iterator[Any]:
        av = _av()
        bad = 0
        while True:
            try:
                for packet in self.container.demux(self.stream):
                    real = bool(packet.size)  # the last one per stream is an empty packet: flush the decoder
                    self.packets += real
                    try:
                        frames = packet.decode()
                    except (av.InvalidDataError, av.error.UndefinedError, av.error.BugError) as e:
                        self.decode_errors += real
                        bad += 1
                        log.debug("undecodable packet skipped: %s", describe(e))
                        if bad > MAX_BAD_IN_A_ROW:
                            self._ended_early = f"left unread (gave up after {MAX_BAD_IN_A_ROW} undecodable packets in a row)"
                            return
                        continue
                    bad = 0
                    for frame in frames:
                        self.decoded += 1
                        yield frame
                return  # end of stream
            except av.ExitError as e:  # the interrupt callback: the read deadline passed
                raise StreamTimeout(redact(describe(e))) from None
            except (av.InvalidDataError, av.error.UndefinedError) as e:  # corrupt container bytes
                if self.live:
                    raise StreamLost(redact(describe(e))) from None
                self.demux_errors += 1
                bad += 1
                if bad > MAX_BAD_IN_A_ROW:
                    self._ended_early = f"left unread (gave up after {MAX_BAD_IN_A_ROW} damaged elements in a row)"
                    return
            except av.FFmpegError as e:
                if self.live:
                    raise StreamLost(redact(describe(e))) from None
                log.warning("%s: read error, treating as end of file (%s)", self.uri, redact(describe(e)))
                self._ended_early = f"left unread (read error: {redact(describe(e))})"
                return

    def read(self) -> Item | None:
        frame = next(self._frames, None)
        if frame is None:
            if not self.live and not self._ended:
                self._ended = True
                self._check_complete()
            return None
        if frame.time is not None:
            self._last_time = float(frame.time)
        if self._resize:
            img = frame.reformat(self.width, self.height, format="bgr24").to_ndarray()
        else:
            img = frame.to_ndarray(format="bgr24")
        # live streams: no stream time (it restarts with every reconnect); the pipeline uses the capture time
        return img, (float(frame.time) if frame.time is not None and not self.live else None)

    def _check_complete(self) -> None:
        """Account for every frame the file announces: decoded + undecodable + lost == announced.

        The announced count is the container's index (``stream.frames``: MP4, AVI) where it has one;
        otherwise the packets that came plus the tail a file that ends well before its declared
        duration lost (truncated, or a damaged element made the demuxer stop). A packet that
        decoded without error but gave no picture (its reference frames were damaged) is lost too."""
        no_picture = max(0, self.packets - self.decode_errors - self.decoded)
        if no_picture:
            self.lost[NO_PICTURE] = no_picture
        delivered = self.decoded + self.undecodable + no_picture
        indexed = int(self.stream.frames or 0)
        missing = indexed - delivered if indexed else self._missing_tail()
        if missing > 0:
            self.lost[self._ended_early or MISSING] = missing
        elif indexed and missing < 0:  # more came than the index lists (a wrong index): count what came
            log.debug("%s: the index lists %d frames, %d came", self.uri, indexed, delivered)
        self.announced = delivered + max(0, missing)
        if self.lost:
            reasons = ", ".join(f"{n} {why}" for why, n in self.lost.items())
            log.warning("%s: %d frames announced: %d decoded, %d undecodable, %d lost: %s", self.uri, self.announced,
                        self.decoded, self.undecodable, sum(self.lost.values()), reasons)

    def _missing_tail(self) -> int:
        """Frames a file without an index is short of its declared duration (0 when it is not)."""
        declared = None
        if self.stream.duration is not None and self.stream.time_base is not None:
            declared = float(self.stream.duration * self.stream.time_base)
        elif self.container.duration:
            declared = self.container.duration / 1e6
        if not declared or self._last_time is None or not self.fps:
            return 0
        start = float(self.stream.start_time * self.stream.time_base) if self.stream.start_time is not None else 0.0
        missing = int((declared + start - self._last_time) * self.fps) - 1
        if missing < max(2, round(self.fps / 2)):
            return 0
        log.warning("%s: the file ends at %.2f s but declares %.2f s: about %d frames are missing (truncated or "
                    "damaged); counted as lost", self.uri, self._last_time - start, declared, missing)
        return missing

    def close(self) -> None:
        self.container.close()


def _deadlines(opts: ReaderOptions) -> list[int]:
    """OpenCV's open/read timeouts (V4L2 and GStreamer backends honour them; a watchdog in the
    source reports a read that blocks past its deadline anyway)."""
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(opts.open_timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(opts.read_timeout * 1000)]


def _fourcc_text(value: float) -> str:
    v = int(value)
    return "".join(chr((v >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00") or "?"


class CvCaptureReader:
    """V4L2 cameras (OpenCV's V4L2 backend) and CSI cameras (a GStreamer pipeline in OpenCV)."""

    def __init__(self, uri: SourceURI, opts: ReaderOptions):
        self.uri, self.skipped, self.opts = uri, 0, opts
        if uri.kind == "csi":
            if "GStreamer:                   YES" not in cv2.getBuildInformation():
                raise InputError("csi:// needs OpenCV built with GStreamer, and this OpenCV has none (the pip wheels do not)",
                                 hint="on Jetson use JetPack's OpenCV (apt install python3-opencv) in the environment")
            self.pipeline = csi_pipeline(int(uri.location), opts)
            self.cap = cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER, _deadlines(opts))
            self.describe = f"OpenCV GStreamer: {self.pipeline}"
        else:
            if not Path(uri.location).exists():
                raise DeviceGone(f"no camera at {uri.location}", hint="list cameras with v4l2-ctl --list-devices, or pass --input FILE / --demo")
            self.cap = cv2.VideoCapture(uri.location, cv2.CAP_V4L2, _deadlines(opts))
            self.pipeline = ""
        if not self.cap.isOpened():
            self.cap.release()
            raise StreamLost(f"OpenCV cannot open {uri.location if uri.kind != 'csi' else self.pipeline}")
        if uri.kind != "csi":
            self._request(opts)
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS)) or None
        self.codec = _fourcc_text(self.cap.get(cv2.CAP_PROP_FOURCC)).lower()

    def _request(self, opts: ReaderOptions) -> None:
        """FOURCC before size (UVC cameras give 720p30 only in MJPG), then read everything back."""
        asked = []
        if opts.codec:
            code = {"mjpg": "MJPG", "mjpeg": "MJPG", "yuyv": "YUYV", "h264": "H264"}[opts.codec.lower()]
            self.cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*code))
            asked.append(code)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, opts.width), (cv2.CAP_PROP_FRAME_HEIGHT, opts.height),
                            (cv2.CAP_PROP_FPS, opts.rate)):
            if value:
                self.cap.set(prop, float(value))
        buffered = self.cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps, fourcc = self.cap.get(cv2.CAP_PROP_FPS), _fourcc_text(self.cap.get(cv2.CAP_PROP_FOURCC))
        want = f"{opts.width or '-'}x{opts.height or '-'} @ {opts.rate or '-'} fps {'/'.join(asked) or '-'}"
        self.describe = (f"OpenCV V4L2: {self.uri.location}, asked {want}, got {w}x{h} @ {fps:g} fps {fourcc}, "
                         f"driver buffer {'1' if buffered else 'default (CAP_PROP_BUFFERSIZE refused)'}; "
                         f"deadlines: open {opts.open_timeout:g} s, read {opts.read_timeout:g} s")
        if (opts.width and w != opts.width) or (opts.height and h != opts.height) or (opts.rate and abs(fps - opts.rate) > 0.5):
            log.warning("camera %s gives %dx%d @ %g fps, not the requested %s", self.uri.location, w, h, fps, want)

    def read(self) -> Item | None:
        t0 = time.monotonic()
        ok, img = self.cap.read()
        if ok and img is not None:
            return img, None
        if self.uri.kind != "csi" and not Path(self.uri.location).exists():
            raise DeviceLost(f"camera {self.uri.location} is gone (unplugged?)", hint="plug it in and start again")
        if time.monotonic() - t0 >= self.opts.read_timeout * 0.9:
            raise StreamTimeout(f"no frame within {self.opts.read_timeout:g} s")
        raise StreamLost("the camera returned no frame")

    def close(self) -> None:
        self.cap.release()


def csi_pipeline(sensor: int, opts: ReaderOptions) -> str:
    """jetson-utils' CSI pipeline: NVMM NV12 from the ISP, converted to BGR for OpenCV, newest buffer only."""
    w, h, r = opts.width or 1280, opts.height or 720, int(opts.rate or 30)
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={w},height={h},framerate={r}/1,format=NV12 "
            "! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR "
            "! appsink drop=true max-buffers=1 sync=false")


class ImageFolderReader:
    """Images of a folder in name order, one frame each; unreadable files are skipped and counted."""

    def __init__(self, uri: SourceURI, opts: ReaderOptions):
        from deblur.runtime.images import list_images

        self.uri, self.skipped = uri, 0
        self.announced: int | None = None  # the folder's image count, once read to the end
        self.paths = list_images(uri.location)
        self._next = 0
        if not self.paths:
            raise InputError("no images in the folder", uri.location, hint="put .png/.jpg files there, or pass a video")
        self.fps = float(opts.rate or 10.0)
        self.opts = opts
        first = self._load_next()
        if first is None:
            raise InputError("none of the images in the folder can be read", uri.location, hint="check the files")
        self._pending: np.ndarray | None = first
        self.width, self.height = first.shape[1], first.shape[0]
        self.codec = "images"
        self.describe = f"image folder {uri.location}: {len(self.paths)} files at {self.fps:g} fps (--input-rate)"
        self._index = 0

    def _load_next(self) -> np.ndarray | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            try:
                img = decode_image(np.fromfile(str(path), dtype=np.uint8))
            except OSError:
                img = None
            if img is None:
                self.skipped += 1
                empty = path.is_file() and path.stat().st_size == 0
                log.warning("%s: %s; skipped", path, "the image is empty (0 bytes)" if empty else "cannot read the image")
                continue
            w, h = _size_of(self.opts, img.shape[1], img.shape[0])
            return img if (w, h) == (img.shape[1], img.shape[0]) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        return None

    def read(self) -> Item | None:
        img, self._pending = (self._pending, None) if self._pending is not None else (self._load_next(), None)
        if img is None:
            self.announced = len(self.paths)  # every image was read, or skipped as unreadable
            return None
        t = self._index / self.fps
        self._index += 1
        return img, t

    def close(self) -> None:
        self.paths = []


class SyntheticReader:
    """A clip replayed in a loop as a live camera at a fixed rate: frames are produced on schedule
    whether or not anyone keeps up, as a real sensor does (latency tests and benchmarks)."""

    def __init__(self, uri: SourceURI, opts: ReaderOptions):
        _not_empty(uri.location, "clip")
        cap = cv2.VideoCapture(uri.location)
        frames = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            w, h = _size_of(opts, img.shape[1], img.shape[0])
            frames.append(img if (w, h) == (img.shape[1], img.shape[0]) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        cap.release()
        if not frames:
            raise InputError("cannot decode the clip for the synthetic source", uri.location, hint="pass a video file OpenCV reads")
        self.uri, self.frames, self.skipped, self.codec = uri, frames, 0, "synthetic"
        self.fps = float(uri.fps or 30.0)
        self.height, self.width = frames[0].shape[:2]
        self._t0: float | None = None
        self._k = 0
        self.describe = f"synthetic live source: {len(frames)} frames of {Path(uri.location).name} looped at {self.fps:g} fps"

    def read(self) -> Item | None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._k / self.fps
        if due > now:
            time.sleep(due - now)
        img = self.frames[self._k % len(self.frames)]
        self._k += 1
        return img, None

    def close(self) -> None:
        self.frames = []


def open_reader(uri: SourceURI, opts: ReaderOptions) -> Any:
    """The reader for a source kind (lazy: PyAV is imported only for files and streams)."""
    if uri.kind in ("camera", "csi"):
        return CvCaptureReader(uri, opts)
    if uri.kind == "images":
        return ImageFolderReader(uri, opts)
    if uri.kind == "synthetic":
        return SyntheticReader(uri, opts)
    return PyAVReader(uri, opts)
