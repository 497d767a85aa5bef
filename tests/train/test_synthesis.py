"""Fast, realistic blur synthesis: kernel bank, pair reuse, linear light, highlights, dense shake, config.

Every option is off by default; with them off the dataset must be the paper's synthesis bit for bit.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from deblur.runtime.errors import InputError
from deblur.train.blur_io import rng_for
from deblur.train.config import TrainConfig, validate
from deblur.train.datasets import SyntheticDataset, SynthOptions, _box, _fit, _margin, _tensor, synthesis_options
from deblur.train.distributed import EpochItems, StepBatches
from deblur.train.kernel_bank import KernelBank
from deblur.train.psf import (
    TrajectoryParams,
    apply_psf,
    boost_highlights,
    convolve,
    crop_psf,
    from_linear,
    random_psf,
    random_trajectories,
    random_trajectory,
    to_linear,
    trajectory_psfs,
)
from deblur.train.sensor import SensorParams, degrade, finish
from deblur.train.shake import (
    Realism,
    ShakeParams,
    dense_path,
    make_pair,
    path_psf,
    render,
    simulate_shake_video,
)

C = 64


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Four textured 160x120 PNGs (smooth colour noise, edges, a few saturated lamps): no data needed."""
    root = tmp_path_factory.mktemp("synth_photos")
    rng = np.random.default_rng(0)
    for i in range(4):
        img = cv2.resize(rng.integers(0, 256, (15, 20, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_CUBIC)
        cv2.rectangle(img, (20 + 10 * i, 30), (70, 90), (30, 60, 200), -1)
        for _ in range(3):
            cv2.circle(img, (int(rng.integers(10, 150)), int(rng.integers(10, 110))), 2, (255, 255, 255), -1)
        cv2.imwrite(str(root / f"p{i}.png"), img)
    return root


ALL_ON = dict(synth=SynthOptions(bank=16, min_len=4.0, realism=Realism(linear=True, curve="srgb", highlights=0.5)),
              sensor=SensorParams(model="poisson-gaussian", jpeg_prob=0.5),
              methods=(("trajectory", 2.0), ("gopro", 1.0, ShakeParams(pan_speed=(0.0, 800.0), max_step=0.5))))


def _same(a: dict, b: dict) -> bool:
    return a["name"] == b["name"] and torch.equal(a["blur"], b["blur"]) and torch.equal(a["sharp"], b["sharp"])


# --- trajectories and the kernel bank -----------------------------------------------------------

@pytest.mark.parametrize("params", [TrajectoryParams(), TrajectoryParams(expl=0.005, angle=30.0, max_len=20.0),
                                    TrajectoryParams(expl=0.0)])
def test_vectorised_trajectories_match_the_loop(params):
    seeds = range(6)
    many = random_trajectories([np.random.default_rng([s, 1]) for s in seeds], params)
    for s, path in zip(seeds, many):
        assert np.abs(path - random_trajectory(np.random.default_rng([s, 1]), params)).max() < 1e-9


def test_vectorised_trajectories_take_per_path_lengths():
    paths = random_trajectories([np.random.default_rng(s) for s in range(3)], TrajectoryParams(canvas=96, max_len=90),
                                lengths=[5.0, 40.0, 90.0])
    lengths = np.abs(np.diff(paths, axis=1)).sum(axis=1)
    assert lengths == pytest.approx([5.0, 40.0, 90.0], rel=1e-9)
    with pytest.raises(InputError):
        random_trajectories([np.random.default_rng(0)], TrajectoryParams(), lengths=[61.0])


def test_bank_is_a_pure_function_of_the_seed():
    a, b = KernelBank(3, 12), KernelBank(3, 12)
    assert len(a) == 12 * 3  # one PSF per exposure fraction 1/10, 1/2, 1 (the authors' draw)
    assert all(np.array_equal(x, y) for x, y in zip(a.kernels, b.kernels))
    small = KernelBank(3, 5)  # a smaller bank is the start of a larger one
    assert all(np.array_equal(x, y) for x, y in zip(small.kernels, a.kernels))
    other = KernelBank(4, 12)
    assert not any(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a.kernels, other.kernels))
    for k in a.kernels:
        assert k.dtype == np.float32 and k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
        assert k.min() >= 0 and k.sum() == pytest.approx(1.0, abs=1e-5)
    # kernel 2 of the bank is trajectory 0's half-exposure PSF of the per-sample code, cropped
    slow = trajectory_psfs(random_trajectory(np.random.default_rng([3, 0, 0x6B62])))[2]
    assert np.abs(a.kernels[1] - crop_psf(slow)).max() < 1e-6


def test_bank_lengths_cover_short_and_long_shake():
    bank = KernelBank(0, 200, TrajectoryParams(canvas=96, max_len=90.0), min_len=4.0)
    lengths = np.array(bank.lengths)
    assert len(bank) == 200 and lengths.min() >= 4.0 and lengths.max() <= 90.0
    assert (lengths < 10).mean() > 0.15 and (lengths > 45).mean() > 0.15  # log-uniform: each octave alike
    extents = [max(k.shape) for k in bank.kernels]
    assert max(extents) > 40  # long paths give wide kernels
    with pytest.raises(InputError):
        KernelBank(0, 10, TrajectoryParams(), min_len=70.0)


def test_crop_psf_and_convolve_equal_the_full_convolution():
    rng = np.random.default_rng(1)
    img = rng.random((70, 90, 3), dtype=np.float32)
    for fi in (1, 2, 3):
        psf = random_psf(rng, fraction_index=fi)
        ref = apply_psf(img, psf)
        assert np.abs(apply_psf(img, crop_psf(psf)) - ref).max() < 1e-5
        assert np.abs(convolve(img, crop_psf(psf)) - ref).max() < 1e-5  # DFT or direct, same result
    wide = np.zeros((25, 31), np.float32)
    wide[3, 27], wide[20, 2] = 0.25, 0.75  # even-free, off-centre taps: the centre convention must hold
    assert np.abs(convolve(img[..., 0], wide) - apply_psf(img[..., 0], wide)).max() < 1e-5


# --- linear light and highlights ----------------------------------------------------------------

@pytest.mark.parametrize("curve", ["gamma", "srgb"])
def test_curves_round_trip(curve):
    v = np.arange(256, dtype=np.uint8)
    lin = to_linear(v, curve)
    assert lin[0] == 0 and lin[255] == pytest.approx(1.0) and np.all(np.diff(lin) > 0)
    assert np.abs(from_linear(lin, curve) * 255 - v).max() < 1e-3
    assert np.abs(to_linear(v / 255.0, curve) - lin).max() < 1e-6


@pytest.mark.parametrize("curve", ["gamma", "srgb"])
def test_linear_light_blur_of_an_edge_is_brighter(curve):
    """A black|white step blurred in linear light: the bright side bleeds into the dark one, so every
    transition pixel is brighter than blurring code values (the middle one ~186-188, not 128)."""
    step = np.zeros((40, 40, 3), np.uint8)
    step[:, 20:] = 255
    psf = np.full((1, 15), 1 / 15, np.float32)
    code_blur, _, lin_flag = render(step, np.random.default_rng(0), "trajectory", realism=Realism(), psf=psf)
    lin_blur, _, lin_flag2 = render(step, np.random.default_rng(0), "trajectory", realism=Realism(linear=True, curve=curve),
                                    psf=psf)
    assert not lin_flag and lin_flag2
    old = np.rint(np.clip(code_blur, 0, 1) * 255)[20, :, 0]
    new = finish(lin_blur, np.random.default_rng(0), SensorParams(), curve).astype(float)[20, :, 0]
    edge = slice(13, 27)
    assert np.all(new[edge] >= old[edge]) and np.all(new[14:26] > old[14:26])
    assert np.array_equal(new[:12], old[:12]) and np.array_equal(new[28:], old[28:])  # flat parts untouched
    assert old[20] == 136 and 180 <= new[20] <= 200


def test_a_saturated_point_becomes_a_streak_that_keeps_its_energy():
    img = np.zeros((41, 41, 3), np.uint8)
    img[20, 20] = 255
    psf = np.zeros((1, 21), np.float32)
    psf[0] = 1 / 21  # a straight 21 px shake
    rng = np.random.default_rng(5)
    blur, _, _ = render(img, rng, "trajectory", realism=Realism(linear=True, highlights=1.0, highlight_gain=4.0), psf=psf)
    gain = float(blur.sum() / 3)
    assert 1.5 <= gain <= 4.0  # energy before clipping: the boosted point's, x U(1.5, 4)
    lit = blur[..., 0] > 1e-6  # (DFT round-off elsewhere is ~1e-9)
    assert np.count_nonzero(lit) == 21 and np.count_nonzero(lit[20]) == 21  # a line
    plain, _, _ = render(img, np.random.default_rng(5), "trajectory", realism=Realism(linear=True), psf=psf)
    assert plain.sum() / 3 == pytest.approx(1.0, rel=1e-5)
    streak = finish(blur, rng, SensorParams(), "gamma")[20, 10:31, 0]
    smudge = np.rint(apply_psf(img / 255.0, psf) * 255)[20, 10:31, 0]  # the paper's code-value blur
    assert streak.min() > 2.5 * smudge.max()


def test_only_near_white_pixels_are_boosted():
    code = np.array([[[255, 255, 255], [255, 200, 100], [249, 249, 249], [100, 100, 100]]], np.uint8)
    lin = to_linear(code)
    out = boost_highlights(lin, code, gain=3.0, threshold=0.98)
    assert out[0, 0] == pytest.approx(3 * lin[0, 0])  # clipped white: boosted, hue kept
    assert np.array_equal(out[0, 1:], lin[0, 1:])  # one channel at 255 (a bright colour): unchanged


def test_highlights_need_linear_light():
    with pytest.raises(InputError):
        Realism(highlights=0.5)
    with pytest.raises(InputError):
        Realism(linear=True, curve="rec709")


# --- shake branch: interpolated sub-frames ------------------------------------------------------

def test_interpolated_subframes_leave_no_ghosts():
    fast = ShakeParams(pan_speed=(1000.0, 1000.0), jitter_px=0.0, rotation_deg=0.0)
    path = fast.path(np.random.default_rng(0), fast.subframes)
    path -= path[fast.subframes // 2]
    ghosts = cv2.connectedComponents((path_psf(path) > 0).astype(np.uint8))[0] - 1
    views, m = dense_path(path, 0.5)
    smear = cv2.connectedComponents((path_psf(views) > 0).astype(np.uint8))[0] - 1
    assert ghosts == 9 and smear == 1  # 4 px apart at 1000 px/s: nine separate copies, vs one streak
    assert m >= 9 and np.allclose(views[::m], path) and np.hypot(*np.diff(views[:, :2], axis=0).T).max() <= 0.5


def test_dense_make_pair_keeps_the_ground_truth_and_the_drawn_path():
    img = cv2.resize(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8), (96, 72))
    sp = ShakeParams(max_step=0.5)
    blur, sharp = make_pair(img, np.random.default_rng(3), "gopro", sp)
    old, _ = make_pair(img, np.random.default_rng(3), "gopro")
    assert np.array_equal(sharp, img) and blur.shape == img.shape and blur.dtype == np.uint8
    inner = np.s_[12:-12, 12:-12]
    assert np.abs(blur[inner].astype(float) - old[inner]).mean() < 6  # the same path, smoothly rendered
    frames = list(simulate_shake_video(img, np.random.default_rng(1), frames=3, size=(48, 32),
                                       shake=dataclasses.replace(ShakeParams(pan_speed=(0, 60.0), jitter_px=6.0), max_step=0.3)))
    plain = list(simulate_shake_video(img, np.random.default_rng(1), frames=3, size=(48, 32),
                                      shake=ShakeParams(pan_speed=(0, 60.0), jitter_px=6.0)))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(frames, plain))  # same sharp frames
    with pytest.raises(InputError):
        ShakeParams(max_step=-1.0)


# --- the dataset ----------------------------------------------------------------------------------

def _paper_item(ds: SyntheticDataset, index: int) -> dict:
    """The paper's synthesis as the dataset made it before the options existed (a frozen copy)."""
    path, name = ds.entries[index % len(ds.entries)]
    rng = ds._rng(index)
    img = ds._photo(path)
    rng = rng_for(ds.seed, name) if ds.fixed else rng
    k = int(rng.choice(len(ds.methods), p=ds._p)) if len(ds.methods) > 1 else 0
    method, _, params = ds.methods[k]
    img = _fit(img, ds.crop, ds.halve)
    h, w = img.shape[:2]
    t, l, ch, cw = _box(h, w, ds.crop, None if ds.fixed else rng)
    m = _margin(method, params)
    t0, l0 = max(0, t - m), max(0, l - m)
    blurred, sharp = make_pair(np.ascontiguousarray(img[t0:min(h, t + ch + m), l0:min(w, l + cw + m)]), rng, method, params)
    inner = np.s_[t - t0:t - t0 + ch, l - l0:l - l0 + cw]
    blur = degrade(np.ascontiguousarray(blurred[inner]), rng, ds.sensor)
    sharp = sharp[inner]
    if ds.flip and not ds.fixed and rng.random() < 0.5:
        blur, sharp = blur[:, ::-1], sharp[:, ::-1]
    return {"blur": _tensor(blur), "sharp": _tensor(sharp), "name": name}


@pytest.mark.parametrize("fixed", [False, True])
def test_options_off_are_the_paper_synthesis_bit_for_bit(photos, fixed):
    methods, sensor, synth = synthesis_options(TrainConfig())
    assert methods == (("trajectory", 1.0, TrajectoryParams(max_len=60.0)),) and synth == SynthOptions()
    assert sensor == SensorParams(0.0, 0.0, 0.0, 40) and not synth.active
    for kw in (dict(methods=methods), dict(methods=(("trajectory", 2.0), ("gopro", 1.0)),
                                            sensor=SensorParams(read_max=4.0, shot_max=0.5, jpeg_prob=0.5))):
        ds = SyntheticDataset(photos, crop=C, seed=2, fixed=fixed, length=8, synth=synth, **kw)
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            assert all(_same(ds[i], _paper_item(ds, i)) for i in range(len(ds)))


def test_all_options_items_depend_only_on_seed_epoch_index(photos):
    a = SyntheticDataset(photos, crop=C, seed=5, length=8, **ALL_ON)
    b = SyntheticDataset(photos, crop=C, seed=5, length=8, **ALL_ON)
    b.set_epoch(3), b.set_epoch(0)
    first = [a[i] for i in range(8)]
    assert all(_same(b[i], first[i]) for i in reversed(range(8)))
    for item in first:
        assert item["blur"].shape == (3, C, C) and item["blur"].dtype == torch.float32
    a.set_epoch(1)
    assert not any(torch.equal(a[i]["blur"], first[i]["blur"]) for i in range(8))
    assert not torch.equal(SyntheticDataset(photos, crop=C, seed=6, length=8, **ALL_ON)[0]["blur"], first[0]["blur"])


@pytest.mark.parametrize("reuse", [1, 2])
def test_workers_give_identical_batches_with_all_options(photos, reuse):
    """The trainer's loader (StepBatches over EpochItems): 0 and 2 workers give the same batches."""
    opts = dict(ALL_ON, synth=dataclasses.replace(ALL_ON["synth"], reuse=reuse))
    ds = SyntheticDataset(photos, crop=C, seed=1, length=12, **opts)
    loaders = [DataLoader(EpochItems(ds), batch_sampler=StepBatches(len(ds), 4, 1, 0, 5), num_workers=n) for n in (0, 2)]
    batches = [list(dl) for dl in loaders]
    assert len(batches[0]) == len(batches[1]) == 5  # 20 items: crosses into epoch 1
    for x, y in zip(*batches):
        assert x["name"] == y["name"] and torch.equal(x["blur"], y["blur"]) and torch.equal(x["sharp"], y["sharp"])


def test_pair_reuse_groups_sampling_neighbours_into_one_patch(photos):
    k, n = 4, 16
    ds = SyntheticDataset(photos, crop=C, seed=3, length=n, synth=SynthOptions(bank=8, reuse=k, realism=Realism(linear=True)))
    sampler = StepBatches(n, 8, 3, 0, 2)  # the trainer's order: one epoch
    order = [i for batch in sampler for _, i in batch]
    assert order == list(np.random.default_rng([3, 0]).permutation(n))  # the order the dataset groups by
    items = [ds[i] for i in order]
    assert ds.renders == n // k  # one synthesised patch per K items
    for g in range(n // k):
        group = items[g * k:(g + 1) * k]
        assert len({it["name"] for it in group}) == 1
        assert len({it["blur"].numpy().tobytes() for it in group}) == k  # different cuts
    fresh = SyntheticDataset(photos, crop=C, seed=3, length=n, synth=ds.synth)
    assert all(_same(fresh[i], items[order.index(i)]) for i in (order[5], order[0], order[11]))  # any order


def test_the_bank_makes_trajectory_items_cheaper(photos):
    """Not a benchmark (benchmarks/train_throughput.py --data is): CPU time, robust to a busy machine."""
    import time

    slow = SyntheticDataset(photos, crop=C, seed=0, length=12)
    fast = SyntheticDataset(photos, crop=C, seed=0, length=12, synth=SynthOptions(bank=32))
    cpu = []
    for ds in (slow, fast):
        ds[0]
        t0 = time.process_time()
        for i in range(12):
            ds[i]
        cpu.append(time.process_time() - t0)
    assert cpu[1] < 0.7 * cpu[0], cpu


def test_validation_sets_use_their_own_bank(photos):
    synth = SynthOptions(bank=8)
    train = SyntheticDataset(photos, crop=C, seed=0, synth=synth)
    val = SyntheticDataset(photos, crop=C, seed=0, synth=synth, fixed=True)
    tk, vk = train._banks[0].kernels, val._banks[0].kernels
    assert not any(a.shape == b.shape and np.array_equal(a, b) for a in tk for b in vk)
    assert _same(val[1], SyntheticDataset(photos, crop=C, seed=0, synth=synth, fixed=True)[1])


def test_realistic_items_stay_aligned_and_noise_stays_on_the_input(photos):
    clean = SyntheticDataset(photos, crop=C, seed=0, fixed=True, synth=ALL_ON["synth"], methods=ALL_ON["methods"])
    noisy = SyntheticDataset(photos, crop=C, seed=0, fixed=True, **ALL_ON)
    for i in range(len(clean)):
        a, b = clean[i], noisy[i]
        assert torch.equal(a["sharp"], b["sharp"])
        assert not torch.equal(a["blur"], b["blur"])


# --- configuration ----------------------------------------------------------------------------------

def test_config_options_reach_the_dataset_objects():
    cfg = TrainConfig(blur_max_len=90.0, kernel_bank=100, blur_min_len=6.0, pair_reuse=2, batch=8, linear_light=True,
                      camera_curve="srgb", highlights=0.2, highlight_gain=3.0, noise_model="poisson-gaussian",
                      noise_gain_max=2e-3, shake_max_step=0.5, shake_pan_max=1200.0,
                      blur_methods={"trajectory": 2.0, "gopro": 1.0})
    methods, sensor, synth = synthesis_options(cfg)
    assert methods[0] == ("trajectory", 2.0, TrajectoryParams(canvas=94, max_len=90.0))
    assert methods[1] == ("gopro", 1.0, ShakeParams(pan_speed=(0.0, 1200.0), max_step=0.5))
    assert sensor.model == "poisson-gaussian" and sensor.gain == (1e-4, 2e-3)
    assert synth == SynthOptions(bank=100, min_len=6.0, reuse=2,
                                 realism=Realism(linear=True, curve="srgb", highlights=0.2, highlight_gain=3.0))


@pytest.mark.parametrize("bad", [dict(kernel_bank=-1), dict(blur_min_len=70.0), dict(pair_reuse=3, batch=8),
                                 dict(pair_reuse=0), dict(camera_curve="log"), dict(highlights=0.5),
                                 dict(highlights=1.5, linear_light=True), dict(highlight_gain=1.0),
                                 dict(noise_model="gauss"), dict(noise_gain_min=0.0),
                                 dict(noise_gain_min=1e-2, noise_gain_max=1e-3),
                                 dict(noise_model="poisson-gaussian", noise_read_max=3.0), dict(shake_max_step=-0.5),
                                 dict(shake_pan_max=-1.0)])
def test_bad_synthesis_settings_are_one_line_input_errors(tmp_path, bad):
    validate(TrainConfig(sharp=[str(tmp_path)], content="l1"))  # the defaults pass
    with pytest.raises(InputError) as e:
        validate(TrainConfig(sharp=[str(tmp_path)], content="l1", **bad))
    assert "\n" not in str(e.value)
