"""Pre/post-processing as torch ops on the tensor's own device (CUDA frames, ``.pth`` models on a GPU):
bit for bit ``prepost.to_tensor`` / ``prepost.unit_to_u8`` (tests/runtime/test_prepost.py proves it on the CPU).

torch is imported inside the functions: ``deblur.runtime`` stays torch-free at import.
"""
from __future__ import annotations

import functools
from typing import Any

from deblur.runtime.prepost import U8_TO_UNIT
from deblur.runtime.shapes import padding, reflectable


@functools.lru_cache(maxsize=8)
def _device_table(device: str) -> Any:
    """``U8_TO_UNIT`` on a device, copied there once (not once per frame)."""
    import torch

    return torch.from_numpy(U8_TO_UNIT).to(device)


def tensor_pre(t: Any, rgb: bool, multiple: int, min_size: int) -> Any:
    """uint8 HxWx3 torch tensor -> 1x3xHpxWp float32 on its device: bit for bit ``prepost.to_tensor``
    (the same table, the same padding rule)."""
    import torch.nn.functional as F

    h, w = t.shape[:2]
    x = _device_table(str(t.device))[t.long()].permute(2, 0, 1)[None]
    if not rgb:
        x = x.flip(1)
    ph, pw = padding(h, w, multiple, min_size)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if reflectable(h, w, ph, pw) else "replicate")
    return x


def tensor_post(y: Any, h: int, w: int, rgb: bool) -> Any:
    """1x3xHpxWp [-1, 1] -> uint8 HxWx3 on its device: bit for bit ``prepost.unit_to_u8`` (float64 mul-add,
    one rounding to float32, clamp, round half to even)."""
    import torch

    y = (y[0, :, :h, :w].double() * 127.5 + 127.5).float().clamp(0, 255).round()
    if not rgb:
        y = y.flip(0)
    return y.permute(1, 2, 0).to(torch.uint8).contiguous()
