"""The one PSNR of every tool: evaluation (uint8, range 255), the parity gate and deblur-bench (floats in [0, 1])."""
from __future__ import annotations

import math

import numpy as np


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB for a mean squared error (inf when the error is zero)."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB between two arrays of the same shape, computed in float64."""
    return psnr_from_mse(float(np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)))), data_range)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
