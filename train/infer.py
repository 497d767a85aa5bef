"""Whole-image inference with the PyTorch generator: the reference path other backends match.

Conversion and padding are the runtime's reference (``deblur.runtime.prepost``), so evaluation
scores exactly what ``Deblurrer`` would produce from the same weights.
"""
from __future__ import annotations

import numpy as np
import torch

from deblur.runtime.prepost import to_tensor, to_uint8
from deblur.train.networks import Generator


@torch.inference_mode()
def deblur_rgb(model: Generator, rgb: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """uint8 RGB HxWx3 in, uint8 RGB HxWx3 out: normalise, pad, run, crop, clamp, round."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy(to_tensor(rgb, model.spec.pad_multiple, model.spec.min_size)).to(device)
    return to_uint8(model(x).float().cpu().numpy(), h, w)
