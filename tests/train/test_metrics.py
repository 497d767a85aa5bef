import cv2
import numpy as np
import pytest

from deblur.runtime.errors import ShapeError
from deblur.runtime.images import read_rgb
from deblur.train.metrics import psnr, ssim

skm = pytest.importorskip("skimage.metrics")


def _pairs(data_dir):
    paths = sorted((data_dir / "sharp" / "kodak24").glob("*.png"))[:2] + sorted((data_dir / "sharp" / "skimage-0.26.0").glob("c*.png"))[:1]
    for p in paths:
        sharp = read_rgb(p)[:241, :319]  # odd sizes on purpose
        yield p.name, sharp, cv2.blur(sharp, (7, 1))
        noisy = np.clip(sharp.astype(int) + np.random.default_rng(0).integers(-20, 21, sharp.shape), 0, 255).astype(np.uint8)
        yield p.name + "+noise", sharp, noisy


def test_agree_with_skimage_on_real_images(data_dir):
    n = 0
    for name, a, b in _pairs(data_dir):
        ref_ssim = skm.structural_similarity(a, b, gaussian_weights=True, use_sample_covariance=False, channel_axis=-1, data_range=255)
        assert ssim(a, b) == pytest.approx(ref_ssim, abs=1e-9), name
        assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9), name
        n += 1
    assert n >= 4


def test_gray_agrees_with_skimage(data_dir):
    g = cv2.imread(str(data_dir / "sharp" / "skimage-0.26.0" / "camera.png"), cv2.IMREAD_GRAYSCALE)
    b = cv2.GaussianBlur(g, (5, 5), 1.0)
    ref = skm.structural_similarity(g, b, gaussian_weights=True, use_sample_covariance=False, data_range=255)
    assert ssim(g, b) == pytest.approx(ref, abs=1e-9)


def test_identical_and_errors():
    a = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert psnr(a, a) == float("inf") and ssim(a, a) == pytest.approx(1.0)
    with pytest.raises(ShapeError):
        psnr(a, a[:10])
    with pytest.raises(ShapeError, match="uint8"):
        ssim(a.astype(np.float32), a.astype(np.float32))
    with pytest.raises(ShapeError, match="11x11"):
        ssim(a[:5], a[:5])
