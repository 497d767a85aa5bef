"""How much host memory a forward needs, and how much there is: what ``tile="auto"`` bounds.

A dynamic-shape model (ONNX Runtime, OpenVINO, torch on the CPU) takes any frame whole, and its
activations grow with the pixels: the bundled default needs ~90 B per pixel in ONNX Runtime, pico ~130
(an 8000x8000 frame: 5.6 and 8.5 GB). ``tile="auto"`` therefore tiles a frame whose estimated forward does
not fit the budget, and refuses, with the numbers, one whose frame-sized buffers alone do not fit.
Torch-free; Linux reads ``/proc/meminfo`` and the memory cgroup, elsewhere the budget is a fixed 4 GiB.
A ``Deblurrer`` reads the budget once, when it is made: the tile decision must not change from frame
to frame of one video (tiled and whole outputs differ slightly: tile borders inside the receptive field).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

from deblur.runtime.errors import InputError
from deblur.runtime.spec import ModelSpec

# float32 bytes per pixel of the frame-sized buffers around a forward: the float input (12), the
# tiling accumulator and its weights (16), the float output and its uint8 conversion (12 + 6), and
# the uint8 frame (3); rounded up
FRAME_BYTES_PER_PX = 52
# live activation tensors of the widest level at once (a conv's input and output, a skip, the
# runtime's scratch); calibrated against ONNX Runtime and OpenVINO peak RSS in tests/runtime/test_memory.py
LIVE_TENSORS = 5
FALLBACK_AVAILABLE = 4 << 30
ENV = "DEBLUR_MEMORY_LIMIT"  # e.g. "2GiB", "512MiB": caps the budget (robots share memory)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


def activation_bytes_per_px(spec: ModelSpec) -> int:
    """Bytes of model activations per input pixel (float32), from the spec alone."""
    if spec.family == "unet":
        per_level = [w / (spec.stem * 2**i) ** 2 for i, w in enumerate(spec.widths)]
        # the widest level, plus every skip held for the decoder
        return math.ceil(4 * (LIVE_TENSORS * max(per_level) + sum(per_level)))
    per_level = [spec.ngf * 2**i / 4**i for i in range(spec.n_downsampling + 1)]
    return math.ceil(4 * LIVE_TENSORS * max(per_level))


def parse_size(text: str) -> int:
    """``"2GiB"`` -> bytes; a clear error for anything else (no eval, no guessing)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise InputError(f"{ENV}={text!r} is not a memory size", hint="write it like 2GiB, 512MiB or 1500000000")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def available_bytes() -> int:
    """Memory the kernel could give this process now: ``MemAvailable``, or less where a cgroup (a
    container, a systemd slice) limits this process: the OOM killer goes by the cgroup, not the host."""
    host = FALLBACK_AVAILABLE
    try:
        with open("/proc/meminfo") as f:
            host = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    room = _cgroup_room()
    return host if room is None else min(host, room)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (v2 without a limit) is None


def _cgroup_room() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, else v1), None where there is no limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    root = Path("/sys/fs/cgroup")
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            pairs = [(root / path.lstrip("/"), "memory.max", "memory.current"), (root, "memory.max", "memory.current")]
        elif "memory" in controllers.split(","):  # v1
            base = root / "memory"
            pairs = [(base / path.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes"),
                     (base, "memory.limit_in_bytes", "memory.usage_in_bytes")]
        else:
            continue
        for folder, limit_name, usage_name in pairs:
            limit, usage = _read_int(folder / limit_name), _read_int(folder / usage_name)
            if limit is not None and usage is not None and limit < 1 << 60:  # v1 says "no limit" as ~2**63
                return max(0, limit - usage)
    return None


def budget() -> int:
    """Bytes one call may use: half of what is available (the rest is the robot's), capped by ``$DEBLUR_MEMORY_LIMIT``."""
    limit = available_bytes() // 2
    if os.environ.get(ENV):
        limit = min(limit, parse_size(os.environ[ENV]))
    return limit


def gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def tile_side(spec: ModelSpec, n: int, h: int, w: int, limit: int) -> int | None:
    """The largest square tile side whose forward fits ``limit`` for N frames of H x W, or None if whole fits.

    Raises InputError (before anything is allocated) when the frame-sized buffers alone do not fit."""
    fixed = FRAME_BYTES_PER_PX * n * h * w
    per_px = activation_bytes_per_px(spec) * n
    if fixed + per_px * h * w <= limit:
        return None
    if fixed >= limit:
        raise InputError(f"{n} frame(s) of {w}x{h} need about {gib(fixed)} for their buffers alone and "
                         f"{gib(limit)} is the budget here (half of the memory available, or ${ENV})",
                         hint="pass smaller frames (downscale first), fewer at once, or raise the budget")
    return math.isqrt((limit - fixed) // per_px)
