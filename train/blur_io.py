"""Blur synthesis on disk: blur/ + sharp/ PNG pair folders and the blur.mp4 + sharp.mp4 shaky video.

The pixels come from ``deblur.train.psf`` and ``deblur.train.shake``; this module reads photos,
seeds each one from its file name, and publishes every file atomically (complete or absent).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from deblur.runtime.errors import DeblurError, InputError
from deblur.runtime.fileio import atomic_path
from deblur.runtime.images import IMAGE_SUFFIXES, list_images, read_rgb
from deblur.train.images import write_rgb
from deblur.train.psf import TrajectoryParams
from deblur.train.shake import VIDEO_SHAKE, ShakeParams, make_pair, simulate_shake_video

log = logging.getLogger("deblur")


def _out_dir(path: str | Path) -> Path:
    """Create the output folder; a file in the way is bad input, not an internal error."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError("output path exists and is not a folder", path=out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _progress(progress: bool | None) -> bool:
    """Progress bars only on a terminal unless asked."""
    return sys.stderr.isatty() if progress is None else progress


def _to_bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.ndim == 2 else cv2.COLOR_RGB2BGR)


@contextlib.contextmanager
def _mp4v_writer(path: Path, fps: float, size: tuple[int, int]) -> Iterator[cv2.VideoWriter]:
    """An mp4v writer of (W, H) frames whose file appears at ``path`` only when complete.

    Published by ``atomic_path`` (fsync, then rename). OpenCV picks the container from the file
    name and atomic_path's temp name ends in ``.tmp``, so frames go to a ``.mp4`` name beside it
    that is moved onto the temp file before atomic_path publishes it.
    """
    with atomic_path(path) as tmp:
        staging = tmp.with_name(tmp.name + ".mp4")
        writer = cv2.VideoWriter(str(staging), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), tuple(size))
        try:
            if not writer.isOpened():
                raise DeblurError("cannot open an mp4v video writer", path=path.parent,
                                  hint="check the folder is writable and OpenCV was built with FFmpeg")
            yield writer
            writer.release()
            os.replace(staging, tmp)
        finally:
            writer.release()
            staging.unlink(missing_ok=True)


def write_video_pair(image_uint8: np.ndarray, out_dir: str | Path, rng: np.random.Generator,
                     frames: int = 48, size: tuple[int, int] = (640, 360), fps: float = 24.0,
                     progress: bool | None = None, *, exposure: float = 1.0,
                     shake: ShakeParams = VIDEO_SHAKE) -> tuple[Path, Path]:
    """Write ``blur.mp4`` and ``sharp.mp4`` (mp4v, same frame count) from an RGB/gray photo.

    ``size`` is (W, H); ``exposure`` and ``shake`` go to ``simulate_shake_video``. Both files appear
    only when complete (``deblur.runtime.fileio.atomic_path``); a failure leaves neither.
    """
    out = _out_dir(out_dir)
    finals = (out / "blur.mp4", out / "sharp.mp4")
    pairs = simulate_shake_video(image_uint8, rng, frames=frames, size=size, fps=fps, exposure=exposure,
                                 shake=shake)
    with _mp4v_writer(finals[1], fps, size) as sharp_writer, _mp4v_writer(finals[0], fps, size) as blur_writer:
        for blur, sharp in tqdm(pairs, total=frames, desc="video", unit="frame",
                                disable=not _progress(progress)):
            blur_writer.write(_to_bgr(blur))
            sharp_writer.write(_to_bgr(sharp))
    return finals


class PairStats(NamedTuple):
    """What ``make_pairs`` did: pairs written, unreadable or duplicate files skipped."""

    written: int
    skipped: int


def rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator from (seed, file name): reproducible and independent of listing order."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return np.random.default_rng(np.random.SeedSequence([int(seed), int.from_bytes(digest[:16], "little")]))


def make_pairs(sharp_dir: str | Path, out_dir: str | Path, method: str = "trajectory", seed: int = 0,
               *, limit: int | None = None, params: TrajectoryParams | ShakeParams | None = None,
               progress: bool | None = None) -> PairStats:
    """Blur every image of ``sharp_dir`` into ``out_dir/blur/NAME.png`` + ``out_dir/sharp/NAME.png``.

    Unreadable files get one warning each and are skipped; writes are atomic (``images.write_rgb``).
    Raises InputError for a missing/empty folder or when no image could be read.
    """
    src = Path(sharp_dir)
    if method not in ("trajectory", "gopro"):
        raise InputError(f"unknown blur method {method!r}", hint="use 'trajectory' or 'gopro'")
    if seed < 0 or (limit is not None and limit < 1):
        raise InputError(f"need seed >= 0 and limit >= 1, got seed={seed}, limit={limit}")
    files = list_images(src)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the sharp folder", path=src)
    files = files[:limit] if limit is not None else files
    out = _out_dir(out_dir)
    _out_dir(out / "blur"), _out_dir(out / "sharp")
    written, skipped, seen = 0, 0, set()
    for path in tqdm(files, desc="pairs", unit="img", disable=not _progress(progress)):
        name = path.stem + ".png"
        img = read_rgb(path)
        if img is None or name in seen:
            why = "cannot decode the image" if img is None else f"another file already gives {name}"
            log.warning("%s: %s; skipped", path, why)
            skipped += 1
            continue
        seen.add(name)
        blurred, sharp = make_pair(img, rng_for(seed, path.name), method, params)
        write_rgb(out / "blur" / name, blurred)
        write_rgb(out / "sharp" / name, sharp)
        written += 1
    if written == 0:
        raise InputError(f"none of the {len(files)} images could be read", path=src)
    return PairStats(written, skipped)
