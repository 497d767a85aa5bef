"""CPU pre/post-processing: uint8 RGB HWC frames <-> NCHW float32 tensors in [-1, 1]. numpy only.

Reflect padding up to the model's multiple (edge padding when the frame is too small to reflect),
then crop back after the model; the same contract as the CUDA kernels in ``runtime/cuda``.
"""
from __future__ import annotations

import numpy as np

from deblur.runtime.frames import padding


def pad_amounts(h: int, w: int, multiple: int, min_size: int = 0) -> tuple[int, int]:
    """Bottom and right padding to a multiple of ``multiple`` and at least ``min_size``."""
    return padding(h, w, multiple, min_size)


def to_tensor(rgb: np.ndarray, multiple: int = 4, min_size: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 HxWx3 RGB -> 1x3xHpxWp float32 in [-1, 1], reflect-padded bottom/right.

    ``size`` pads to exactly that (H, W) instead (static-shape models); it must not be smaller.
    """
    h, w = rgb.shape[:2]
    ph, pw = pad_amounts(h, w, multiple, min_size) if size is None else (size[0] - h, size[1] - w)
    if ph < 0 or pw < 0:
        raise ValueError(f"frame {w}x{h} is larger than the model's static size {size[1]}x{size[0]}")
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "edge"
        rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode=mode)
    x = rgb.astype(np.float32).transpose(2, 0, 1)[None]
    return x * np.float32(1 / 127.5) - np.float32(1.0)


def to_float_image(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """1x3xHpxWp in [-1, 1] -> HxWx3 float32 in [0, 1], cropped (no rounding: parity compares this)."""
    return np.clip((y[0, :, :h, :w].transpose(1, 2, 0).astype(np.float32) + 1.0) * 0.5, 0.0, 1.0)


def to_uint8(y: np.ndarray, h: int, w: int) -> np.ndarray:
    """1x3xHpxWp in [-1, 1] -> HxWx3 uint8 RGB: crop, clamp, round half to even (as runtime.frames)."""
    v = (y[0, :, :h, :w].transpose(1, 2, 0) + 1.0) * 127.5
    return np.rint(np.clip(v, 0.0, 255.0)).astype(np.uint8)
