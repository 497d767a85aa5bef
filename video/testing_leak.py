"""A deliberate leak, for tests only: the negative control of the soak test (tests/video/test_video_soak.py).

``DEBLUR_TEST_LEAK`` is read here and nowhere else, once per process. Unset (always, outside that
test) ``per_frame()`` does nothing. Set, each output frame keeps what it names, comma-separated:

    rss:<N>{KiB|MiB}[-per-frame]   N bytes of heap that are written to (so they count in VmRSS) and kept
    fd[:<N>][-per-frame]           N (default 1) descriptors of /dev/null opened and never closed

for example ``DEBLUR_TEST_LEAK=rss:1MiB-per-frame,fd``. A value it cannot read raises ValueError, so a
mistyped switch fails the run instead of quietly leaking nothing.
"""
from __future__ import annotations

import os
import re

ENV = "DEBLUR_TEST_LEAK"
_ITEM = re.compile(r"^(?:rss:(?P<n>\d+)(?P<unit>KiB|MiB)|fd(?::(?P<fds>\d+))?)(?:-per-frame)?$")
_UNITS = {"KiB": 1024, "MiB": 1024 * 1024}

_plan: tuple[int, int] | None = None  # (bytes, descriptors) per frame, once read
_kept: list[object] = []  # what the leak holds on to, for the life of the process


def parse(text: str) -> tuple[int, int]:
    """(bytes, descriptors) to leak per frame for a ``DEBLUR_TEST_LEAK`` value; ``""`` is (0, 0)."""
    rss = fds = 0
    for item in filter(None, (s.strip() for s in text.split(","))):
        m = _ITEM.match(item)
        if not m:
            raise ValueError(f"{ENV}={text!r}: cannot read {item!r}; write e.g. rss:1MiB-per-frame, fd or fd:2")
        if m["n"]:
            rss += int(m["n"]) * _UNITS[m["unit"]]
        else:
            fds += int(m["fds"] or 1)
    return rss, fds


def per_frame() -> None:
    """Called once per output frame by the pipeline: leaks what ``DEBLUR_TEST_LEAK`` asks for, else nothing."""
    global _plan
    if _plan is None:
        _plan = parse(os.environ.get(ENV, ""))
    rss, fds = _plan
    if rss:
        _kept.append(b"\x5a" * rss)  # filled, not calloc'ed zero pages: resident at once
    for _ in range(fds):
        _kept.append(os.open(os.devnull, os.O_RDONLY))
