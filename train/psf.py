"""Blur kernels: DeblurGAN random camera trajectories, their PSFs, convolution, linear-light averaging.

Pure numpy/OpenCV synthesis, no file I/O (no torch, no scipy). Every random function takes a
``numpy.random.Generator``, so a seed gives the same blur on every machine. Trajectories follow
the authors' 2018 ``motion_blur/`` code, with the departures stated where they happen.
"""
from __future__ import annotations

import cmath
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from deblur.runtime.errors import InputError, ShapeError

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
            raise InputError(f"need canvas >= 8 and iters >= 2, got {self.canvas}, {self.iters}",
                             hint="raise canvas or iters")
        if not 0 < self.max_len <= self.canvas - 4:
            raise InputError(f"max_len must be in (0, canvas - 4 = {self.canvas - 4}], got {self.max_len}",
                             hint="shorten max_len or enlarge canvas")
        f = self.fractions
        if not f or any(not 0 < a <= 1 for a in f) or any(b <= a for a, b in zip(f, f[1:])):
            raise InputError(f"fractions must increase within (0, 1], got {f}",
                             hint="give increasing exposure fractions, e.g. (0.01, 0.1, 0.5, 1.0)")
        if self.expl is not None and self.expl < 0:
            raise InputError(f"expl must be >= 0, got {self.expl}", hint="use expl >= 0, or None to draw it")


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
        raise InputError("trajectory has negative coordinates", hint="pass a path that lies inside the canvas")
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
            raise InputError("trajectory leaves the canvas (or has no weight)", hint="shorten max_len")
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
        raise InputError(f"fraction_index must be in 0..{len(psfs) - 1}, got {fraction_index}",
                         hint="pick an index of params.fractions, or None to draw one")
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
        raise InputError(f"border must be 'reflect' or 'zero', got {border!r}", hint="use 'reflect' or 'zero'")
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


def check_uint8(image: np.ndarray) -> np.ndarray:
    """The image as an array if it is HxW or HxWxC uint8; ShapeError otherwise."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ShapeError(f"need an HxW or HxWxC uint8 image, got {img.dtype} {img.shape}")
    return img


def blur_image(image_uint8: np.ndarray, rng: np.random.Generator,
               params: TrajectoryParams = TrajectoryParams()) -> np.ndarray:
    """Blur a uint8 RGB or gray image with one random trajectory PSF; uint8, same shape."""
    img = check_uint8(image_uint8)
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
    first = check_uint8(frames[0])
    lut = np.power(np.arange(256, dtype=np.float64) / 255.0, gamma)
    acc = np.zeros(first.shape, dtype=np.float64)
    for f in frames:
        f = check_uint8(f)
        if f.shape != first.shape:
            raise ShapeError(f"frames differ in shape: {first.shape} vs {f.shape}")
        acc += lut[f]
    blurred = np.power(acc / len(frames), 1.0 / gamma) * 255.0
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8), frames[len(frames) // 2].copy()



# --- realistic synthesis helpers (used when the realism options are on; the functions above are unchanged) ---

#: Camera curves: "gamma" is a pure 2.2 power law (what ``gopro_average`` uses), "srgb" the IEC 61966-2-1
#: curve, whose linear toe (slope 12.92 below 0.0031308) keeps noise in the shadows from being blown up.
CURVES = ("gamma", "srgb")


def _check_curve(curve: str) -> None:
    if curve not in CURVES:
        raise InputError(f"unknown camera curve {curve!r}", hint=f"use one of {', '.join(CURVES)}")


@functools.lru_cache(maxsize=8)
def _decode_table(curve: str, gamma: float) -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    lin = np.power(v, gamma) if curve == "gamma" else np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    table = lin.astype(np.float32)
    table.flags.writeable = False  # shared by every caller
    return table


def to_linear(x: np.ndarray, curve: str = "gamma", gamma: float = 2.2) -> np.ndarray:
    """Code values (uint8 via a 256-entry table, or float in [0,1]) to linear light, float32 (inverse camera curve)."""
    _check_curve(curve)
    a = np.asarray(x)
    if a.dtype == np.uint8:
        table = _decode_table(curve, gamma)
        return cv2.LUT(a, table) if a.ndim == 2 or (a.ndim == 3 and a.shape[2] <= 4) else table[a]
    a = np.clip(a.astype(np.float32), 0.0, 1.0)
    if curve == "gamma":
        return cv2.pow(a, float(gamma)).reshape(a.shape)
    return np.where(a <= 0.04045, a / 12.92, cv2.pow((a + 0.055) / 1.055, 2.4).reshape(a.shape)).astype(np.float32)


def from_linear(x: np.ndarray, curve: str = "gamma", gamma: float = 2.2) -> np.ndarray:
    """Linear light (clipped to [0,1]) to float32 code values in [0,1]: the camera curve."""
    _check_curve(curve)
    a = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    if curve == "gamma":
        return cv2.pow(a, 1.0 / gamma).reshape(a.shape)
    return np.where(a <= 0.0031308, a * 12.92, 1.055 * cv2.pow(a, 1 / 2.4).reshape(a.shape) - 0.055).astype(np.float32)


def to_uint8(code: np.ndarray) -> np.ndarray:
    """Float code values to uint8 (clipped, rounded half to even like ``np.round``)."""
    return np.clip(np.rint(np.asarray(code, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def boost_highlights(linear: np.ndarray, code_uint8: np.ndarray, gain: float, threshold: float = 0.98) -> np.ndarray:
    """Saturated highlights: linear light of near-white pixels scaled up to ``gain``.

    An 8-bit photo clips lamps and sun glints at 255, but their real radiance is many times that:
    blurred, they should smear into bright streaks, not grey smudges. Each pixel is scaled (all
    channels alike, so hues stay) by 1 + (gain - 1) * ramp, the ramp rising from 0 where its
    smallest channel is at code value ``threshold`` to 1 where it is 255: only pixels clipped in
    every channel count (a bright yellow wall with red at 255 is not an over-exposed light, and
    boosting red alone would tint it). Everything else is unchanged. Clip after blurring, not before.
    """
    code = np.asarray(code_uint8)
    lowest = code if code.ndim == 2 else code.min(axis=2)
    ramp = np.clip((lowest.astype(np.float32) / 255.0 - threshold) / max(1.0 - threshold, 1e-6), 0.0, 1.0)
    scale = 1.0 + (float(gain) - 1.0) * ramp
    lin = np.asarray(linear, dtype=np.float32)
    return (lin * (scale if lin.ndim == 2 else scale[..., None])).astype(np.float32)


def crop_psf(psf: np.ndarray) -> np.ndarray:
    """The smallest odd-sided window of a PSF centred on its centre pixel ((h-1)//2, (w-1)//2) holding all of it.

    Convolving with the cropped PSF gives the same image (the centre stays the centre) at a fraction of the cost.
    """
    k = np.asarray(psf, dtype=np.float32)
    rows, cols = np.nonzero(k)
    if rows.size == 0:
        raise InputError("PSF is all zeros", hint="pass a PSF with positive weight")
    cy, cx = (k.shape[0] - 1) // 2, (k.shape[1] - 1) // 2
    hy = int(max(cy - rows.min(), rows.max() - cy))
    hx = int(max(cx - cols.min(), cols.max() - cx))
    out = np.zeros((2 * hy + 1, 2 * hx + 1), np.float32)
    r0, r1 = max(0, cy - hy), min(k.shape[0], cy + hy + 1)
    c0, c1 = max(0, cx - hx), min(k.shape[1], cx + hx + 1)
    out[r0 - (cy - hy):r1 - (cy - hy), c0 - (cx - hx):c1 - (cx - hx)] = k[r0:r1, c0:c1]
    return out


#: Kernels up to this side are applied directly (``cv2.filter2D``); larger ones by DFT.
DIRECT_MAX = 11


def convolve(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``apply_psf(image, psf, "reflect")`` without the clipping, and fast for large kernels.

    Float32 HxW or HxWxC in, same shape out, any range (linear light with boosted highlights is
    allowed above 1). Small kernels go to ``cv2.filter2D``; larger ones to one DFT per channel on
    a reflect-padded image of an FFT-friendly size (``cv2.filter2D`` picks slow sizes for them).
    """
    img = np.asarray(image, dtype=np.float32)
    k = np.asarray(psf, dtype=np.float32)
    if img.ndim not in (2, 3) or k.ndim != 2:
        raise ShapeError(f"need an HxW or HxWxC image and a 2-D PSF, got {img.shape} and {k.shape}")
    kh, kw = k.shape
    if max(kh, kw) <= DIRECT_MAX:
        flipped = np.ascontiguousarray(k[::-1, ::-1])
        chans = [img] if img.ndim == 2 or img.shape[2] <= 4 else [img[:, :, i] for i in range(img.shape[2])]
        outs = [cv2.filter2D(np.ascontiguousarray(c), cv2.CV_32F, flipped, anchor=(kw // 2, kh // 2),
                             borderType=cv2.BORDER_REFLECT_101) for c in chans]
        return (outs[0] if len(outs) == 1 else np.stack(outs, axis=2)).reshape(img.shape)
    h, w = img.shape[:2]
    cy, cx = (kh - 1) // 2, (kw - 1) // 2  # out[y, x] = sum k[i, j] * in[y + cy - i, x + cx - j]
    top, left, bottom, right = cy, cx, kh - 1 - cy, kw - 1 - cx
    ph, pw = cv2.getOptimalDFTSize(h + kh - 1), cv2.getOptimalDFTSize(w + kw - 1)
    kpad = np.zeros((ph, pw), np.float32)
    kpad[:kh, :kw] = k
    kf = cv2.dft(kpad, flags=cv2.DFT_COMPLEX_OUTPUT)
    chans = [img] if img.ndim == 2 else [img[:, :, i] for i in range(img.shape[2])]
    outs = []
    for c in chans:
        padded = cv2.copyMakeBorder(np.ascontiguousarray(c), top, bottom, left, right, cv2.BORDER_REFLECT_101)
        buf = np.zeros((ph, pw), np.float32)
        buf[:padded.shape[0], :padded.shape[1]] = padded
        spec = cv2.mulSpectrums(cv2.dft(buf, flags=cv2.DFT_COMPLEX_OUTPUT), kf, 0)
        full = cv2.idft(spec, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
        outs.append(full[kh - 1:kh - 1 + h, kw - 1:kw - 1 + w])
    return (outs[0] if len(outs) == 1 else np.stack(outs, axis=2)).reshape(img.shape).astype(np.float32)


def random_trajectories(rngs: Sequence[np.random.Generator], params: TrajectoryParams = TrajectoryParams(),
                        lengths: Sequence[float] | None = None) -> np.ndarray:
    """``random_trajectory`` for many generators at once: (N, iters) complex128, row i from ``rngs[i]``.

    Row i draws exactly what ``random_trajectory(rngs[i], params)`` draws and follows the same
    recurrence, stepped for all rows together (one numpy step per sample instead of a Python loop
    per path), so it matches that function to rounding. ``lengths`` gives each path its own
    full-exposure length (each at most canvas - 4; default params.max_len for all).
    """
    p = params
    n, m = p.iters, len(rngs)
    lens = np.full(m, p.max_len) if lengths is None else np.asarray(lengths, dtype=np.float64)
    if lens.shape != (m,) or np.any(lens <= 0) or np.any(lens > p.canvas - 4):
        raise InputError(f"need one length in (0, canvas - 4 = {p.canvas - 4}] per generator",
                         hint="shorten the paths or enlarge the canvas")
    given = (p.expl, p.centripetal, p.prob_big_shake, p.gaussian_shake, p.angle)
    scal = np.empty((m, 5))
    shake_u, turn_u = np.empty((m, n - 1)), np.empty((m, n - 1))
    noise = np.empty((m, n - 1), np.complex128)
    for i, r in enumerate(rngs):  # the same draws, in the same order, as random_trajectory
        drawn = [float(r.choice(EXPL_CHOICES)), *(r.uniform(size=4) * (0.7, 0.2, 10.0, 360.0))]
        scal[i] = [float(d if g is None else g) for d, g in zip(drawn, given)]
        shake_u[i], turn_u[i] = r.uniform(size=n - 1), r.uniform(size=n - 1)
        g = r.standard_normal((n - 1, 2))
        noise[i] = g[:, 0] + 1j * g[:, 1]
    expl, cp, pb, gs, angle = (scal[:, j] for j in range(5))
    step = lens / (n - 1)
    kick = np.where(shake_u < (pb * expl)[:, None], 2 * np.exp(1j * (np.pi + turn_u - 0.5)), 0)
    drive = (expl * step)[:, None] * (gs[:, None] * noise)  # expl * gs * noise * step
    pull = expl * cp * step
    v0 = np.exp(1j * np.radians(angle))
    v = np.where(expl > 0, v0 * expl, v0 * step)
    xs = np.zeros((m, n), np.complex128)
    x = np.zeros(m, np.complex128)
    for t in range(n - 1):
        v_new = v + v * kick[:, t] + drive[:, t] - pull * x
        speed = np.abs(v_new)
        ok = speed > 0
        v = np.where(ok, v_new / np.where(ok, speed, 1.0), v / np.abs(v)) * step
        x = x + v
        xs[:, t + 1] = x
    xs -= (xs.real.min(axis=1) + 1j * xs.imag.min(axis=1))[:, None]
    xs = xs - (xs[:, 0].real % 1.0 + 1j * (xs[:, 0].imag % 1.0))[:, None] + complex(1, 1)
    shift = np.ceil((p.canvas - xs.real.max(axis=1)) / 2) + 1j * np.ceil((p.canvas - xs.imag.max(axis=1)) / 2)
    return xs + shift[:, None]
