"""Classical baselines: the PSF is what it says, each method restores a blur it is given, search picks the best."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")

from deblur.train import baselines
from deblur.train.metrics import psnr
from deblur.train.psf import apply_psf


def _scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((96, 96, 3), np.uint8)
    for _ in range(30):
        x, y, r = rng.integers(8, 88, 2).tolist() + [int(rng.integers(3, 10))]
        img[max(0, y - r):y + r, max(0, x - r):x + r] = rng.integers(0, 256, 3)
    return img


@pytest.mark.parametrize("length,angle", [(7, 0), (9, 90), (11, 45)])
def test_motion_psf_is_a_normalised_line(length, angle):
    psf = baselines.motion_psf(length, angle)
    assert psf.shape[0] == psf.shape[1] and psf.shape[0] % 2 == 1 and psf.sum() == pytest.approx(1.0)
    ys, xs = np.nonzero(psf > psf.max() * 0.3)
    pts = np.stack([xs, ys], axis=1).astype(float)
    extent = np.linalg.norm(pts[:, None] - pts[None], axis=2).max() + 1  # end to end, along the line
    assert abs(extent - length) <= 2
    if angle == 0:
        assert ys.max() - ys.min() <= 1
    if angle == 90:
        assert xs.max() - xs.min() <= 1


def test_deconvolution_with_the_true_psf_beats_the_blur_and_search_finds_it():
    sharp = _scene()
    psf = baselines.motion_psf(11, 0)
    blurred = np.rint(apply_psf(sharp / 255.0, psf) * 255).astype(np.uint8)
    base = psnr(blurred, sharp)
    assert psnr(baselines.wiener(blurred, psf, 0.01), sharp) > base + 2
    assert psnr(baselines.richardson_lucy(blurred, psf, 10), sharp) > base + 1
    best = baselines.search("wiener", [(blurred, sharp)])
    assert best.params["angle"] == 0 and best.params["length"] in (11, 15)


def test_unknown_method_is_an_input_error():
    from deblur.runtime.errors import InputError

    with pytest.raises(InputError):
        baselines.candidates("magic")
