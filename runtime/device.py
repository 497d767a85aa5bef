"""The one device parser of every tool and ``Deblurrer``: ``cpu``, ``cuda`` or ``cuda:N`` (and ``auto``
where a tool allows it), checked against the GPUs this machine really has, without torch.

Before, ``--device cuda:0`` on a machine without a GPU was an internal error deep in torch, and
``--device tpu`` ran on the CPU in one tool and crashed in another.
"""
from __future__ import annotations

import ctypes
import functools
import re

from deblur.runtime.errors import InputError

_PATTERN = re.compile(r"^(cpu|cuda(?::(\d{1,6}))?)$")  # bounded: int() of 4,301+ digits raises ValueError


@functools.lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """GPUs the NVIDIA driver reports (``cuInit`` + ``cuDeviceGetCount``); 0 without a driver. Torch-free."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def parse_device(text: str, allow_auto: bool = False) -> str:
    """``cpu`` | ``cuda:N`` (``cuda`` means ``cuda:0``; ``auto``, where allowed, the first GPU if there is
    one, else the CPU). Anything else, or a GPU this machine does not have, is one InputError."""
    name = str(text).strip().lower()
    if allow_auto and name == "auto":
        return "cuda:0" if cuda_device_count() else "cpu"
    m = _PATTERN.match(name)
    if not m:
        raise InputError(f"unknown device {text!r}", hint="use cpu, cuda or cuda:N" + (" (or auto)" if allow_auto else ""))
    if name == "cpu":
        return "cpu"
    index, count = int(m.group(2) or 0), cuda_device_count()
    if index >= count:
        seen = f"{count} CUDA GPU(s) visible" if count else "no CUDA GPU visible (no NVIDIA driver or device)"
        raise InputError(f"device {name}: {seen} on this machine", hint="use --device cpu (device='cpu')")
    return f"cuda:{index}"
