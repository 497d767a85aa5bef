"""A seeded bank of random-trajectory blur kernels, built once per run instead of one path per sample.

``random_trajectory`` steps a 2000-sample path in a Python loop (several ms per PSF); a training
run needs hundreds of thousands of blurred crops but gains nothing from that many distinct
kernels. ``KernelBank`` draws N trajectories once, all together (``psf.random_trajectories``),
splats their PSFs and crops each to its support, so a sample only picks one by index. Kernel i is
a pure function of (seed, i, params, min_len): the same on every machine, in every DataLoader
worker, and for any bank size (a bank of 100 is the first 100 kernels of a bank of 1000).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from deblur.runtime.errors import InputError
from deblur.train.psf import TrajectoryParams, crop_psf, random_trajectories, trajectory_psfs

_TAG = 0x6B62  # keeps the bank's generators apart from the datasets' (seed, index, epoch, k) ones
_CHUNK = 256  # trajectories stepped together: bounds memory (each is iters complex samples)


def path_lengths(rng_list: list[np.random.Generator], params: TrajectoryParams, min_len: float) -> np.ndarray | None:
    """Per-trajectory full-exposure lengths: log-uniform in [min_len, params.max_len] (one draw from each
    generator, before its trajectory draws), or None for the authors' fixed ``max_len`` (min_len = 0)."""
    if not min_len:
        return None
    lo, hi = math.log(min_len), math.log(params.max_len)
    return np.array([math.exp(r.uniform(lo, hi)) for r in rng_list])


class KernelBank:
    """``size`` random-trajectory PSFs from ``seed``: float32, odd-sided, centred, each summing to 1.

    ``min_len`` = 0 (default): the authors' model, every path ``params.max_len`` px long, and each
    trajectory gives one PSF per exposure fraction after the first (1/10, 1/2, 1 of the path by
    default, as ``random_psf`` draws them), so ``len(bank)`` is ``size * (len(fractions) - 1)``.
    ``min_len`` > 0: path lengths log-uniform in [min_len, max_len] px (short and long shake
    equally often per octave), full exposure only, one PSF per trajectory. ``draw`` picks one
    uniformly. Long shake needs a canvas of at least max_len + 4 px (``TrajectoryParams.canvas``).

    A path's length is not the blur's extent: these random walks curl and reverse, so measured
    over 300 trajectories the PSF's larger side is about 7 px (median) for 6 px paths, 17 px
    (90th percentile 27) for the authors' 60 px, and 24 px (90th percentile 48) for 80-120 px
    paths. Blur 30-60 px across needs paths of ~120 px (or the GoPro-style branch's fast pans).
    """

    def __init__(self, seed: int, size: int, params: TrajectoryParams | None = None, min_len: float = 0.0):
        params = TrajectoryParams() if params is None else params
        if int(seed) < 0 or int(size) < 1:
            raise InputError(f"need seed >= 0 and a bank size >= 1, got {seed}, {size}")
        if min_len and not 0 < min_len <= params.max_len:
            raise InputError(f"min_len must be 0 or in (0, max_len = {params.max_len}], got {min_len}",
                             hint="lower blur_min_len or raise blur_max_len")
        self.seed, self.size, self.params, self.min_len = int(seed), int(size), params, float(min_len)
        frac = params.fractions if len(params.fractions) == 1 else params.fractions[1:]
        splat = dataclasses.replace(params, fractions=(1.0,) if min_len else frac)
        self.kernels: list[np.ndarray] = []
        self.lengths: list[float] = []  # path length in px of each kernel (exposure fraction included)
        for start in range(0, self.size, _CHUNK):
            rngs = [np.random.default_rng([self.seed, i, _TAG]) for i in range(start, min(self.size, start + _CHUNK))]
            lens = path_lengths(rngs, params, self.min_len)
            paths = random_trajectories(rngs, params, lens)
            for j, path in enumerate(paths):
                full = params.max_len if lens is None else float(lens[j])
                for f, psf in zip(splat.fractions, trajectory_psfs(path, splat)):
                    self.kernels.append(crop_psf(psf))
                    self.lengths.append(full * f)

    def __len__(self) -> int:
        return len(self.kernels)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One kernel, uniformly (a single integer draw from ``rng``)."""
        return self.kernels[int(rng.integers(len(self.kernels)))]

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes for k in self.kernels)


@functools.lru_cache(maxsize=4)
def kernel_bank(seed: int, size: int, params: TrajectoryParams | None = None, min_len: float = 0.0) -> KernelBank:
    """The bank for these arguments, built once per process (training and validation sets share it;
    forked DataLoader workers inherit it)."""
    return KernelBank(seed, size, params, min_len)
