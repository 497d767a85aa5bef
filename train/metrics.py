"""PSNR and SSIM on uint8 RGB images, the convention of the deblurring literature.

PSNR: data range 255 on uint8. SSIM: Gaussian-weighted (sigma 1.5, 11 taps, K1 0.01, K2 0.03),
population covariance, per channel then averaged, borders of 5 px excluded: the same numbers as
``skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False,
channel_axis=-1, data_range=255)``, computed with OpenCV's separable blur for speed. Torch-free.
"""
from __future__ import annotations

import cv2
import numpy as np

from deblur.runtime import compare
from deblur.runtime.errors import ShapeError

_SIGMA, _RADIUS, _K1, _K2, _RANGE = 1.5, 5, 0.01, 0.03, 255.0


def _check(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ShapeError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ShapeError(f"metrics take uint8 images, got {a.dtype} and {b.dtype}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB (inf for identical images)."""
    _check(a, b)
    return compare.psnr(a, b, _RANGE)


def _blur(x: np.ndarray) -> np.ndarray:
    k = 2 * _RADIUS + 1
    return cv2.GaussianBlur(x, (k, k), _SIGMA, sigmaY=_SIGMA, borderType=cv2.BORDER_REFLECT)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two single-channel float64 images (full size, borders included)."""
    ux, uy = _blur(a), _blur(b)
    vx = _blur(a * a) - ux * ux
    vy = _blur(b * b) - uy * uy
    vxy = _blur(a * b) - ux * uy
    c1, c2 = (_K1 * _RANGE) ** 2, (_K2 * _RANGE) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over channels, excluding a 5 px border (skimage's ``crop(S, pad)``)."""
    _check(a, b)
    if min(a.shape[:2]) < 2 * _RADIUS + 1:
        raise ShapeError(f"SSIM needs images of at least 11x11, got {a.shape[1]}x{a.shape[0]}")
    a3 = a.reshape(a.shape[0], a.shape[1], -1).astype(np.float64)
    b3 = b.reshape(b.shape[0], b.shape[1], -1).astype(np.float64)
    r = _RADIUS
    vals = [ssim_map(a3[..., c], b3[..., c])[r:-r, r:-r].mean() for c in range(a3.shape[2])]
    return float(np.mean(vals))
