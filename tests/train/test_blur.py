"""Blur synthesis: trajectory PSFs, convolution, linear-light averaging, shaky video, pairs, CLI."""
from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deblur.runtime.errors import DeblurError, InputError, ShapeError
from deblur.train import blur_io
from deblur.train.blur_io import make_pairs, write_video_pair
from deblur.train.psf import (
    TrajectoryParams,
    apply_psf,
    blur_image,
    gopro_average,
    linear_to_srgb,
    random_psf,
    random_trajectory,
    srgb_to_linear,
    trajectory_psfs,
)
from deblur.train.shake import (
    VIDEO_SHAKE,
    ShakeParams,
    make_pair,
    shake_path,
    simulate_shake_video,
)

REPO = Path(__file__).resolve().parents[2]
rng = np.random.default_rng


def delta_psf(k: int = 64) -> np.ndarray:
    psf = np.zeros((k, k), np.float32)
    psf[(k - 1) // 2, (k - 1) // 2] = 1.0
    return psf


def extent(psf: np.ndarray) -> int:
    rows, cols = np.nonzero(psf)
    return int(max(rows.max() - rows.min(), cols.max() - cols.min()))


@pytest.fixture
def kodak(data_dir: Path) -> Path:
    folder = data_dir / "sharp" / "kodak24"
    if not (folder / "kodim01.png").is_file():
        pytest.skip(f"Kodak photos not found in {folder}")
    return folder


@pytest.fixture
def photo(kodak: Path) -> np.ndarray:
    """A small real photo (RGB uint8), non-square."""
    p = kodak / "kodim05.png"
    img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    return cv2.resize(img, (96, 64), interpolation=cv2.INTER_AREA)


@pytest.fixture
def warnings_log():
    """Capture 'deblur' warnings directly (works even if a CLI set propagate=False)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("deblur")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# --- trajectories and PSFs -------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_full_path_is_exactly_max_len_and_inside_canvas(seed):
    p = TrajectoryParams()
    x = random_trajectory(rng(seed), p)
    assert x.dtype == np.complex128 and x.shape == (p.iters,)
    assert abs(np.abs(np.diff(x)).sum() - p.max_len) < 1e-6
    assert x.real.min() >= 1 and x.imag.min() >= 1
    assert x.real.max() <= p.canvas - 1 and x.imag.max() <= p.canvas - 1


@pytest.mark.parametrize("over", [dict(expl=0.0), dict(expl=0.01, prob_big_shake=0.2, gaussian_shake=10.0),
                                  dict(max_len=30.0, iters=500)])
def test_path_length_holds_for_overrides(over):
    p = TrajectoryParams(**over)
    x = random_trajectory(rng(1), p)
    assert abs(np.abs(np.diff(x)).sum() - p.max_len) < 1e-6


def test_straight_path_when_no_shake():
    x = random_trajectory(rng(0), TrajectoryParams(expl=0.0, angle=0.0))
    assert np.ptp(x.imag) < 1e-9 and abs(np.ptp(x.real) - 60.0) < 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_psfs_sum_to_one_nonnegative(seed):
    p = TrajectoryParams()
    psfs = trajectory_psfs(random_trajectory(rng(seed), p), p)
    assert len(psfs) == len(p.fractions)
    for psf in psfs:
        assert psf.dtype == np.float32 and psf.shape == (64, 64)
        assert psf.min() >= 0
        assert abs(float(psf.sum(dtype=np.float64)) - 1.0) < 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_shorter_fractions_give_more_compact_psfs(seed):
    p = TrajectoryParams()
    psfs = trajectory_psfs(random_trajectory(rng(seed), p), p)
    support = [int((psf > 0).sum()) for psf in psfs]
    assert support == sorted(support) and support[0] < support[-1]
    for frac, psf in zip(p.fractions, psfs):  # a path of length L fits in an L+2 px box
        assert extent(psf) <= frac * p.max_len + 2
    assert extent(psfs[-1]) > extent(psfs[1])


def test_psfs_are_centred_on_their_centroid():
    p = TrajectoryParams(expl=0.0, angle=0.0)  # straight line: the authors' 1/10 PSF sits at one end
    x = random_trajectory(rng(0), p)
    for psf in trajectory_psfs(x, p):
        cols = (psf.sum(axis=0) * np.arange(64)).sum()
        assert abs(cols - 31.5) <= 1.0
    off = trajectory_psfs(x, p, center=False)[1]
    assert abs((off.sum(axis=0) * np.arange(64)).sum() - 31.5) > 10


def test_random_psf_is_reproducible_per_seed():
    a, b, c = random_psf(rng(7)), random_psf(rng(7)), random_psf(rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(random_trajectory(rng(3)), random_trajectory(rng(3)))


def test_random_psf_fraction_index():
    full = random_psf(rng(2), fraction_index=3)
    tiny = random_psf(rng(2), fraction_index=0)
    assert extent(tiny) < extent(full)
    with pytest.raises(InputError, match="fraction_index"):
        random_psf(rng(2), fraction_index=4)


@pytest.mark.parametrize("bad", [{"max_len": 70.0}, {"fractions": (0.5, 0.1)}, {"canvas": 4},
                                 {"expl": -0.1}])
def test_params_validation(bad):
    with pytest.raises(InputError) as e:
        TrajectoryParams(**bad)
    assert "\n" not in str(e.value) and e.value.hint  # one line: what, then what to do


def test_trajectory_outside_the_canvas_is_input_error():
    with pytest.raises(InputError, match="negative"):
        trajectory_psfs(random_trajectory(rng(0)) - 40)


# --- convolution -------------------------------------------------------------------------------

@pytest.mark.parametrize("border", ["reflect", "zero"])
@pytest.mark.parametrize("shape", [(37, 53, 3), (41, 29)])
def test_delta_psf_is_identity(border, shape):
    img = rng(0).random(shape, dtype=np.float32)
    out = apply_psf(img, delta_psf(), border=border)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, img, atol=1e-5)


def test_horizontal_line_blurs_vertical_edges_only():
    line = np.zeros((15, 15), np.float32)
    line[7, :] = 1 / 15
    horiz = np.zeros((40, 48), np.float32)
    horiz[20:] = 1.0  # a horizontal edge: rows differ, each row is constant
    vert = np.zeros((40, 48), np.float32)
    vert[:, 24:] = 1.0
    np.testing.assert_allclose(apply_psf(horiz, line), horiz, atol=1e-5)
    out = apply_psf(vert, line)
    assert np.all((out[:, 20:28] > 0.05) & (out[:, 20:28] < 0.95))  # a ramp across the edge
    np.testing.assert_allclose(out[:, :10], 0, atol=1e-5)
    np.testing.assert_allclose(out, out[:1].repeat(40, axis=0), atol=1e-6)  # no vertical spread


def test_reflect_borders_keep_flat_images_flat_zero_borders_darken():
    flat = np.full((50, 70, 3), 0.5, np.float32)
    psf = random_psf(rng(4), fraction_index=3)
    np.testing.assert_allclose(apply_psf(flat, psf), 0.5, atol=1e-5)
    zero = apply_psf(flat, psf, border="zero")
    assert zero[0, 0].max() < 0.45 and abs(zero[25, 35, 0] - 0.5) < 1e-4


def test_apply_psf_normalize_and_clip():
    img = rng(1).uniform(0.3, 0.6, (32, 32)).astype(np.float32)
    out = apply_psf(img, random_psf(rng(1)), normalize=True)
    assert out.min() == 0.0 and abs(out.max() - 1.0) < 1e-6
    hot = apply_psf(np.full((8, 8), 2.0, np.float32), delta_psf(3))
    assert hot.max() <= 1.0
    with pytest.raises(ShapeError):
        apply_psf(np.zeros((2, 2, 2, 2), np.float32), delta_psf())
    with pytest.raises(InputError, match="border"):
        apply_psf(img, delta_psf(3), border="wrap")


def test_blur_image_keeps_shape_and_dtype(photo):
    for img in (photo, cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)):
        out = blur_image(img, rng(0))
        assert out.dtype == np.uint8 and out.shape == img.shape
        np.testing.assert_array_equal(out, blur_image(img, rng(0)))
        assert np.abs(out.astype(int) - img).mean() > 1  # it did blur


# --- linear light and GoPro-style averaging ----------------------------------------------------

def test_gamma_round_trip():
    x = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-5)
    assert abs(float(srgb_to_linear(np.uint8(128))) - (128 / 255) ** 2.2) < 1e-6


def test_gopro_average_of_identical_frames_is_the_frame(photo):
    blur, sharp = gopro_average([photo] * 5)
    np.testing.assert_array_equal(blur, photo)
    np.testing.assert_array_equal(sharp, photo)


def test_gopro_average_is_in_linear_light():
    black, white = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    blur, _ = gopro_average([black, white])
    assert np.all(np.abs(blur.astype(int) - 186) <= 1)  # 255 * 0.5**(1/2.2), not 128


def test_gopro_average_returns_middle_frame():
    frames = [np.full((3, 3), v, np.uint8) for v in (10, 20, 30)]
    assert gopro_average(frames)[1][0, 0] == 20


@pytest.mark.parametrize("frames", [[np.zeros((3, 3), np.uint8), np.zeros((4, 4), np.uint8)], []])
def test_gopro_average_checks_shapes(frames):
    with pytest.raises(ShapeError):
        gopro_average(frames)


def test_shake_path_is_smooth_seeded_and_scaled():
    p = shake_path(rng(0), 20000, sample_rate=240.0, pan_speed=(0.0, 0.0), jitter_px=3.0, rotation_deg=0.5)
    assert p.shape == (20000, 3) and np.all(p[0] == 0)
    np.testing.assert_array_equal(p, shake_path(rng(0), 20000, sample_rate=240.0, pan_speed=(0.0, 0.0),
                                                jitter_px=3.0, rotation_deg=0.5))
    assert 2.2 < p[:, 0].std() < 3.8 and 0.3 < p[:, 2].std() < 0.7
    assert np.diff(p[:, 0]).std() < 0.2 * p[:, 0].std()  # low-passed: white noise would give ~1.4x
    pan = shake_path(rng(0), 241, pan_speed=(100.0, 100.0), jitter_px=0.0, rotation_deg=0.0)
    assert abs(np.hypot(*pan[-1, :2]) - 100.0) < 1e-6  # 1 s at 100 px/s


@pytest.mark.parametrize("bad", [{"n_samples": 0}, {"sample_rate": 0.0}, {"jitter_hz": -1.0}])
def test_shake_path_bad_arguments_are_input_errors(bad):
    with pytest.raises(InputError):
        shake_path(rng(0), **{"n_samples": 10, **bad})


# --- pairs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["trajectory", "gopro"])
def test_make_pair_shapes_and_ground_truth(photo, method):
    blur, sharp = make_pair(photo, rng(0), method)
    assert blur.shape == sharp.shape == photo.shape and blur.dtype == np.uint8
    np.testing.assert_array_equal(sharp, photo)  # aligned: the ground truth is the input itself
    assert np.abs(blur.astype(int) - photo).mean() > 1
    np.testing.assert_array_equal(blur, make_pair(photo, rng(0), method)[0])


def test_make_pair_gopro_without_motion_is_identity(photo):
    still = ShakeParams(pan_speed=(0.0, 0.0), jitter_px=0.0, rotation_deg=0.0)
    blur, sharp = make_pair(photo, rng(0), "gopro", still)
    np.testing.assert_array_equal(blur, photo)


@pytest.mark.parametrize("method, params", [("nope", None), ("gopro", TrajectoryParams()),
                                            ("trajectory", ShakeParams())])
def test_make_pair_bad_method_or_params(method, params):
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(InputError):
        make_pair(img, rng(0), method, params)


def _write_inputs(kodak: Path, folder: Path, names=("kodim01", "kodim23")) -> None:
    """Downscaled copies of real photos (small, so the tests stay fast on 2 cores)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        img = cv2.resize(cv2.imread(str(kodak / f"{name}.png")), (80, 56), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{name}.png"), img)


def test_make_pairs_skips_corrupt_file_and_is_reproducible(kodak, tmp_path, warnings_log):
    src = tmp_path / "sharp"
    _write_inputs(kodak, src)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (src / "notes.txt").write_text("ignored")
    stats = make_pairs(src, tmp_path / "out", "trajectory", seed=5, progress=False)
    assert (stats.written, stats.skipped) == (2, 1)
    assert len(warnings_log) == 1 and "broken.png" in warnings_log[0].getMessage()
    for sub in ("blur", "sharp"):
        assert sorted(p.name for p in (tmp_path / "out" / sub).iterdir()) == ["kodim01.png", "kodim23.png"]
    blur = cv2.imread(str(tmp_path / "out" / "blur" / "kodim23.png"))
    assert blur.shape == (56, 80, 3)
    # same seed, another folder holding only one of the files: same result (order-independent)
    solo = tmp_path / "solo"
    _write_inputs(kodak, solo, names=("kodim23",))
    make_pairs(solo, tmp_path / "out2", "trajectory", seed=5, progress=False)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out2" / "blur" / "kodim23.png")), blur)
    make_pairs(solo, tmp_path / "out3", "trajectory", seed=6, progress=False)
    assert not np.array_equal(cv2.imread(str(tmp_path / "out3" / "blur" / "kodim23.png")), blur)
    assert not [p for p in (tmp_path / "out").rglob(".*")]  # no temp files left


def test_make_pairs_gopro_and_limit(kodak, tmp_path):
    src = tmp_path / "sharp"
    _write_inputs(kodak, src)
    stats = make_pairs(src, tmp_path / "out", "gopro", seed=0, limit=1, progress=False)
    assert stats.written == 1 and [p.name for p in (tmp_path / "out" / "blur").iterdir()] == ["kodim01.png"]


@pytest.mark.parametrize("folder, match", [("empty", "no images"), ("missing", "not found")])
def test_make_pairs_bad_folders(tmp_path, folder, match):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=match):
        make_pairs(tmp_path / folder, tmp_path / "out")


# --- video -------------------------------------------------------------------------------------

def count_frames(path: Path) -> tuple[int, tuple[int, ...]]:
    cap = cv2.VideoCapture(str(path))
    n, shape = 0, ()
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, shape = n + 1, frame.shape
    cap.release()
    return n, shape


def video_shake(**kw) -> ShakeParams:
    return dataclasses.replace(VIDEO_SHAKE, **kw)


def test_simulator_yields_exactly_n_frames(photo):
    pairs = list(simulate_shake_video(photo, rng(0), frames=7, size=(48, 32), shake=video_shake(subframes=5)))
    assert len(pairs) == 7
    for blur, sharp in pairs:
        assert blur.shape == sharp.shape == (32, 48, 3) and blur.dtype == np.uint8
    assert any(np.abs(b.astype(int) - s).mean() > 0.5 for b, s in pairs)
    instant = list(simulate_shake_video(photo, rng(0), frames=3, size=(48, 32), exposure=0.2,
                                        shake=video_shake(subframes=5)))
    for blur, sharp in instant:  # one subframe open: nothing to blur
        np.testing.assert_array_equal(blur, sharp)


@pytest.mark.parametrize("bad", [{"frames": 0}, {"fps": 0.0}, {"exposure": 1.5}, {"size": (0, 32)},
                                 {"shake": video_shake(subframes=0)}])
def test_simulator_bad_arguments_fail_at_the_call(bad):
    with pytest.raises(InputError):
        simulate_shake_video(np.zeros((32, 48, 3), np.uint8), rng(0), **{"frames": 2, "size": (48, 32), **bad})


def test_write_video_pair_same_frame_count(photo, tmp_path):
    b, s = write_video_pair(photo, tmp_path / "vid", rng(0), frames=9, size=(64, 48), fps=24.0,
                            shake=video_shake(subframes=3), progress=False)
    assert (b.name, s.name) == ("blur.mp4", "sharp.mp4")
    assert count_frames(b) == count_frames(s) == (9, (48, 64, 3))
    assert sorted(p.name for p in (tmp_path / "vid").iterdir()) == ["blur.mp4", "sharp.mp4"]


def test_write_video_pair_failure_publishes_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        yield np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64, 3), np.uint8)
        raise DeblurError("simulated failure after one frame")

    monkeypatch.setattr(blur_io, "simulate_shake_video", broken)
    with pytest.raises(DeblurError, match="simulated"):
        write_video_pair(np.zeros((48, 64, 3), np.uint8), tmp_path / "vid", rng(0), frames=3, size=(64, 48),
                         progress=False)
    assert list((tmp_path / "vid").iterdir()) == []  # no final files and no temp files


# --- CLI ---------------------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deblur.train.blur_cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_cli_pairs(kodak, tmp_path):
    _write_inputs(kodak, tmp_path / "sharp", names=("kodim01",))
    r = cli("pairs", "--sharp", str(tmp_path / "sharp"), "--out", str(tmp_path / "out"), "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert "wrote 1 pairs" in r.stdout
    assert (tmp_path / "out" / "blur" / "kodim01.png").is_file()
    assert (tmp_path / "out" / "sharp" / "kodim01.png").is_file()


def test_cli_video(kodak, tmp_path):
    _write_inputs(kodak, tmp_path, names=("kodim01",))
    r = cli("video", "--image", str(tmp_path / "kodim01.png"), "--out", str(tmp_path / "v"),
            "--frames", "5", "--size", "64x48", "--fps", "12")
    assert r.returncode == 0, r.stderr
    assert count_frames(tmp_path / "v" / "blur.mp4")[0] == count_frames(tmp_path / "v" / "sharp.mp4")[0] == 5


@pytest.mark.parametrize("args", [("pairs", "--sharp", "{tmp}/missing", "--out", "{tmp}/o"),
                                  ("pairs", "--sharp", "{tmp}", "--out", "{tmp}/o", "--max-len", "70"),
                                  ("video", "--image", "{tmp}/x.png", "--out", "{tmp}/o", "--size", "64by48"),
                                  ("video", "--image", "{tmp}/x.png", "--out", "{tmp}/o", "--size", "8x48"),
                                  ("video", "--image", "{tmp}/junk.png", "--out", "{tmp}/o")])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args):
    (tmp_path / "x.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    r = cli(*(a.format(tmp=tmp_path) for a in args))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deblur-blur: error:"), r.stderr
    assert "Traceback" not in r.stderr


def test_cli_help_has_examples():
    r = cli("--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "deblur-blur video" in r.stdout
