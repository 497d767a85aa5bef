"""Image helpers for training and evaluation: atomic writes, resizing, panels. Torch-free.

Reading and listing images is the runtime's (``deblur.runtime.images``)."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from deblur.runtime.errors import InputError
from deblur.runtime.fileio import atomic_write_bytes

log = logging.getLogger("deblur")

def fit_long_side(img: np.ndarray, max_side: int) -> np.ndarray:
    """``img`` scaled down (aspect kept, INTER_AREA) so its long side is at most ``max_side`` px."""
    s = max_side / max(img.shape[:2])
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))), interpolation=cv2.INTER_AREA)


def spread_evenly(n: int, k: int) -> list[int]:
    """Indices of ``k`` of ``n`` items spread evenly from first to last (a sequence's first k are
    often one scene or one sequence); all of them where ``k >= n``."""
    if k >= n:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, max(1, k)).round().astype(int)).tolist()


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image atomically; the format follows the suffix."""
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode an image as {path.suffix!r}", path, hint="use .png or .jpg")
    atomic_write_bytes(path, buf.tobytes())


def side_by_side(images: list[np.ndarray], labels: list[str], gap: int = 4) -> np.ndarray:
    """Panels left to right with a caption strip on top: the picture people look at first."""
    h = max(im.shape[0] for im in images)
    scale = max(0.4, min(1.0, h / 500))
    strip = int(28 * scale) + 6
    panels = []
    for im, text in zip(images, labels, strict=True):
        panel = np.full((h + strip, im.shape[1], 3), 255, np.uint8)
        panel[strip : strip + im.shape[0]] = im
        cv2.putText(panel, text, (6, strip - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(panel)
        panels.append(np.full((h + strip, gap, 3), 255, np.uint8))
    return np.concatenate(panels[:-1], axis=1)
