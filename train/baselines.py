"""Classical deblurring baselines from scikit-image that a learned model has to beat.

Unsharp masking, Wiener deconvolution and Richardson-Lucy with a linear-motion PSF. They are not
blind, so ``search`` tries a small grid (PSF length and angle, regularisation or iterations) and
keeps the single setting with the best mean PSNR on the evaluation pairs themselves: an oracle
choice, generous to the baselines. scikit-image is imported only here (``pip install
scikit-image``).
"""
from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from deblur.runtime.errors import InputError
from deblur.train.metrics import psnr

log = logging.getLogger("deblur")
Pair = tuple[np.ndarray, np.ndarray]  # (blurred, sharp) uint8 RGB


def _skimage() -> Any:
    try:
        import skimage.filters
        import skimage.restoration
    except ImportError:
        raise InputError("the classical baselines need scikit-image", hint="pip install scikit-image") from None
    return skimage


def motion_psf(length: int, angle_deg: float) -> np.ndarray:
    """A normalised straight-line PSF ``length`` px long at ``angle_deg`` (anti-aliased, odd size)."""
    size = length + 2 - length % 2 + 1
    s = 8  # supersampling
    big = np.zeros((size * s, size * s), np.float32)
    c = (size * s - 1) / 2
    dx, dy = np.cos(np.radians(angle_deg)) * (length - 1) * s / 2, -np.sin(np.radians(angle_deg)) * (length - 1) * s / 2
    cv2.line(big, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, thickness=s, lineType=cv2.LINE_AA)
    psf = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    return psf / psf.sum()


def _per_channel(fn: Callable[[np.ndarray], np.ndarray], img: np.ndarray, pad: int = 0) -> np.ndarray:
    """``fn`` on each channel in [0, 1]; ``pad`` px of reflection first, so deconvolution sees no hard border."""
    x = img.astype(np.float64) / 255.0
    if pad:
        x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    out = np.stack([fn(x[..., c]) for c in range(x.shape[2])], axis=2)
    if pad:
        out = out[pad:-pad, pad:-pad]
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def unsharp(img: np.ndarray, radius: float, amount: float) -> np.ndarray:
    sk = _skimage()
    return _per_channel(lambda c: sk.filters.unsharp_mask(c, radius=radius, amount=amount), img)


def wiener(img: np.ndarray, psf: np.ndarray, balance: float) -> np.ndarray:
    sk = _skimage()
    return _per_channel(lambda c: sk.restoration.wiener(c, psf, balance, clip=True), img, pad=2 * psf.shape[0])


def richardson_lucy(img: np.ndarray, psf: np.ndarray, iterations: int) -> np.ndarray:
    sk = _skimage()
    return _per_channel(lambda c: sk.restoration.richardson_lucy(c, psf, num_iter=iterations, clip=True), img,
                        pad=2 * psf.shape[0])


@dataclass(frozen=True)
class Baseline:
    """One method with one setting: ``run(blurred) -> restored`` and a label for tables."""

    method: str
    label: str
    params: dict[str, Any]
    run: Callable[[np.ndarray], np.ndarray]


def candidates(method: str) -> list[Baseline]:
    """The search grid of one method."""
    lengths, angles = (3, 7, 11, 15, 21), (0, 45, 90, 135)
    if method == "unsharp":
        return [Baseline(method, f"unsharp mask (radius {r}, amount {a})", {"radius": r, "amount": a},
                         lambda x, r=r, a=a: unsharp(x, r, a)) for r, a in itertools.product((1, 2, 4), (0.5, 1.0, 2.0))]
    if method == "wiener":
        return [Baseline(method, f"Wiener (motion {n} px at {t} deg, balance {b})", {"length": n, "angle": t, "balance": b},
                         lambda x, p=motion_psf(n, t), b=b: wiener(x, p, b))
                for n, t, b in itertools.product(lengths, angles, (0.01, 0.05, 0.2))]
    if method == "richardson-lucy":
        return [Baseline(method, f"Richardson-Lucy (motion {n} px at {t} deg, {k} iterations)",
                         {"length": n, "angle": t, "iterations": k}, lambda x, p=motion_psf(n, t), k=k: richardson_lucy(x, p, k))
                for n, t, k in itertools.product((3, 7, 11, 15), angles, (10,))]
    raise InputError(f"unknown baseline {method!r}", hint="choose unsharp, wiener or richardson-lucy")


METHODS = ("unsharp", "wiener", "richardson-lucy")


def search(method: str, pairs: Sequence[Pair]) -> Baseline:
    """The setting of ``method`` with the best mean PSNR over ``pairs``."""
    if not pairs:
        raise InputError(f"no image pairs to tune the {method} baseline on", hint="pass a folder with readable pairs")
    best, best_score = None, -np.inf
    for cand in candidates(method):
        score = float(np.mean([psnr(cand.run(b), s) for b, s in pairs]))
        if best is None or score > best_score:  # the first candidate wins ties and NaNs
            best, best_score = cand, score
    log.info("baseline %s: best setting %s (%.2f dB on %d search images)", method, best.label, best_score, len(pairs))
    return best
