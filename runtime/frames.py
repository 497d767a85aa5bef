"""Frame policy: what goes in comes out, same shape and dtype.

- Colour order: BGR (OpenCV's convention) unless ``rgb=True``.
- Channels: 3 as is; 1 (HxW or HxWx1) is replicated to RGB and the output is converted back to
  gray; 4 (BGRA/RGBA) carries alpha through unchanged.
- Bit depth from the dtype, never from pixel values: uint8 /255, uint16 /65535, float32 and
  float64 as [0, 1] (values a little outside are clipped; NaN/Inf, or a range beyond [-0.5, 1.5] such
  as 0..255 data in a float array, is refused with one clear error).
- Any H, W >= 1: reflect padding to the model's multiple, edge padding where a side is too small
  to reflect, crop back after the model.
- Flat frames (every colour channel varies by less than one 8-bit level RMS: a lens cap, a black
  start-up frame, any 1x1 image) come back unchanged (``is_flat``). There is no blur to remove, and
  InstanceNorm (variance ~0 against eps 1e-5) amplifies float rounding into backend-dependent
  output: a black 640x360 frame came out as 0..14 in ONNX Runtime and 0..5 in torch, a grey 1x1 as 70
  in torch and 90 in ONNX Runtime (#17 defect 20).

The uint8 three- and four-channel path (every camera frame) is one OpenCV pass per plane each way:
split, then the reference's 256-entry float32 table (``prepost.U8_TO_UNIT``) straight into the
float32 planes; back, ``addWeighted`` with a uint8 result, which computes ``127.5 y + 127.5`` with
one rounding, clamps and rounds half to even: bit for bit ``prepost.unit_to_u8`` (tested on values
at every .5 tie). About 1-2 ms each per 720p frame on one core. The rest is numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from deblur.runtime.errors import InputError
from deblur.runtime.prepost import U8_TO_UNIT
from deblur.runtime.shapes import padding, reflectable

_U8_TO_UNIT = U8_TO_UNIT.reshape(1, 256)  # cv2.LUT's table shape
FLOAT_MAX = 1.5  # float frames beyond [-0.5, 1.5] are a scale mistake (0..255 data), not rounding: refused
FLAT_LEVELS = 1.0  # per-channel standard deviation, in 8-bit levels, below which a frame is flat
_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0, np.dtype(np.float64): 1.0}


@dataclass(frozen=True)
class FrameInfo:
    """How to turn the model's output back into the caller's frame."""

    h: int
    w: int
    shape: tuple[int, ...]
    dtype: np.dtype
    gray: bool
    rgb: bool
    alpha: np.ndarray | None


def check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frames must be numpy arrays (or CUDA tensors), got {type(frame).__name__}")
    if frame.dtype not in _SCALE:
        raise InputError(f"unsupported frame dtype {frame.dtype}", hint="use uint8, uint16, float32 or float64")
    ok = frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (1, 3, 4))
    if not ok or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"frame shape {frame.shape} is not HxW, HxWx1, HxWx3 or HxWx4", hint="pass an image array")
    if frame.dtype.kind == "f":
        lo, hi = float(np.min(frame)), float(np.max(frame))  # NaN propagates into both
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError("the float frame has NaN or Inf values", hint="clean the frame (np.nan_to_num) before deblurring")
        if hi > FLOAT_MAX or lo < -FLOAT_MAX + 1:
            raise InputError(f"float frames are read as [0, 1], this one spans [{lo:g}, {hi:g}]",
                             hint="divide 0..255 data by 255 (or pass it as uint8); values a little outside [0, 1] are clipped")


def is_flat(frame: np.ndarray) -> bool:
    """Whether every colour channel's standard deviation is below ``FLAT_LEVELS`` 8-bit levels (alpha ignored).

    0.2 ms per 720p frame (``cv2.meanStdDev``); a NaN frame is not flat (``check_frame`` refuses it)."""
    _, std = cv2.meanStdDev(frame if frame.ndim == 2 or frame.flags.c_contiguous else np.ascontiguousarray(frame))
    colour = std.ravel()[:3]
    return bool(np.all(colour * (255.0 / _SCALE[frame.dtype]) < FLAT_LEVELS))


def _border(h: int, w: int, ph: int, pw: int) -> int:
    return cv2.BORDER_REFLECT_101 if reflectable(h, w, ph, pw) else cv2.BORDER_REPLICATE


def preprocess(frame: np.ndarray, multiple: int, min_size: int = 0, rgb: bool = False,
               size: tuple[int, int] | None = None) -> tuple[np.ndarray, FrameInfo]:
    """Frame -> ``1x3xHpxWp`` float32 RGB in [-1, 1] (reflect-padded), and how to undo it."""
    check_frame(frame)
    h, w = frame.shape[:2]
    ph, pw = padding(h, w, multiple, min_size, size)
    if ph < 0 or pw < 0:
        raise InputError(f"frame {w}x{h} is larger than the model's fixed size {size[1]}x{size[0]}", hint="enable tiling")
    channels = 1 if frame.ndim == 2 else frame.shape[2]
    alpha = frame[..., 3].copy() if channels == 4 else None
    info = FrameInfo(h, w, frame.shape, frame.dtype, channels == 1, rgb, alpha)
    if frame.dtype == np.uint8 and channels in (3, 4):
        img = np.ascontiguousarray(frame)
        if ph or pw:
            img = cv2.copyMakeBorder(img, 0, ph, 0, pw, _border(h, w, ph, pw))
        planes = cv2.split(img)[:3]
        x = np.empty((1, 3, h + ph, w + pw), np.float32)
        for c, plane in enumerate(planes if rgb else planes[::-1]):  # one pass per plane: u8 in, f32 [-1, 1] out
            cv2.LUT(plane, _U8_TO_UNIT, dst=x[0, c])
        return x, info
    img = frame.reshape(h, w, -1)[..., :3].astype(np.float32) * np.float32(1.0 / _SCALE[frame.dtype])
    if frame.dtype.kind == "f":
        img = np.clip(img, 0.0, 1.0)
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif not rgb:
        img = img[..., ::-1]
    if ph or pw:
        img = cv2.copyMakeBorder(np.ascontiguousarray(img), 0, ph, 0, pw, _border(h, w, ph, pw))
    x = np.ascontiguousarray(img.transpose(2, 0, 1))[None] * np.float32(2.0) - np.float32(1.0)
    return x, info


def postprocess(y: np.ndarray, info: FrameInfo) -> np.ndarray:
    """``1x3xHpxWp`` in [-1, 1] -> the caller's frame: crop, clamp, scale, round (half to even)."""
    planes = y[0, :, : info.h, : info.w]
    if info.dtype == np.uint8 and not info.gray:
        order = (0, 1, 2) if info.rgb else (2, 1, 0)
        # saturate_cast<uchar>(127.5 y + 127.5) per plane: clamps, rounds half to even, reads each float once
        u8 = [cv2.addWeighted(planes[c], 127.5, planes[c], 0.0, 127.5, dtype=cv2.CV_8U) for c in order]
        if info.alpha is not None:
            u8.append(info.alpha)
        return cv2.merge(u8)
    img = np.clip((planes.transpose(1, 2, 0).astype(np.float32) + 1.0) * 0.5, 0.0, 1.0)
    if info.gray:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)[..., None]
    elif not info.rgb:
        img = img[..., ::-1]
    scale = _SCALE[info.dtype]
    out = np.rint(img * scale).astype(info.dtype) if info.dtype.kind == "u" else img.astype(info.dtype)
    if info.alpha is not None:
        out = np.concatenate([out, info.alpha[..., None]], axis=2)
    return out.reshape(info.shape)
