"""Camera degradations for synthetic training inputs: shot and read noise, then JPEG.

Real blurred frames are also noisy and compressed; a model trained on clean synthetic blur learns
to sharpen noise and block edges into artefacts. ``degrade`` is applied to the blurred image only
(the target stays clean), so the network learns to deblur and denoise together. Off by default
(the paper's recipe has no noise); the bundled default model is trained with it on.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class SensorParams:
    """Per-image draws: read-noise sigma ~ U(0, ``read_max``) and shot-noise gain ~ U(0, ``shot_max``).

    Noise is in 8-bit code values: a pixel of value v gets N(0, read^2 + shot * v). With
    probability ``jpeg_prob`` the noisy image is JPEG-coded at a quality ~ U(``jpeg_min``, 95).
    """

    read_max: float = 0.0
    shot_max: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_min: int = 40

    def __post_init__(self) -> None:
        if self.read_max < 0 or self.shot_max < 0 or not 0 <= self.jpeg_prob <= 1 or not 1 <= self.jpeg_min <= 95:
            raise ValueError(f"bad sensor parameters {self}: noise >= 0, jpeg_prob in [0, 1], jpeg_min in [1, 95]")

    @property
    def active(self) -> bool:
        return self.read_max > 0 or self.shot_max > 0 or self.jpeg_prob > 0


def degrade(image_uint8: np.ndarray, rng: np.random.Generator, params: SensorParams) -> np.ndarray:
    """Noisy, maybe JPEG-coded copy of a uint8 RGB (or gray) image; draws nothing when inactive."""
    if not params.active:
        return image_uint8
    img = image_uint8.astype(np.float32)
    read = float(rng.uniform(0, params.read_max))
    shot = float(rng.uniform(0, params.shot_max))
    if read > 0 or shot > 0:
        sigma = np.sqrt(read * read + shot * img)
        img += sigma * rng.standard_normal(img.shape, dtype=np.float32)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if params.jpeg_prob > 0 and rng.random() < params.jpeg_prob:
        quality = int(rng.integers(params.jpeg_min, 96))
        color = out.ndim == 3 and out.shape[2] == 3
        ok, buf = cv2.imencode(".jpg", out[..., ::-1] if color else out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:  # OpenCV codes BGR: flip so luma and chroma are those of the real colours
            dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            out = np.ascontiguousarray(dec[..., ::-1]) if color else dec.reshape(out.shape)
    return out
