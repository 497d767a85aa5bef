"""Camera noise and JPEG on synthetic inputs: off draws nothing, on degrades the input only."""
from __future__ import annotations

import numpy as np
import pytest

from deblur.train.datasets import SyntheticDataset
from deblur.train.sensor import SensorParams, degrade


def _photo() -> np.ndarray:
    y, x = np.mgrid[0:96, 0:128]
    return np.stack([(x * 2) % 256, (y * 3) % 256, ((x + y) * 5) % 256], axis=2).astype(np.uint8)


def test_inactive_returns_the_input_and_draws_nothing():
    rng = np.random.default_rng(0)
    img = _photo()
    assert degrade(img, rng, SensorParams()) is img
    assert rng.random() == np.random.default_rng(0).random()  # the generator was not advanced


def test_noise_level_follows_the_model():
    """Read noise only, fixed sigma (read_max drawn near its top): the residual's std matches."""
    img = np.full((256, 256, 3), 128, np.uint8)
    stds = [float(np.std(degrade(img, np.random.default_rng(s), SensorParams(read_max=8.0)).astype(float) - 128))
            for s in range(20)]
    assert 0.5 < max(stds) <= 8.5 and min(stds) < max(stds)  # sigma ~ U(0, 8) per image
    shot = degrade(np.full((256, 256), 200, np.uint8), np.random.default_rng(1), SensorParams(shot_max=1.0))
    assert 0 < np.std(shot.astype(float)) < np.sqrt(200) + 1  # variance <= gain * value


def test_jpeg_is_applied_in_real_colours_and_keeps_shape_and_dtype():
    img = _photo()
    out = degrade(img, np.random.default_rng(3), SensorParams(jpeg_prob=1.0, jpeg_min=30))
    assert out.shape == img.shape and out.dtype == np.uint8
    d = np.abs(out.astype(int) - img).mean()
    assert 0 < d < 20
    # colour order survives: the red-dominant channel stays the red one
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    coded = degrade(red, np.random.default_rng(4), SensorParams(jpeg_prob=1.0, jpeg_min=90))
    assert coded[..., 0].mean() > 200 and coded[..., 2].mean() < 20


@pytest.mark.parametrize("bad", [dict(read_max=-1), dict(jpeg_prob=1.5), dict(jpeg_min=0), dict(jpeg_min=99)])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        SensorParams(**bad)


def test_dataset_degrades_the_blurred_input_only(tmp_path):
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), _photo())
    clean = SyntheticDataset(tmp_path, crop=64, seed=0, fixed=True)[0]
    noisy = SyntheticDataset(tmp_path, crop=64, seed=0, fixed=True, sensor=SensorParams(read_max=10, jpeg_prob=1.0))[0]
    assert np.array_equal(clean["sharp"].numpy(), noisy["sharp"].numpy())  # the target stays clean
    assert not np.array_equal(clean["blur"].numpy(), noisy["blur"].numpy())


# --- poisson-gaussian noise in linear light -----------------------------------------------------

def test_poisson_gaussian_follows_the_model_in_linear_light():
    """Fixed gain: the residual's variance is gain * x + read_var, read_var tied to the gain (Brooks et al.)."""
    from deblur.train.sensor import poisson_gaussian

    gain = 2e-3
    p = SensorParams(model="poisson-gaussian", gain=(gain, gain))
    for x in (0.05, 0.3, 0.8):
        lin = np.full((200, 200, 3), x, np.float32)
        var = float(np.var(poisson_gaussian(lin, np.random.default_rng(0), p) - x))
        read = np.exp(2.18 * np.log(gain) + 1.20)  # the median read variance
        assert 0.97 * gain * x <= var <= 1.03 * gain * x + 4 * read  # 120k samples: the estimate is within ~1 %
    flat = poisson_gaussian(np.full((64, 64), 3.0, np.float32), np.random.default_rng(1), p)
    assert flat.max() == 1.0 and flat.min() > 0.8  # saturated: clipped at full well, not below it


def test_srgb_curve_keeps_shadow_noise_bounded():
    """The same linear noise in the shadows: the sRGB curve's linear toe amplifies it far less than a 2.2 power."""
    from deblur.train.sensor import finish

    p = SensorParams(model="poisson-gaussian", gain=(1e-3, 1e-3))
    dark = np.full((128, 128, 3), 0.0005, np.float32)
    std = {c: float(finish(dark, np.random.default_rng(2), p, c).astype(float).std()) for c in ("gamma", "srgb")}
    assert std["srgb"] < 0.7 * std["gamma"], std


def test_finish_is_degrade_after_the_curve_for_srgb_noise():
    from deblur.train.psf import from_linear, to_linear, to_uint8
    from deblur.train.sensor import finish

    img = _photo()
    p = SensorParams(read_max=5.0, jpeg_prob=1.0)
    lin = to_linear(img, "srgb")
    out = finish(lin, np.random.default_rng(7), p, "srgb")
    assert np.array_equal(out, degrade(to_uint8(from_linear(lin, "srgb")), np.random.default_rng(7), p))
    assert np.array_equal(finish(img / 255.0, np.random.default_rng(7), p, linear=False),
                          degrade(img, np.random.default_rng(7), p))


@pytest.mark.parametrize("bad", [dict(model="gauss"), dict(model="poisson-gaussian", read_max=2.0), dict(gain=(0.0, 1e-3)),
                                 dict(gain=(1e-2, 1e-3))])
def test_bad_poisson_gaussian_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        SensorParams(**bad)


def test_poisson_gaussian_noise_is_on_the_input_only(tmp_path):
    import cv2

    from deblur.train.datasets import SynthOptions
    from deblur.train.shake import Realism

    cv2.imwrite(str(tmp_path / "a.png"), _photo())
    synth = SynthOptions(realism=Realism(linear=True, curve="srgb"))
    clean = SyntheticDataset(tmp_path, crop=64, seed=0, fixed=True, synth=synth)[0]
    noisy = SyntheticDataset(tmp_path, crop=64, seed=0, fixed=True, synth=synth,
                             sensor=SensorParams(model="poisson-gaussian", gain=(5e-3, 5e-3), jpeg_prob=1.0))[0]
    assert np.array_equal(clean["sharp"].numpy(), noisy["sharp"].numpy())
    d = (noisy["blur"] - clean["blur"]).numpy() * 127.5
    assert 2 < d.std() < 20
