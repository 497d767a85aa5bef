"""Listing and reading image files: RGB uint8 in memory. Used by every tool that reads photos."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from deblur.runtime.errors import InputError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; a missing folder is an InputError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("folder not found" if not folder.exists() else "is not a folder", folder, hint="pass a folder of images")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def png_chunks_fit(data: np.ndarray) -> bool:
    """Whether every PNG chunk's declared length fits in the file (True for other formats).

    OpenCV 5.1's PNG reader allocates a chunk's declared length before reading it: a 203-byte file
    whose IEND claims 4 GiB made it allocate 4 GB (found by tests/fuzz; an 8 GB Jetson dies of that)."""
    buf = data.tobytes() if data[:8].tobytes() == PNG_SIGNATURE else b""
    i = len(PNG_SIGNATURE)
    while buf and i + 8 <= len(buf):
        length = int.from_bytes(buf[i : i + 4], "big")
        if i + 12 + length > len(buf):
            return False
        if buf[i + 4 : i + 8] == b"IEND":
            break
        i += 12 + length
    return True


def decode_image(data: np.ndarray, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """``cv2.imdecode`` of untrusted bytes: None for anything unreadable, never an exception or a
    huge allocation (every image decode of user data goes through here)."""
    if not data.size or not png_chunks_fit(data):
        return None
    try:
        return cv2.imdecode(data, flags)
    except cv2.error:  # fuzz: a header past OpenCV's size limits raises instead of returning None
        return None


def read_rgb(path: str | Path) -> np.ndarray | None:
    """uint8 RGB HxWx3 (gray becomes 3 equal channels, 16-bit is scaled to 8); None if unreadable."""
    img = decode_image(np.fromfile(str(path), dtype=np.uint8))
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
