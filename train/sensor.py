"""Camera degradations for synthetic training inputs: shot and read noise, then JPEG.

Real blurred frames are also noisy and compressed; a model trained on clean synthetic blur learns
to sharpen noise and block edges into artefacts. ``degrade`` is applied to the blurred image only
(the target stays clean), so the network learns to deblur and denoise together. Off by default
(the paper's recipe has no noise); the bundled default model is trained with it on.

Two noise models: "srgb" (the original: Gaussian noise in 8-bit code values, variance
read^2 + shot * value) and "poisson-gaussian" (the camera's: added in linear light before the
camera curve, variance gain * x + read_var, as RSBlur and Brooks et al. 2019 synthesise it). With
the second, the curve's slope shapes the noise as a real camera's pipeline does: strongest in
the mid-dark tones, but bounded at black by the sRGB curve's linear toe (a pure 2.2 power curve
has infinite slope at 0 and turns faint linear noise into speckle in the shadows).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from deblur.train.psf import from_linear, to_linear, to_uint8

NOISE_MODELS = ("srgb", "poisson-gaussian")


@dataclass(frozen=True)
class SensorParams:
    """Per-image draws: read-noise sigma ~ U(0, ``read_max``) and shot-noise gain ~ U(0, ``shot_max``).

    Noise is in 8-bit code values: a pixel of value v gets N(0, read^2 + shot * v). With
    probability ``jpeg_prob`` the noisy image is JPEG-coded at a quality ~ U(``jpeg_min``, 95).

    ``model="poisson-gaussian"`` replaces that noise (read_max and shot_max must then be 0) by
    noise in linear light x in [0, 1], before the camera curve: N(0, gain * x + read_var) per
    pixel and channel, with gain ~ log-uniform(``gain``) per image and read_var following it as
    in Brooks et al. 2019 ("Unprocessing images", fitted to phone sensors):
    log read_var = 2.18 log gain + 1.20 + N(0, 0.26). Measured on blurred Kodak crops (sRGB curve,
    Immerkaer's estimator, 8-bit levels): gain 1e-4 -> sigma ~1, 1e-3 -> ~3, 4e-3 -> ~6, 1e-2 -> ~10
    (shadows more, highlights less). The default (1e-4, 4e-3) spans a clean daylight frame to a
    dim indoor one (median ~2 levels); the real blurred photos in shared/ (phone JPEGs) measure ~0.3.
    """

    read_max: float = 0.0
    shot_max: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_min: int = 40
    model: str = "srgb"
    gain: tuple[float, float] = (1e-4, 4e-3)

    def __post_init__(self) -> None:
        if self.read_max < 0 or self.shot_max < 0 or not 0 <= self.jpeg_prob <= 1 or not 1 <= self.jpeg_min <= 95:
            raise ValueError(f"bad sensor parameters {self}: noise >= 0, jpeg_prob in [0, 1], jpeg_min in [1, 95]")
        if self.model not in NOISE_MODELS:
            raise ValueError(f"unknown noise model {self.model!r}: use one of {', '.join(NOISE_MODELS)}")
        lo, hi = self.gain
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"bad poisson-gaussian gain range {self.gain}: need 0 < min <= max <= 1")
        if self.model == "poisson-gaussian" and (self.read_max > 0 or self.shot_max > 0):
            raise ValueError("the poisson-gaussian model replaces the 8-bit read/shot noise: set read_max = shot_max = 0")

    @property
    def active(self) -> bool:
        return self.read_max > 0 or self.shot_max > 0 or self.jpeg_prob > 0 or self.linear_noise

    @property
    def linear_noise(self) -> bool:
        """Noise is added in linear light (before the camera curve), by ``finish``."""
        return self.model == "poisson-gaussian"


def poisson_gaussian(linear: np.ndarray, rng: np.random.Generator, params: SensorParams) -> np.ndarray:
    """Linear light (clipped to [0, 1] first: the sensor saturates) plus Poisson-Gaussian noise, clipped; float32."""
    lo, hi = params.gain
    gain = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    read_var = math.exp(2.18 * math.log(gain) + 1.20 + 0.26 * rng.standard_normal())
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    sigma = np.sqrt(x * np.float32(gain) + np.float32(read_var))
    return np.clip(x + sigma * rng.standard_normal(x.shape, dtype=np.float32), 0.0, 1.0)


def finish(blurred: np.ndarray, rng: np.random.Generator, params: SensorParams, curve: str = "gamma",
           linear: bool = True) -> np.ndarray:
    """The camera after the optics: float blurred image (linear light if ``linear``, else code values,
    any range) -> [linear-light noise] -> clip -> camera curve -> uint8 -> ``degrade`` (8-bit noise, JPEG).

    With ``model="srgb"`` this is ``degrade(to_uint8(code values))``; with "poisson-gaussian" the
    noise goes in before the curve (``poisson_gaussian``), as in a camera.
    """
    img = np.asarray(blurred, dtype=np.float32)
    if params.linear_noise:
        noisy = poisson_gaussian(img if linear else to_linear(np.clip(img, 0.0, 1.0), curve), rng, params)
        code = from_linear(noisy, curve)
    else:
        code = from_linear(img, curve) if linear else img
    return _code_noise_and_jpeg(to_uint8(code), rng, params)


def degrade(image_uint8: np.ndarray, rng: np.random.Generator, params: SensorParams, curve: str = "gamma") -> np.ndarray:
    """Noisy, maybe JPEG-coded copy of a uint8 RGB (or gray) image; draws nothing when inactive.

    With ``model="poisson-gaussian"`` the image is taken back to linear light through ``curve``
    for the noise (``finish`` does that without the 8-bit detour).
    """
    if not params.active:
        return image_uint8
    if params.linear_noise:
        image_uint8 = to_uint8(from_linear(poisson_gaussian(to_linear(image_uint8, curve), rng, params), curve))
    return _code_noise_and_jpeg(image_uint8, rng, params)


def _code_noise_and_jpeg(image_uint8: np.ndarray, rng: np.random.Generator, params: SensorParams) -> np.ndarray:
    """The 8-bit part of ``degrade``: read/shot noise in code values, then JPEG; draws nothing when inactive."""
    if not params.active:
        return image_uint8
    img = image_uint8.astype(np.float32)
    read = float(rng.uniform(0, params.read_max))
    shot = float(rng.uniform(0, params.shot_max))
    if read > 0 or shot > 0:
        sigma = np.sqrt(read * read + shot * img)
        img += sigma * rng.standard_normal(img.shape, dtype=np.float32)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if params.jpeg_prob > 0 and rng.random() < params.jpeg_prob:
        quality = int(rng.integers(params.jpeg_min, 96))
        color = out.ndim == 3 and out.shape[2] == 3
        ok, buf = cv2.imencode(".jpg", out[..., ::-1] if color else out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:  # OpenCV codes BGR: flip so luma and chroma are those of the real colours
            dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
            out = np.ascontiguousarray(dec[..., ::-1]) if color else dec.reshape(out.shape)
    return out
