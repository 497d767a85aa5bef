"""PyAV/FFmpeg and OS errors as a short phrase in words, never a raw errno.

PyAV's ``str(e)`` is ``[Errno 1094995529] Invalid data found when processing input: 'name'``:
the number is FFmpeg's four-letter tag or a negated errno, and means nothing to a user. Messages
about inputs and outputs say ``describe(e)`` instead ("invalid data", "timed out",
"connection refused"); the caller names the file or stream, so no path or URL is included.
"""
from __future__ import annotations

import errno
import os
import re

# PyAV's exception class for each FFmpeg-specific AVERROR (the tag numbers are not in the errno module)
_BY_CLASS = {
    "InvalidDataError": "invalid data",
    "ExitError": "interrupted at a deadline",
    "EOFError": "end of file",
    "BugError": "an FFmpeg internal error",
    "UnknownError": "an unknown FFmpeg error",
    "UndefinedError": "an unknown FFmpeg error",
    "ExternalError": "an error in an external library",
    "DecoderNotFoundError": "no decoder for this codec in this FFmpeg",
    "EncoderNotFoundError": "no encoder for this codec in this FFmpeg",
    "DemuxerNotFoundError": "a container format this FFmpeg cannot read",
    "MuxerNotFoundError": "a container format this FFmpeg cannot write",
    "ProtocolNotFoundError": "a protocol this FFmpeg does not support",
    "BSFNotFoundError": "a bitstream filter this FFmpeg lacks",
    "FilterNotFoundError": "a filter this FFmpeg lacks",
    "OptionNotFoundError": "an option this FFmpeg does not know",
    "PatchWelcomeError": "a feature FFmpeg does not implement",
    "ExperimentalError": "an experimental FFmpeg feature that is not enabled",
    "InputChangedError": "the input changed mid-stream",
    "OutputChangedError": "the output changed mid-stream",
    "BufferTooSmallError": "a buffer too small",
    "HTTPBadRequestError": "HTTP 400 bad request",
    "HTTPUnauthorizedError": "HTTP 401 unauthorized (check the user and password)",
    "HTTPForbiddenError": "HTTP 403 forbidden",
    "HTTPNotFoundError": "HTTP 404 not found",
    "HTTPTooManyRequestsError": "HTTP 429 too many requests",
    "HTTPOtherClientError": "an HTTP client error (4xx)",
    "HTTPServerError": "an HTTP server error (5xx)",
}
# the system errors a camera, file or stream meets most; others fall back to os.strerror
_BY_ERRNO = {
    errno.ETIMEDOUT: "timed out",
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by the peer",
    errno.ECONNABORTED: "connection aborted",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ENETDOWN: "network is down",
    errno.EPIPE: "broken pipe (the other end closed)",
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EIO: "input/output error",
    errno.ENODEV: "no such device",
    errno.ENXIO: "no such device",
    errno.EBUSY: "device busy",
    errno.ENOSPC: "no space left on the device",
    errno.ENOMEM: "out of memory",
    errno.EAGAIN: "temporarily unavailable",
    errno.EINVAL: "invalid argument",
    errno.EINTR: "interrupted",
    errno.EISDIR: "is a folder",
    errno.EADDRINUSE: "address already in use",
    errno.ENOSYS: "not supported",
}
_BUILTIN = ((TimeoutError, "timed out"), (ConnectionRefusedError, "connection refused"),
            (ConnectionResetError, "connection reset by the peer"), (BrokenPipeError, "broken pipe (the other end closed)"),
            (FileNotFoundError, "no such file"), (PermissionError, "permission denied"))
_ERRNO_PREFIX = re.compile(r"\[Errno\s+-?\d+\]\s*")
_NUMBER_AFTER_WORD = re.compile(r"\b(errno|error|err|code|returned|ret)\s*[:=]?\s*\(?(-?\d+)\)?", re.IGNORECASE)
_FILENAME_TAIL = re.compile(r":\s*'[^']*'\s*$")


def _errno_phrase(number: int) -> str | None:
    n = abs(number)
    if n in _BY_ERRNO:
        return _BY_ERRNO[n]
    if n < 4096:  # a system errno (FFmpeg's own codes are four-letter tags, far larger)
        text = os.strerror(n)
        if not text.lower().startswith("unknown error"):
            return text[:1].lower() + text[1:]
    return None


def _words(text: str) -> str:
    """Scrub numbers out of free text: ``[Errno N] `` prefixes, ``error -110``, ``errno 111``."""
    text = _FILENAME_TAIL.sub("", _ERRNO_PREFIX.sub("", text.strip()))

    def repl(m: re.Match[str]) -> str:
        phrase = _errno_phrase(int(m.group(2)))
        return phrase if phrase else m.group(0)
    text = _NUMBER_AFTER_WORD.sub(repl, text).strip()
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text  # "Connection refused", not "HTTP"


def describe(exc: BaseException) -> str:
    """What went wrong, in a few lower-case words: 'invalid data', 'timed out', 'connection refused'."""
    for cls in type(exc).__mro__:  # PyAV's classes first (their tags are not system errnos)
        if cls.__module__.startswith("av") and cls.__name__ in _BY_CLASS:
            return _BY_CLASS[cls.__name__]
    number = getattr(exc, "errno", None)
    if isinstance(number, int) and (phrase := _errno_phrase(number)):
        return phrase
    for cls, phrase in _BUILTIN:
        if isinstance(exc, cls) and not str(exc):
            return phrase
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and strerror.strip():
        return _words(strerror)
    text = _words(str(exc))
    return text or type(exc).__name__
