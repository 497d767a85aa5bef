"""Sizes: the one padding rule and the one ``HxW`` parser of every tool.

A model takes H and W that are multiples of its spec's ``pad_multiple`` and at least its
``min_size``; frames are padded bottom/right up to that and cropped back (``runtime.frames``, the
CUDA kernels, the parity gate and the C++ runtime all pad by this rule).
"""
from __future__ import annotations

import re

from deblur.runtime.errors import InputError

_HW = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-int(value) // multiple) * multiple


def padded_size(h: int, w: int, multiple: int, min_size: int = 0) -> tuple[int, int]:
    """The size a model runs an ``h x w`` frame at: rounded up to the multiple, at least ``min_size``."""
    return max(round_up(h, multiple), min_size), max(round_up(w, multiple), min_size)


def padding(h: int, w: int, multiple: int, min_size: int = 0, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """Bottom/right padding to a multiple (and at least ``min_size``), or to exactly ``size``."""
    th, tw = size if size is not None else padded_size(h, w, multiple, min_size)
    return th - h, tw - w


def reflectable(h: int, w: int, ph: int, pw: int) -> bool:
    """Whether reflect padding is possible (each pad smaller than its side); else edge padding."""
    return ph < h and pw < w


def parse_hw(text: str, flag: str = "size") -> tuple[int, int]:
    """``"720x1280"`` -> ``(720, 1280)`` (H x W, both >= 1); anything else is one InputError naming ``flag``."""
    m = _HW.fullmatch(str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise InputError(f"bad {flag} {text!r}", hint=f"write HxW with positive numbers, e.g. {flag} 720x1280")
    return int(m.group(1)), int(m.group(2))


def parse_hw_list(text: str, flag: str = "sizes") -> list[tuple[int, int]]:
    """``"360x640,720x1280"`` -> ``[(360, 640), (720, 1280)]``."""
    return [parse_hw(item, flag) for item in str(text).split(",")]
