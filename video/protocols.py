"""Which network schemes the installed FFmpeg (the one inside the PyAV wheel) can open.

FFmpeg builds differ: the PyAV wheels, for one, carry no SRT (libsrt). A scheme the build lacks
must be refused at start with the list of those it has, not retried for ever (inputs) or turned
into an internal error at the first frame (outputs). PyAV does not expose FFmpeg's protocol list,
so it is read from libavformat itself (``avio_enum_protocols``); RTSP is a format, not a protocol,
and is looked up among PyAV's formats. Where the list cannot be read, nothing is refused.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path

# scheme -> what FFmpeg needs for it: ("format", name) for a demuxer/muxer, ("protocol", name) otherwise
_NEEDS = {"rtsp": [("format", "rtsp")], "rtsps": [("format", "rtsp"), ("protocol", "tls")],
          "rtmp": [("protocol", "rtmp")], "rtmps": [("protocol", "rtmps")], "http": [("protocol", "http")],
          "https": [("protocol", "https")], "udp": [("protocol", "udp")], "tcp": [("protocol", "tcp")],
          "srt": [("protocol", "srt")]}


@functools.lru_cache(maxsize=2)
def ffmpeg_protocols(output: bool) -> frozenset[str] | None:
    """FFmpeg's protocol names for reading (``output=False``) or writing; None if unknown here."""
    if importlib.util.find_spec("av") is None:
        return None
    import av  # loads the wheel's libavformat into this process

    try:
        with open("/proc/self/maps") as maps:
            libs = [line.split()[-1] for line in maps if "libavformat" in line and line.rstrip().endswith(tuple("0123456789"))]
        # OpenCV's wheel maps its own FFmpeg too: the one PyAV reads and writes through is the one to ask
        own = str(Path(av.__file__).resolve().parent.parent / "av.libs")
        path = next((p for p in libs if p.startswith(own)), None) or libs[0]
        lib = ctypes.CDLL(path)
        lib.avio_enum_protocols.restype = ctypes.c_char_p
        lib.avio_enum_protocols.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        opaque, names = ctypes.c_void_p(None), set()
        while (name := lib.avio_enum_protocols(ctypes.byref(opaque), int(output))) is not None:
            names.add(name.decode())
    except (OSError, StopIteration, AttributeError, IndexError):  # not Linux, or a libavformat we cannot find
        return None
    return frozenset(names)


def _has(kind: str, name: str, output: bool) -> bool | None:
    if kind == "format":
        if importlib.util.find_spec("av") is None:
            return None
        import av

        return name in av.formats_available
    names = ffmpeg_protocols(output)
    return None if names is None else name in names


def supported(scheme: str, output: bool) -> bool | None:
    """Whether this FFmpeg can read (or write) ``scheme://``; None when that cannot be told here."""
    needs = _NEEDS.get(scheme.lower())
    if needs is None:
        return None
    answers = [_has(kind, name, output) for kind, name in needs]
    return None if None in answers else all(answers)


def usable(schemes: tuple[str, ...] | list[str], output: bool) -> list[str]:
    """The ``schemes`` this FFmpeg can read (or write), in their order (all of them if that cannot be told)."""
    return [s for s in schemes if supported(s, output) is not False]
