"""Blur synthesis: DeblurGAN random-trajectory kernels, GoPro-style frame averaging, shaky video.

numpy and OpenCV only (the base dependencies: no torch, no scipy). Every random function takes a
``numpy.random.Generator``, so a seed gives the same blur on every machine. Trajectories follow
the authors' 2018 ``motion_blur/`` code (anchors.md A), with the departures stated where they happen.
"""
from __future__ import annotations

import cmath
import hashlib
import logging
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from deblur.train.errors import DeblurError, InputError, ShapeError
from deblur.train.images import IMAGE_SUFFIXES, list_images, read_rgb, write_rgb

log = logging.getLogger("deblur")

#: ``expl`` values the authors' ``blur_image.py`` script draws from when making their dataset.
EXPL_CHOICES = (0.01, 0.009, 0.008, 0.007, 0.005, 0.003)


@dataclass(frozen=True)
class TrajectoryParams:
    """Random camera-trajectory model (Boracchi & Foi 2012, as coded by the DeblurGAN authors, 2018).

    canvas=64: PSF side in px.  iters=2000: trajectory samples M.  max_len=60.0: length of every
    full-exposure path in px (must be <= canvas - 4 so the path fits).  expl=None: "anxiety" scale of
    all perturbations; None draws it from ``EXPL_CHOICES`` (0.01 ... 0.003) like ``blur_image.py``
    (the ``Trajectory`` class alone would use 0.1*U(0,1); the paper's Algorithm 1 says ps=0.001).
    fractions=(1/100, 1/10, 1/2, 1): cumulative exposure fractions, one PSF each.
    Drawn per trajectory unless overridden here: centripetal=0.7*U (inertia towards the start),
    prob_big_shake=0.2*U, gaussian_shake=10*U (the paper says U(0, 0.7)), angle=U(0, 360) degrees.
    Overrides never change the other draws: all values are always drawn, then replaced.
    """

    canvas: int = 64
    iters: int = 2000
    max_len: float = 60.0
    expl: float | None = None
    fractions: tuple[float, ...] = (1 / 100, 1 / 10, 1 / 2, 1.0)
    centripetal: float | None = None
    prob_big_shake: float | None = None
    gaussian_shake: float | None = None
    angle: float | None = None

    def __post_init__(self) -> None:
        if self.canvas < 8 or self.iters < 2:
            raise ValueError(f"need canvas >= 8 and iters >= 2, got {self.canvas}, {self.iters}")
        if not 0 < self.max_len <= self.canvas - 4:
            raise ValueError(f"max_len must be in (0, canvas - 4 = {self.canvas - 4}], got {self.max_len}")
        f = self.fractions
        if not f or any(not 0 < a <= 1 for a in f) or any(b <= a for a, b in zip(f, f[1:])):
            raise ValueError(f"fractions must increase within (0, 1], got {f}")
        if self.expl is not None and self.expl < 0:
            raise ValueError(f"expl must be >= 0, got {self.expl}")


def random_trajectory(rng: np.random.Generator, params: TrajectoryParams = TrajectoryParams()) -> np.ndarray:
    """A random 2-D camera path (complex128, x = real = column, y = imag = row) inside the canvas.

    Velocity is renormalised to max_len/(iters-1) at every step, so each full path is exactly max_len
    px long whatever the shake; then shifted and centred in the canvas exactly as the authors do.
    """
    p = params
    drawn = [float(rng.choice(EXPL_CHOICES)), *(rng.uniform(size=4) * (0.7, 0.2, 10.0, 360.0))]
    given = (p.expl, p.centripetal, p.prob_big_shake, p.gaussian_shake, p.angle)
    expl, cp, pb, gs, angle = (float(d if g is None else g) for d, g in zip(drawn, given))
    angle = math.radians(angle)
    n = p.iters
    step = p.max_len / (n - 1)
    shake_u = rng.uniform(size=n - 1).tolist()
    turn_u = rng.uniform(size=n - 1).tolist()
    g = rng.standard_normal((n - 1, 2))
    noise = (g[:, 0] + 1j * g[:, 1]).tolist()
    v0 = complex(math.cos(angle), math.sin(angle))
    v = v0 * expl if expl > 0 else v0 * step  # authors' quirk; renormalised after the first step
    x = [0j] * n
    for t in range(n - 1):
        kick = 2 * v * cmath.exp(1j * (math.pi + turn_u[t] - 0.5)) if shake_u[t] < pb * expl else 0
        v_new = v + kick + expl * (gs * noise[t] - cp * x[t]) * step
        speed = abs(v_new)
        v = v_new / speed * step if speed > 0 else v / abs(v) * step
        x[t + 1] = x[t] + v
    xs = np.asarray(x, dtype=np.complex128)
    xs -= complex(xs.real.min(), xs.imag.min())
    xs = xs - complex(xs[0].real % 1.0, xs[0].imag % 1.0) + complex(1, 1)
    xs += complex(math.ceil((p.canvas - xs.real.max()) / 2), math.ceil((p.canvas - xs.imag.max()) / 2))
    return xs


def trajectory_psfs(traj: np.ndarray, params: TrajectoryParams = TrajectoryParams(),
                    center: bool = True) -> list[np.ndarray]:
    """One float32 (canvas, canvas) PSF per exposure fraction, cumulative, each summing to 1.

    Sample t covers time [t-1, t] of the M samples and is splatted bilinearly into its 4 neighbours,
    weighted by how much of that interval lies inside [0, fraction*M], as the authors' code does.
    Departures: each PSF is normalised to sum 1 (the authors divide by M, so a 1/10 PSF sums to ~0.1
    and their image code then min-max normalises), and with ``center`` each PSF is rolled by whole
    pixels so its centroid sits at the convolution centre ((canvas-1)//2): the authors' partial
    PSFs lie at one end of the path, which misaligns blurred and sharp images by up to ~25 px.
    """
    c = params.canvas
    xs = np.asarray(traj, dtype=np.complex128)
    if xs.real.min() < 0 or xs.imag.min() < 0:
        raise ValueError("trajectory has negative coordinates; it must lie inside the canvas")
    col, row = np.floor(xs.real).astype(np.int64), np.floor(xs.imag).astype(np.int64)
    fx, fy = xs.real - col, xs.imag - row
    corners = [(row, col, (1 - fx) * (1 - fy)), (row, col + 1, fx * (1 - fy)),
               (row + 1, col, (1 - fx) * fy), (row + 1, col + 1, fx * fy)]
    side = int(max(c, row.max() + 2, col.max() + 2))
    t = np.arange(len(xs), dtype=np.float64)
    psfs = []
    for frac in params.fractions:
        w = np.clip(frac * len(xs) - (t - 1), 0.0, 1.0)
        w[0] = 0.0
        acc = np.zeros(side * side)
        for r, k, b in corners:
            acc += np.bincount(r * side + k, weights=w * b, minlength=side * side)
        full = acc.reshape(side, side)
        psf, total = full[:c, :c], full.sum()
        if total <= 0 or psf.sum() < total * (1 - 1e-9):
            raise ValueError("trajectory leaves the canvas (or has no weight); shorten max_len")
        psf = _center_psf(psf) if center else psf
        psfs.append((psf / psf.sum()).astype(np.float32))
    return psfs


def _center_psf(psf: np.ndarray) -> np.ndarray:
    """Roll a PSF by whole pixels to put its centroid on ((h-1)//2, (w-1)//2), never wrapping support."""
    out = psf
    for axis in (0, 1):
        prof = psf.sum(axis=1 - axis)
        idx = np.arange(prof.size)
        nz = np.flatnonzero(prof > 0)
        shift = int(round((prof.size - 1) // 2 - (prof * idx).sum() / prof.sum()))
        shift = int(np.clip(shift, -nz[0], prof.size - 1 - nz[-1]))
        out = np.roll(out, shift, axis=axis)
    return out


def random_psf(rng: np.random.Generator, params: TrajectoryParams = TrajectoryParams(),
               fraction_index: int | None = None) -> np.ndarray:
    """A random PSF; the exposure fraction index is drawn from 1..len-1 like the authors' blur_image."""
    psfs = trajectory_psfs(random_trajectory(rng, params), params)
    if fraction_index is None:
        fraction_index = int(rng.integers(1, len(psfs))) if len(psfs) > 1 else 0
    if not 0 <= fraction_index < len(psfs):
        raise ValueError(f"fraction_index must be in 0..{len(psfs) - 1}, got {fraction_index}")
    return psfs[fraction_index]


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def apply_psf(image: np.ndarray, psf: np.ndarray, border: str = "reflect",
              normalize: bool = False) -> np.ndarray:
    """Convolve each channel of a float [0,1] HxW(xC) image with ``psf``; float32, same size, clipped.

    The PSF centre is pixel ((kh-1)//2, (kw-1)//2), as in scipy's fftconvolve 'same' mode (OpenCV
    switches to a DFT for big kernels). ``border="reflect"`` avoids the dark frame the authors' zero
    borders ("zero") leave; ``normalize=True`` min-max normalises input and output as the authors do
    (it changes contrast, so it is off by default).
    """
    img = np.asarray(image, dtype=np.float32)
    k = np.asarray(psf, dtype=np.float32)
    if img.ndim not in (2, 3) or k.ndim != 2:
        raise ShapeError(f"need an HxW or HxWxC image and a 2-D PSF, got {img.shape} and {k.shape}")
    if border not in ("reflect", "zero"):
        raise ValueError(f"border must be 'reflect' or 'zero', got {border!r}")
    if normalize:
        img = _minmax(img)
    kh, kw = k.shape
    flipped = np.ascontiguousarray(k[::-1, ::-1])  # filter2D correlates; flipping makes it convolve
    mode = cv2.BORDER_REFLECT_101 if border == "reflect" else cv2.BORDER_CONSTANT
    chans = [img] if img.ndim == 2 or img.shape[2] <= 4 else [img[:, :, i] for i in range(img.shape[2])]
    outs = [cv2.filter2D(np.ascontiguousarray(c), cv2.CV_32F, flipped, anchor=(kw // 2, kh // 2),
                         borderType=mode) for c in chans]
    out = outs[0] if len(outs) == 1 else np.stack(outs, axis=2)
    out = out.reshape(img.shape)
    if normalize:
        out = _minmax(out)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _check_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ShapeError(f"need an HxW or HxWxC uint8 image, got {img.dtype} {img.shape}")
    return img


def blur_image(image_uint8: np.ndarray, rng: np.random.Generator,
               params: TrajectoryParams = TrajectoryParams()) -> np.ndarray:
    """Blur a uint8 RGB or gray image with one random trajectory PSF; uint8, same shape."""
    img = _check_uint8(image_uint8)
    out = apply_psf(img.astype(np.float32) / 255.0, random_psf(rng, params))
    return np.round(out * 255.0).astype(np.uint8)


def srgb_to_linear(x: np.ndarray, gamma: float = 2.2) -> np.ndarray:
    """Code values (uint8, or float in [0,1]) to linear light, float32; a pure power-law CRF."""
    a = np.asarray(x)
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    return np.power(np.clip(a, 0.0, 1.0), gamma).astype(np.float32)


def linear_to_srgb(x: np.ndarray, gamma: float = 2.2) -> np.ndarray:
    """Linear light in [0,1] back to float32 code values in [0,1]."""
    return np.power(np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0), 1.0 / gamma).astype(np.float32)


def gopro_average(frames: Sequence[np.ndarray], gamma: float = 2.2) -> tuple[np.ndarray, np.ndarray]:
    """Average N uint8 frames in linear light (how the GoPro set was made): (blurred, middle frame).

    Averaging code values instead would darken blurred highlights (0 and 255 give 128, not 186);
    for even N the sharp frame is frames[N // 2], the later of the two middle ones.
    """
    if len(frames) == 0:
        raise ShapeError("gopro_average needs at least one frame")
    first = _check_uint8(frames[0])
    lut = np.power(np.arange(256, dtype=np.float64) / 255.0, gamma)
    acc = np.zeros(first.shape, dtype=np.float64)
    for f in frames:
        f = _check_uint8(f)
        if f.shape != first.shape:
            raise ShapeError(f"frames differ in shape: {first.shape} vs {f.shape}")
        acc += lut[f]
    blurred = np.power(acc / len(frames), 1.0 / gamma) * 255.0
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8), frames[len(frames) // 2].copy()


def _smooth_noise(rng: np.random.Generator, n: int, k: int, sigma: float) -> np.ndarray:
    """(n, k) stationary Gaussian-low-passed noise with unit standard deviation, whatever n is."""
    pad = int(4.0 * sigma + 0.5)
    g = np.exp(-0.5 * (np.arange(-pad, pad + 1) / max(sigma, 1e-6)) ** 2)
    g /= math.sqrt(float(np.sum(g * g)))  # unit gain for white noise
    white = rng.standard_normal((n + 2 * pad, k))
    return np.stack([np.convolve(white[:, i], g, mode="valid") for i in range(k)], axis=1)


def shake_path(rng: np.random.Generator, n_samples: int, *, sample_rate: float = 240.0,
               pan_speed: tuple[float, float] = (0.0, 500.0), jitter_px: float = 2.0,
               jitter_hz: float = 6.0, rotation_deg: float = 0.1) -> np.ndarray:
    """A hand-held camera path: (n, 3) float64 of dx, dy (px) and roll (degrees), starting at 0.

    A straight pan at a random direction and speed U(pan_speed) px/s, plus tremor: Gaussian-low-passed
    noise with std ``jitter_px`` and bandwidth about ``jitter_hz`` (hand tremor is roughly 4-12 Hz),
    and a slower roll with std ``rotation_deg``.
    """
    if n_samples < 1 or sample_rate <= 0 or jitter_hz <= 0:
        raise ValueError("need n_samples >= 1, sample_rate > 0 and jitter_hz > 0")
    t = np.arange(n_samples) / sample_rate
    direction, speed = rng.uniform(0, 2 * math.pi), rng.uniform(*pan_speed)
    sigma = sample_rate / (2 * math.pi * jitter_hz)
    path = np.zeros((n_samples, 3))
    path[:, :2] = speed * np.outer(t, [math.cos(direction), math.sin(direction)])
    path[:, :2] += jitter_px * _smooth_noise(rng, n_samples, 2, sigma)
    path[:, 2] = rotation_deg * _smooth_noise(rng, n_samples, 1, 2 * sigma)[:, 0]
    return path - path[0]


@dataclass(frozen=True)
class ShakeParams:
    """Shake model of ``make_pair(method="gopro")``; px are output px (made-up, GoPro-like scale).

    subframes=9 frames averaged (the GoPro set used 7-13); sample_rate=240 Hz (the GoPro Hero4 rate),
    so the exposure is 37.5 ms; pan_speed=(0, 500) px/s; jitter_px=2, jitter_hz=6, rotation_deg=0.1
    (see ``shake_path``); gamma=2.2 for averaging in linear light.
    """

    subframes: int = 9
    sample_rate: float = 240.0
    pan_speed: tuple[float, float] = (0.0, 500.0)
    jitter_px: float = 2.0
    jitter_hz: float = 6.0
    rotation_deg: float = 0.1
    gamma: float = 2.2

    def path(self, rng: np.random.Generator, n: int, sample_rate: float | None = None) -> np.ndarray:
        return shake_path(rng, n, sample_rate=sample_rate or self.sample_rate, pan_speed=self.pan_speed,
                          jitter_px=self.jitter_px, jitter_hz=self.jitter_hz, rotation_deg=self.rotation_deg)


#: Default shake for videos: a slow pan with stronger tremor (a 2 s clip must stay inside the photo).
VIDEO_SHAKE = ShakeParams(pan_speed=(10.0, 60.0), jitter_px=6.0, jitter_hz=4.0, rotation_deg=0.2)


def _view(photo: np.ndarray, centre: tuple[float, float], scale: float, roll_deg: float,
          size: tuple[int, int]) -> np.ndarray:
    """Render the (W, H) view whose centre sits at ``centre`` in the photo, scaled and rolled."""
    w, h = size
    a = math.radians(roll_deg)
    rot = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = np.hstack([rot, (np.asarray(centre) - rot @ np.array([(w - 1) / 2, (h - 1) / 2]))[:, None]])
    return cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT_101)


def simulate_shake_video(image_uint8: np.ndarray, rng: np.random.Generator, frames: int = 48,
                         size: tuple[int, int] = (640, 360), fps: float = 24.0, subframes: int = 9,
                         exposure: float = 1.0, gamma: float = 2.2,
                         shake: ShakeParams = VIDEO_SHAKE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``frames`` (blur, sharp) uint8 pairs of a shaky hand-held pan over a still photo.

    The camera path is sampled at fps*subframes; frame k averages (in linear light) the first
    round(exposure*subframes) subframes of its slot (exposure = shutter-open fraction of 1/fps), and
    its sharp twin is the middle one. The photo is resized once so the whole path stays inside it.
    """
    img, (w, h) = _check_uint8(image_uint8), size
    if frames < 1 or subframes < 1 or w < 1 or h < 1 or fps <= 0 or not 0 < exposure <= 1:
        raise ValueError("need frames, subframes, W, H >= 1, fps > 0 and 0 < exposure <= 1")
    return _shake_frames(img, rng, frames, (w, h), fps, subframes, exposure, gamma, shake)


def _shake_frames(img: np.ndarray, rng: np.random.Generator, frames: int, size: tuple[int, int],
                  fps: float, subframes: int, exposure: float, gamma: float,
                  shake: ShakeParams) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The generator behind ``simulate_shake_video`` (split off so bad arguments fail at the call)."""
    w, h = size
    n_open = max(1, round(exposure * subframes))
    path = shake.path(rng, frames * subframes, sample_rate=fps * subframes)
    path[:, :2] -= (path[:, :2].max(axis=0) + path[:, :2].min(axis=0)) / 2
    ax, ay = np.abs(path[:, :2]).max(axis=0)
    a = math.radians(float(np.abs(path[:, 2]).max()))
    need_w = w * math.cos(a) + h * math.sin(a) + 2 * ax + 2
    need_h = h * math.cos(a) + w * math.sin(a) + 2 * ay + 2
    scale = min(img.shape[1] / need_w, img.shape[0] / need_h)  # photo px per output px
    if scale > 1:  # shrink once with area averaging instead of aliasing in every warp
        img = cv2.resize(img, (max(1, round(img.shape[1] / scale)), max(1, round(img.shape[0] / scale))),
                         interpolation=cv2.INTER_AREA)
        scale = min(img.shape[1] / need_w, img.shape[0] / need_h)
    elif scale < 0.999:
        log.debug("photo is smaller than the shaky view: upscaling it x%.2f", 1 / scale)
    cx, cy = (img.shape[1] - 1) / 2, (img.shape[0] - 1) / 2
    for k in range(frames):
        subs = [_view(img, (cx + scale * dx, cy + scale * dy), scale, roll, (w, h))
                for dx, dy, roll in path[k * subframes:k * subframes + n_open]]
        yield gopro_average(subs, gamma)


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


def write_video_pair(image_uint8: np.ndarray, out_dir: str | Path, rng: np.random.Generator,
                     frames: int = 48, size: tuple[int, int] = (640, 360), fps: float = 24.0,
                     progress: bool | None = None, **kwargs) -> tuple[Path, Path]:
    """Write ``blur.mp4`` and ``sharp.mp4`` (mp4v, same frame count) from an RGB/gray photo.

    Both files appear only when complete (temp name in the same folder, then ``os.replace``).
    Extra keyword arguments go to ``simulate_shake_video``.
    """
    out = _out_dir(out_dir)
    finals = (out / "blur.mp4", out / "sharp.mp4")
    tmps = tuple(out / f".{p.stem}.{os.getpid()}.tmp.mp4" for p in finals)
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    pairs = simulate_shake_video(image_uint8, rng, frames=frames, size=size, fps=fps, **kwargs)
    writers = [cv2.VideoWriter(str(t), fourcc, float(fps), tuple(size)) for t in tmps]
    done = False
    try:
        if not all(wr.isOpened() for wr in writers):
            raise DeblurError("cannot open an mp4v video writer", path=out,
                              hint="check the folder is writable and OpenCV was built with FFmpeg")
        for blur, sharp in tqdm(pairs, total=frames, desc="video", unit="frame",
                                disable=not _progress(progress)):
            writers[0].write(_to_bgr(blur))
            writers[1].write(_to_bgr(sharp))
        done = True
    finally:
        for wr in writers:
            wr.release()
        for t, f in zip(tmps, finals):
            if done:
                os.replace(t, f)
            else:
                t.unlink(missing_ok=True)
    return finals


def make_pair(sharp_uint8: np.ndarray, rng: np.random.Generator, method: str = "trajectory",
              params: TrajectoryParams | ShakeParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(blurred, sharp) uint8 of the input's size, aligned pixel for pixel.

    "trajectory": one random DeblurGAN PSF. "gopro": ``subframes`` views along a shake path, with
    the path pinned to zero at the middle subframe so the ground truth is the input itself, averaged
    in linear light (borders reflect for the few px the views move).
    """
    img = _check_uint8(sharp_uint8)
    kinds = {"trajectory": TrajectoryParams, "gopro": ShakeParams}
    if method not in kinds:
        raise InputError(f"unknown blur method {method!r}", hint="use 'trajectory' or 'gopro'")
    sp = kinds[method]() if params is None else params
    if not isinstance(sp, kinds[method]):
        raise TypeError(f"method {method!r} takes {kinds[method].__name__}, got {type(sp).__name__}")
    if isinstance(sp, TrajectoryParams):
        return blur_image(img, rng, sp), img.copy()
    path = sp.path(rng, sp.subframes)
    path -= path[sp.subframes // 2]
    h, w = img.shape[:2]
    c = ((w - 1) / 2, (h - 1) / 2)
    subs = [img if not (dx or dy or roll) else _view(img, (c[0] + dx, c[1] + dy), 1.0, roll, (w, h))
            for dx, dy, roll in path]
    return gopro_average(subs, sp.gamma)


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
