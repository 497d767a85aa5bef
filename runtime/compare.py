"""The one PSNR of every tool (evaluation in uint8, the parity gate and deblur-bench in [0, 1]) and the
one set of parity bounds: the export gate, deblur-bench and the runtime's backend choice all judge
an artifact against its reference with ``compare``.

Bounds (from the survey of trusted exporters behind this project's design):
- FP32: every element |d| <= 1e-4 + 1e-3 |ref|, and max |d| <= 1e-3;
- reduced precision (FP16 graph, TensorRT FP16, OpenVINO bf16/f16, the PyTorch half proxy):
  PSNR >= 50 dB per image, p99.9 |d| <= 2/255, max |d| <= 0.02;
- no NaN or Inf anywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FP32_ATOL, FP32_RTOL, FP32_MAX = 1e-4, 1e-3, 1e-3
FP16_PSNR, FP16_P999, FP16_MAX = 50.0, 2 / 255, 0.02


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB for a mean squared error (inf when the error is zero)."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB between two arrays of the same shape, computed in float64."""
    return psnr_from_mse(float(np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)))), data_range)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@dataclass
class ImageResult:
    image: str
    size: str
    max: float
    mean: float
    p999: float
    psnr: float
    nonfinite: int
    within_tol: bool  # FP32 elementwise tolerance
    failures: list[str] = field(default_factory=list)


def compare(name: str, ref: np.ndarray, out: np.ndarray, precision: str) -> ImageResult:
    """Difference statistics of two HxWx3 float images in [0, 1], and which limits they break."""
    nonfinite = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
    d = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    finite = np.isfinite(d)
    d[~finite] = np.inf
    mse = float(np.mean(np.square(np.where(finite, d, 1.0))))  # a NaN counts as the worst error, 1
    over = int(np.count_nonzero(d > FP32_ATOL + FP32_RTOL * np.abs(ref)))
    r = ImageResult(
        image=name, size=f"{ref.shape[1]}x{ref.shape[0]}", max=float(d.max()),
        mean=float(d[finite].mean()) if finite.any() else math.inf, p999=float(np.percentile(d, 99.9)),
        psnr=psnr_from_mse(mse), nonfinite=nonfinite, within_tol=over == 0,
    )
    if nonfinite:
        r.failures.append(f"{nonfinite} NaN/Inf values")
    if precision == "fp32":
        if not r.within_tol:
            r.failures.append(f"|d| > {FP32_ATOL:g} + {FP32_RTOL:g}|ref| at {over} values")
        if r.max > FP32_MAX:
            r.failures.append(f"max |d| {r.max:.3g} > {FP32_MAX:g}")
    else:
        if r.psnr < FP16_PSNR:
            r.failures.append(f"PSNR {r.psnr:.2f} dB < {FP16_PSNR:g} dB")
        if r.p999 > FP16_P999:
            r.failures.append(f"p99.9 |d| {r.p999:.4f} > 2/255")
        if r.max > FP16_MAX:
            r.failures.append(f"max |d| {r.max:.4f} > {FP16_MAX:g}")
    return r
