"""Tiling with overlap and feathered blending, for frames larger than an engine profile or memory.

Every tile is computed fresh from its own input window and blended with linear ramps across the
overlaps (weight 1 at the image border), so seams are smooth and no stale output is ever reused.
Note: a tile's output differs from the whole frame's where the model's receptive field reaches past the
overlap, and for InstanceNorm models (pico, the ResNet specs) also through per-tile statistics; tiled and
untiled results agree exactly only for a model with neither (tested with a zero-residual model) and closely
otherwise (measured: tests/runtime/test_deblurrer.py, test_tiling_close_to_untiled_for_the_trained_model).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deblur.runtime.errors import InputError, ShapeError


def parse_tile(value: object, what: str = "--tile") -> int | str:
    """A ``tile`` setting from a flag, a ROS parameter or a GStreamer property: ``"auto"``, or a whole
    number of px (0: never tile); anything else is one InputError naming ``what``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit():
        return int(text)
    raise InputError(f"bad {what} {value!r}", hint="write auto, 0 (never tile) or a tile side in px such as 512")


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Window starts covering ``[0, length)`` with windows of ``tile`` overlapping by >= ``overlap``."""
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    out = list(range(0, length - tile, step))
    out.append(length - tile)
    return out


def _ramp(n: int, overlap: int, lead: bool, trail: bool) -> np.ndarray:
    w = np.ones(n, np.float32)
    k = min(overlap, n // 2)
    if k > 0:
        ramp = np.arange(1, k + 1, dtype=np.float32) / (k + 1)
        if lead:
            w[:k] = ramp
        if trail:
            w[n - k :] = ramp[::-1]
    return w


def run_tiled(x: np.ndarray, infer: Callable[[np.ndarray], np.ndarray], tile_hw: tuple[int, int], overlap: int) -> np.ndarray:
    """``N x C x H x W`` through ``infer`` in windows of ``tile_hw`` (multiples of the model's)."""
    n, c, h, w = x.shape
    th, tw = min(tile_hw[0], h), min(tile_hw[1], w)
    acc = np.zeros((n, c, h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    ys, xs = starts(h, th, overlap), starts(w, tw, overlap)
    for y0 in ys:
        wy = _ramp(th, overlap, y0 > 0, y0 + th < h)
        for x0 in xs:
            wx = _ramp(tw, overlap, x0 > 0, x0 + tw < w)
            out = infer(np.ascontiguousarray(x[:, :, y0 : y0 + th, x0 : x0 + tw]))
            if out.shape != (n, c, th, tw):
                raise ShapeError(f"the model returned {out.shape} for a {(n, c, th, tw)} tile",
                                 hint="a static-shape model needs tiles of its own size: pass tile=0 or its size")
            weight = np.outer(wy, wx)
            acc[:, :, y0 : y0 + th, x0 : x0 + tw] += out * weight
            wsum[y0 : y0 + th, x0 : x0 + tw] += weight
    acc /= wsum  # in place: a frame-sized float array less at the peak (runtime.memory budgets it)
    return acc
