"""Whole-image inference with the PyTorch generator: the reference path other backends match."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deblur.train.networks import Generator


def pad_amounts(h: int, w: int, multiple: int) -> tuple[int, int]:
    """Bottom and right padding that makes H and W multiples of ``multiple``."""
    return (-h) % multiple, (-w) % multiple


@torch.inference_mode()
def deblur_rgb(model: Generator, rgb: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """uint8 RGB HxWx3 in, uint8 RGB HxWx3 out: normalise, reflect-pad, run, crop, clamp, round."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    ph, pw = pad_amounts(h, w, model.spec.pad_multiple)
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    y = model(x)[0, :, :h, :w]
    y = ((y + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8)
    return y.permute(1, 2, 0).cpu().numpy()
