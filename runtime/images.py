"""Listing and reading image files: RGB uint8 in memory. Used by every tool that reads photos."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deblur.runtime.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; a missing folder is an InputError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("folder not found" if not folder.exists() else "is not a folder", folder, hint="pass a folder of images")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_rgb(path: str | Path) -> np.ndarray | None:
    """uint8 RGB HxWx3 (gray becomes 3 equal channels, 16-bit is scaled to 8); None if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
