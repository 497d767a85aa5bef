"""Camera shake: hand-held shake paths, GoPro-style blurred/sharp pairs, and the shaky-video simulator.

Pure numpy/OpenCV synthesis, no file I/O: views along a shake path are averaged in linear light
(``psf.gopro_average``). Every random function takes a ``numpy.random.Generator``.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from deblur.runtime.errors import InputError
from deblur.train.psf import (
    CURVES,
    TrajectoryParams,
    blur_image,
    boost_highlights,
    check_uint8,
    convolve,
    crop_psf,
    from_linear,
    gopro_average,
    random_psf,
    to_linear,
    to_uint8,
)

log = logging.getLogger("deblur")


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
        raise InputError(f"need n_samples >= 1, sample_rate > 0 and jitter_hz > 0, got {n_samples}, "
                         f"{sample_rate}, {jitter_hz}", hint="pass positive values")
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
    """Shake model of ``make_pair(method="gopro")`` and ``simulate_shake_video``; px are output px
    (made-up, GoPro-like scale).

    subframes=9 frames averaged (the GoPro set used 7-13); sample_rate=240 Hz (the GoPro Hero4 rate),
    so the exposure is 37.5 ms; pan_speed=(0, 500) px/s; jitter_px=2, jitter_hz=6, rotation_deg=0.1
    (see ``shake_path``); gamma=2.2 for averaging in linear light. ``simulate_shake_video`` samples
    the path at fps*subframes instead of ``sample_rate``.

    max_step=0.0: the drawn sub-frames only (a fast pan moves ~2 px between them and leaves
    discrete ghosts). max_step > 0 interpolates the path linearly between drawn sub-frames, each
    gap into enough pieces that no view moves more than max_step px (at most ``MAX_VIEWS`` views):
    a continuous smear. ``make_pair`` then renders the views' translations as one PSF (bilinear
    splats, one convolution whatever the count; the roll inside one exposure, under 0.1 degree
    here, about 0.3 px at a 256 px crop's corner, is left out); ``simulate_shake_video`` warps
    every view, roll included.
    """

    subframes: int = 9
    sample_rate: float = 240.0
    pan_speed: tuple[float, float] = (0.0, 500.0)
    jitter_px: float = 2.0
    jitter_hz: float = 6.0
    rotation_deg: float = 0.1
    gamma: float = 2.2
    max_step: float = 0.0

    def __post_init__(self) -> None:
        if self.max_step < 0:
            raise InputError(f"max_step must be >= 0, got {self.max_step}", hint="0 = drawn sub-frames only; 0.5 px is smooth")

    def path(self, rng: np.random.Generator, n: int, sample_rate: float | None = None) -> np.ndarray:
        return shake_path(rng, n, sample_rate=sample_rate or self.sample_rate, pan_speed=self.pan_speed,
                          jitter_px=self.jitter_px, jitter_hz=self.jitter_hz, rotation_deg=self.rotation_deg)


#: Cap on the views one exposure is interpolated into (``ShakeParams.max_step``).
MAX_VIEWS = 256


def dense_path(path: np.ndarray, max_step: float) -> tuple[np.ndarray, int]:
    """(views, m): ``path`` (n, 3) with each gap linearly cut into m pieces, m the smallest that keeps every
    move at or under ``max_step`` px (and the total at most ``MAX_VIEWS``); drawn sample i is view i * m."""
    n = len(path)
    if n < 2 or max_step <= 0:
        return path, 1
    gap = float(np.hypot(*np.diff(path[:, :2], axis=0).T).max())
    m = max(1, min(math.ceil(gap / max_step), (MAX_VIEWS - 1) // (n - 1)))
    t = np.arange((n - 1) * m + 1) / m
    return np.stack([np.interp(t, np.arange(n), path[:, j]) for j in range(path.shape[1])], axis=1), m


def path_psf(offsets: np.ndarray) -> np.ndarray:
    """The PSF of averaging views translated by ``offsets`` (k, 2) px (view(x) = image(x + d)): bilinear
    splats at -d around the centre of an odd square, equal weights, summing to 1."""
    d = -np.asarray(offsets, dtype=np.float64)[:, :2]
    half = math.ceil(float(np.abs(d).max())) + 1
    side = 2 * half + 1
    x, y = d[:, 0] + half, d[:, 1] + half
    c, r = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - c, y - r
    acc = np.zeros(side * side)
    for rr, cc, w in ((r, c, (1 - fx) * (1 - fy)), (r, c + 1, fx * (1 - fy)), (r + 1, c, (1 - fx) * fy),
                      (r + 1, c + 1, fx * fy)):
        acc += np.bincount(rr * side + cc, weights=w, minlength=side * side)
    psf = acc.reshape(side, side)
    return crop_psf((psf / psf.sum()).astype(np.float32))


def _gopro_path(rng: np.random.Generator, sp: ShakeParams) -> np.ndarray:
    """The drawn sub-frame path, pinned to zero at the middle one (the ground truth)."""
    path = sp.path(rng, sp.subframes)
    return path - path[sp.subframes // 2]


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
                         size: tuple[int, int] = (640, 360), fps: float = 24.0, *, exposure: float = 1.0,
                         shake: ShakeParams = VIDEO_SHAKE) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``frames`` (blur, sharp) uint8 pairs of a shaky hand-held pan over a still photo.

    ``size`` is (W, H). The camera path is sampled at fps*shake.subframes; frame k averages (in
    linear light, ``shake.gamma``) the first round(exposure*subframes) subframes of its slot
    (exposure = shutter-open fraction of 1/fps), and its sharp twin is the middle one. The photo is
    resized once so the whole path stays inside it.
    """
    img, (w, h) = check_uint8(image_uint8), size
    if frames < 1 or shake.subframes < 1 or w < 1 or h < 1 or fps <= 0 or not 0 < exposure <= 1:
        raise InputError(f"need frames, subframes, W, H >= 1, fps > 0 and 0 < exposure <= 1, got frames={frames}, "
                         f"subframes={shake.subframes}, size={size}, fps={fps}, exposure={exposure}",
                         hint="pass values in those ranges")
    return _shake_frames(img, rng, frames, (w, h), fps, exposure, shake)


def _shake_frames(img: np.ndarray, rng: np.random.Generator, frames: int, size: tuple[int, int],
                  fps: float, exposure: float, shake: ShakeParams) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The generator behind ``simulate_shake_video`` (split off so bad arguments fail at the call)."""
    w, h = size
    subframes = shake.subframes
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
        slot = path[k * subframes:k * subframes + n_open]
        if shake.max_step > 0:
            views, m = dense_path(slot, shake.max_step)
            subs = [_view(img, (cx + scale * dx, cy + scale * dy), scale, roll, (w, h)) for dx, dy, roll in views]
            yield _average_linear(subs, shake.gamma), subs[(n_open // 2) * m].copy()
        else:
            subs = [_view(img, (cx + scale * dx, cy + scale * dy), scale, roll, (w, h)) for dx, dy, roll in slot]
            yield gopro_average(subs, shake.gamma)


def _average_linear(frames: list[np.ndarray], gamma: float) -> np.ndarray:
    """``gopro_average``'s blurred frame in float32 (for the many views of ``max_step``)."""
    acc = np.zeros(frames[0].shape, np.float32)
    for f in frames:
        acc += to_linear(f, "gamma", gamma)
    return to_uint8(from_linear(acc / len(frames), "gamma", gamma))


def make_pair(sharp_uint8: np.ndarray, rng: np.random.Generator, method: str = "trajectory",
              params: TrajectoryParams | ShakeParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(blurred, sharp) uint8 of the input's size, aligned pixel for pixel.

    "trajectory": one random DeblurGAN PSF. "gopro": ``subframes`` views along a shake path, with
    the path pinned to zero at the middle subframe so the ground truth is the input itself, averaged
    in linear light (borders reflect for the few px the views move).
    """
    img = check_uint8(sharp_uint8)
    sp = _method_params(method, params)
    if isinstance(sp, TrajectoryParams):
        return blur_image(img, rng, sp), img.copy()
    path = _gopro_path(rng, sp)
    if sp.max_step > 0:
        psf = path_psf(dense_path(path, sp.max_step)[0])
        return to_uint8(from_linear(convolve(to_linear(img, "gamma", sp.gamma), psf), "gamma", sp.gamma)), img.copy()
    h, w = img.shape[:2]
    c = ((w - 1) / 2, (h - 1) / 2)
    subs = [img if not (dx or dy or roll) else _view(img, (c[0] + dx, c[1] + dy), 1.0, roll, (w, h))
            for dx, dy, roll in path]
    return gopro_average(subs, sp.gamma)


def _method_params(method: str, params: TrajectoryParams | ShakeParams | None) -> TrajectoryParams | ShakeParams:
    """The blur method's parameters (its defaults for None); InputError for an unknown method or a mismatch."""
    kinds = {"trajectory": TrajectoryParams, "gopro": ShakeParams}
    if method not in kinds:
        raise InputError(f"unknown blur method {method!r}", hint="use 'trajectory' or 'gopro'")
    sp = kinds[method]() if params is None else params
    if not isinstance(sp, kinds[method]):
        raise InputError(f"blur method {method!r} takes {kinds[method].__name__}, got {type(sp).__name__}",
                         hint=f"pass a {kinds[method].__name__} or None for the defaults")
    return sp


@dataclass(frozen=True)
class Realism:
    """Realistic-blur options for ``render`` (RSBlur, Rim et al. 2022: each step below closed part of the
    gap between synthetic and real blur). All off by default.

    linear=False: True blurs the trajectory branch in linear light (inverse camera curve before,
    the curve after) instead of in code values (the paper's way, which darkens blurred highlights);
    the GoPro-style branch always averages in linear light. curve="gamma": the camera curve, a
    2.2 power ("gamma", what ``gopro_average`` uses) or the sRGB curve ("srgb"), for both
    branches here and for ``sensor.finish`` (``ShakeParams.gamma`` is not used). highlights=0.0:
    probability per image of saturated highlights (``psf.boost_highlights``: pixels whose every
    channel is above code value ``highlight_threshold`` scaled up to x U(1.5, ``highlight_gain``) in
    linear light before the blur, clipped after), so lamps and glints smear into bright streaks;
    needs linear.
    """

    linear: bool = False
    curve: str = "gamma"
    highlights: float = 0.0
    highlight_gain: float = 4.0
    highlight_threshold: float = 0.98

    def __post_init__(self) -> None:
        if self.curve not in CURVES:
            raise InputError(f"unknown camera curve {self.curve!r}", hint=f"use one of {', '.join(CURVES)}")
        if not 0 <= self.highlights <= 1 or self.highlight_gain < 1.5 or not 0 < self.highlight_threshold < 1:
            raise InputError(f"bad highlight options: probability {self.highlights} (in [0, 1]), gain "
                             f"{self.highlight_gain} (>= 1.5), threshold {self.highlight_threshold} (in (0, 1))")
        if self.highlights > 0 and not self.linear:
            raise InputError("saturated highlights need linear-light blur", hint="set linear=True")

    @property
    def active(self) -> bool:
        return self.linear or self.highlights > 0 or self.curve != "gamma"


def render(sharp_uint8: np.ndarray, rng: np.random.Generator, method: str = "trajectory",
           params: TrajectoryParams | ShakeParams | None = None, realism: Realism = Realism(),
           psf: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(blurred float32, sharp uint8, linear): ``make_pair`` before the camera's clip and curve.

    The blurred image is in linear light (``linear`` True: the GoPro-style branch, or ``realism.linear``)
    and not clipped, so boosted highlights keep their energy until ``sensor.finish`` clips them
    (after adding sensor noise) and applies ``realism.curve``; or in code values (``linear`` False).
    ``psf`` (e.g. from a ``kernel_bank.KernelBank``) replaces the trajectory branch's random PSF;
    the GoPro-style branch renders its (interpolated, if ``max_step``) path as one PSF. Draws, in
    order: the trajectory PSF (unless given) or the shake path, then the highlight coin and gain.
    """
    img = check_uint8(sharp_uint8)
    sp = _method_params(method, params)
    if isinstance(sp, TrajectoryParams):
        kernel = crop_psf(random_psf(rng, sp)) if psf is None else psf
        linear = realism.linear
    else:
        path = _gopro_path(rng, sp)
        kernel = path_psf(dense_path(path, sp.max_step)[0] if sp.max_step > 0 else path)
        linear = True
    if not linear:
        return convolve(img.astype(np.float32) / 255.0, kernel), img.copy(), False
    lin = to_linear(img, realism.curve)
    if realism.highlights > 0 and rng.random() < realism.highlights:
        lin = boost_highlights(lin, img, rng.uniform(1.5, realism.highlight_gain), realism.highlight_threshold)
    return convolve(lin, kernel), img.copy(), True
