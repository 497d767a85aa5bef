"""The reference conversion between integer pixels and the model's [-1, 1], numpy only.

This is the one definition every path matches bit for bit: the OpenCV fast path of
``runtime.frames``, the CUDA kernels (``runtime/cuda/prepost.cu``), the torch device path, the
parity gate, evaluation and training data.

- uint8 -> [-1, 1]: ``x * float32(1/127.5) - 1`` in float32, two roundings (no FMA); tabulated in
  ``U8_TO_UNIT`` (a frame is one table lookup per value).
- [-1, 1] -> uint8: ``127.5 y + 127.5`` rounded once to float32 (what an FMA, and OpenCV's
  ``addWeighted``, compute), clamped to [0, 255], rounded half to even.
- Padding: bottom/right to the model's multiple (``runtime.shapes.padding``), reflect, or edge
  where a side is too small to reflect.
"""
from __future__ import annotations

import numpy as np

from deblur.runtime.errors import InputError
from deblur.runtime.shapes import padding, reflectable

U8_TO_UNIT = np.arange(256, dtype=np.float32) * np.float32(1 / 127.5) - np.float32(1.0)


def unit_to_u8(y: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8 (see the module docstring; float64 makes the mul-add exact)."""
    v = (np.asarray(y, np.float64) * 127.5 + 127.5).astype(np.float32)
    return np.rint(np.clip(v, 0.0, 255.0)).astype(np.uint8)


def pad_hwc(img: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Bottom/right padding of an HxWxC array by the one rule (reflect, else edge)."""
    if not (ph or pw):
        return img
    mode = "reflect" if reflectable(img.shape[0], img.shape[1], ph, pw) else "edge"
    return np.pad(img, ((0, ph), (0, pw), (0, 0)), mode=mode)


def to_tensor(rgb: np.ndarray, multiple: int = 4, min_size: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 HxWx3 RGB -> 1x3xHpxWp float32 in [-1, 1], padded bottom/right.

    ``size`` pads to exactly that (H, W) instead (static-shape models); it must not be smaller.
    """
    h, w = rgb.shape[:2]
    ph, pw = padding(h, w, multiple, min_size, size)
    if ph < 0 or pw < 0:
        raise InputError(f"frame {w}x{h} is larger than the model's static size {size[1]}x{size[0]}", hint="enable tiling")
    return U8_TO_UNIT[pad_hwc(rgb, ph, pw)].transpose(2, 0, 1)[None].copy()


def to_float_image(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """1x3xHpxWp in [-1, 1] -> HxWx3 float32 in [0, 1], cropped (no rounding: parity compares this)."""
    return np.clip((y[0, :, :h, :w].transpose(1, 2, 0).astype(np.float32) + 1.0) * 0.5, 0.0, 1.0)


def to_uint8(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """1x3xHpxWp in [-1, 1] -> HxWx3 uint8 RGB: crop, then ``unit_to_u8``."""
    return unit_to_u8(y[0, :, :h, :w].transpose(1, 2, 0))


def centre_crop(rgb: np.ndarray, size: int, multiple: int) -> np.ndarray:
    """The centre of an image, each side cut to at most ``size`` and a multiple of ``multiple`` (static-shape models)."""
    h, w = rgb.shape[:2]
    ch, cw = min(h, size) // multiple * multiple or h, min(w, size) // multiple * multiple or w
    y, x = (h - ch) // 2, (w - cw) // 2
    return rgb[y : y + ch, x : x + cw]
