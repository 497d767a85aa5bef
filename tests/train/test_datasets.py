"""Training datasets on real photos written to disk: crops, flips, determinism, layouts, bad files."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from deblur.runtime.errors import InputError
from deblur.runtime.prepost import U8_TO_UNIT
from deblur.train.datasets import (
    GoProDataset,
    MixedDataset,
    PairedFolderDataset,
    SyntheticDataset,
    ValidationSet,
    build_dataset,
    build_validation,
    detect_layout,
)
from deblur.train.psf import TrajectoryParams

C = 64  # crop: small keeps the file fast on 2 cores


def _small(path: Path, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(cv2.imread(str(path)), size, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, data_dir) -> Path:
    """Six downscaled real photos (BGR PNG): four Kodak 192x128, two BSDS 120x80 (recursive)."""
    root = tmp_path_factory.mktemp("photos")
    (root / "bsds").mkdir()
    for p in sorted((data_dir / "sharp" / "kodak24").glob("*.png"))[:4]:
        cv2.imwrite(str(root / p.name), _small(p, (192, 128)))
    for p in sorted((data_dir / "sharp" / "bsds500" / "train").glob("*.jpg"))[:2]:
        cv2.imwrite(str(root / "bsds" / (p.stem + ".png")), _small(p, (120, 80)))
    return root


def _pairs(root: Path, photos: Path, same: bool = False) -> Path:
    """root/{blur,sharp}: blur is a box-blurred copy (or the same image when ``same``)."""
    (root / "blur").mkdir(parents=True)
    (root / "sharp").mkdir()
    for p in sorted(photos.rglob("*.png")):
        img = cv2.imread(str(p))
        cv2.imwrite(str(root / "sharp" / p.name), img)
        cv2.imwrite(str(root / "blur" / p.name), img if same else cv2.blur(img, (7, 1)))
    return root


@pytest.fixture()
def warnings_seen():
    """Warning messages of the ``deblur`` logger (attached directly: CLIs turn propagation off)."""
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("deblur")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(old)


def _rgb_chw(path: Path) -> torch.Tensor:
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(U8_TO_UNIT[img]).permute(2, 0, 1)  # the runtime's one uint8 -> [-1, 1] conversion


def _same(a: dict, b: dict) -> bool:
    return a["name"] == b["name"] and torch.equal(a["blur"], b["blur"]) and torch.equal(a["sharp"], b["sharp"])


def test_items_have_shape_range_dtype(tmp_path, photos):
    for ds in (PairedFolderDataset(_pairs(tmp_path / "p", photos), crop=C),
               SyntheticDataset([photos], crop=C, methods=(("trajectory", 1), ("gopro", 1)))):
        assert len(ds) == 6
        for i in range(len(ds)):
            item = ds[i]
            assert isinstance(item["name"], str) and item["name"]
            for key in ("blur", "sharp"):
                t = item[key]
                assert t.dtype == torch.float32 and t.shape == (3, C, C) and t.is_contiguous()
                assert -1 <= t.min() and t.max() <= 1 and t.std() > 0.05


def test_flip_is_shared_and_about_half(tmp_path, photos):
    root = _pairs(tmp_path / "p", photos, same=True)
    flip, plain = PairedFolderDataset(root, crop=C, seed=3), PairedFolderDataset(root, crop=C, flip=False, seed=3)
    flipped = 0
    for epoch in range(4):
        flip.set_epoch(epoch), plain.set_epoch(epoch)
        for i in range(len(flip)):
            a, b = flip[i], plain[i]
            assert torch.equal(a["blur"], a["sharp"])  # one flip for both images
            if not torch.equal(a["sharp"], b["sharp"]):
                assert torch.equal(a["sharp"], b["sharp"].flip(-1))
                flipped += 1
    assert 4 <= flipped <= 20  # of 24, p = 0.5


def test_items_depend_only_on_seed_epoch_index(photos):
    a, b = SyntheticDataset([photos], crop=C, seed=5), SyntheticDataset([photos], crop=C, seed=5)
    b.set_epoch(2), b.set_epoch(0)
    first = [a[i] for i in range(3)]
    assert all(_same(b[i], x) for i, x in enumerate(first))
    assert _same(a[1], first[1])  # reading again changes nothing
    a.set_epoch(1)
    assert not any(torch.equal(a[i]["blur"], first[i]["blur"]) for i in range(3))
    a.set_epoch(0)
    assert all(_same(a[i], first[i]) for i in range(3))
    assert not torch.equal(SyntheticDataset([photos], crop=C, seed=6)[0]["blur"], first[0]["blur"])


def test_dataloader_workers_give_identical_batches(photos):
    ds = SyntheticDataset([photos], crop=C, methods=(("trajectory", 2), ("gopro", 1)), seed=1, length=8)
    ds.set_epoch(3)
    batches = [list(DataLoader(ds, batch_size=2, num_workers=n)) for n in (0, 2)]
    assert len(batches[0]) == len(batches[1]) == 4
    for x, y in zip(*batches):
        assert x["name"] == y["name"]
        assert torch.equal(x["blur"], y["blur"]) and torch.equal(x["sharp"], y["sharp"])
    assert torch.equal(batches[0][1]["blur"][0], ds[2]["blur"])


def test_gopro_layout_and_blur_gamma(tmp_path, photos, warnings_seen):
    files = sorted(photos.glob("*.png"))
    for split, seqs in (("train", ("GOPR0001", "GOPR0002")), ("test", ("GOPR0100",))):
        for k, seq in enumerate(seqs):
            for sub in ("blur", "blur_gamma", "sharp"):
                (tmp_path / split / seq / sub).mkdir(parents=True)
            for j, p in enumerate(files[k * 2:k * 2 + 2]):
                img = cv2.imread(str(p))
                for sub, out in (("sharp", img), ("blur", cv2.blur(img, (5, 5))), ("blur_gamma", 255 - img)):
                    cv2.imwrite(str(tmp_path / split / seq / sub / f"{j:06d}.png"), out)
    (tmp_path / "train" / "GOPR0003" / "sharp").mkdir(parents=True)  # lacks blur/: warned, skipped
    assert detect_layout(tmp_path) == "gopro" and detect_layout(tmp_path / "train") == "gopro"
    plain = GoProDataset(tmp_path, crop=None, flip=False, fixed=True)
    gamma = GoProDataset(tmp_path, blur_folder="blur_gamma", crop=None, fixed=True)
    assert len(plain) == len(gamma) == 4 and plain[0]["name"] == "GOPR0001/000000.png"
    assert [s[0].name for s in plain.skipped] == ["GOPR0003"] and len(warnings_seen) == 2
    seq = tmp_path / "train" / "GOPR0002"
    assert torch.equal(plain[3]["blur"], _rgb_chw(seq / "blur" / "000001.png"))
    assert torch.equal(gamma[3]["blur"], _rgb_chw(seq / "blur_gamma" / "000001.png"))
    assert torch.equal(gamma[3]["sharp"], _rgb_chw(seq / "sharp" / "000001.png"))
    assert len(GoProDataset(tmp_path, split="test", crop=C)) == 2
    assert isinstance(build_dataset(pairs=tmp_path, crop=C), GoProDataset)
    val = build_validation(pairs=tmp_path, crop=C)
    assert len(val) == 2 and val[0]["name"].startswith("GOPR0100/")


def test_paired_folders_match_by_name_then_stem(tmp_path, photos, warnings_seen):
    root = _pairs(tmp_path / "p", photos)
    first = sorted((root / "blur").glob("*.png"))[0]
    cv2.imwrite(str(first.with_suffix(".jpg")), cv2.imread(str(first)))  # matched by stem only
    first.unlink()
    shutil.copy(root / "blur" / "kodim02.png", root / "blur" / "orphan.png")
    cv2.imwrite(str(root / "blur" / "stem.jpg"), cv2.imread(str(root / "sharp" / "kodim02.png")))
    cv2.imwrite(str(root / "sharp" / "stem.png"), cv2.imread(str(root / "sharp" / "kodim02.png")))
    ds = PairedFolderDataset(root, crop=None, fixed=True)
    names = [e[2] for e in ds.entries]
    assert {first.with_suffix(".jpg").name, "stem.jpg"} <= set(names) and "orphan.png" not in names
    assert len(ds) == 7 and [s[0].name for s in ds.skipped] == ["orphan.png"] and len(warnings_seen) == 1
    i = names.index("kodim02.png")
    assert torch.equal(ds[i]["sharp"], _rgb_chw(root / "sharp" / "kodim02.png"))
    assert torch.equal(ds[i]["blur"], _rgb_chw(root / "blur" / "kodim02.png"))
    assert detect_layout(root) == "paired" and isinstance(build_dataset(pairs=root, crop=C), PairedFolderDataset)


def test_halve_halves_each_image(tmp_path, photos):
    root = _pairs(tmp_path / "p", photos)
    full = PairedFolderDataset(root, crop=None, fixed=True)
    half = PairedFolderDataset(root, crop=None, fixed=True, halve=True)
    for i in (0, 5):
        (_, h, w), (_, h2, w2) = full[i]["sharp"].shape, half[i]["sharp"].shape
        assert (h2, w2) == (h // 2, w // 2)
        ref = torch.nn.functional.avg_pool2d(full[i]["sharp"][None], 2)[0]
        assert (half[i]["sharp"] - ref).abs().mean() < 0.01
    assert half[0]["blur"].shape == half[0]["sharp"].shape
    assert PairedFolderDataset(root, crop=C, halve=True)[0]["blur"].shape == (3, C, C)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / ((a - b) ** 2).mean()))


def _hf(x: torch.Tensor) -> float:
    return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean() + (x[:, 1:] - x[:, :-1]).abs().mean())


@pytest.mark.parametrize("method", ["trajectory", "gopro"])
def test_synthetic_items_are_blurred_and_aligned(photos, method):
    ds = SyntheticDataset([photos], crop=96, methods=((method, 1.0),), seed=0, length=12)
    ratios, aligned, shifted = [], [], {s: [] for s in ((5, 1), (-5, 1), (5, 2), (-5, 2))}
    for i in range(len(ds)):
        b, s = ds[i]["blur"], ds[i]["sharp"]
        ratios.append(_hf(b) / _hf(s))
        inner = np.s_[:, 5:-5, 5:-5]
        aligned.append(_psnr(b[inner], s[inner]))
        for (d, ax), vals in shifted.items():
            vals.append(_psnr(b[inner], torch.roll(s, d, dims=ax)[inner]))
    assert max(ratios) < 0.95 and np.mean(ratios) < 0.7
    assert np.mean(aligned) > max(np.mean(v) for v in shifted.values()) + 1.5


def test_synthetic_margin_leaves_no_crop_border(photos):
    """A fixed crop's blur equals the same crop of the whole photo blurred with the same PSF."""
    params = TrajectoryParams(fractions=(1.0,))  # the full 60 px path: the widest PSF
    whole = SyntheticDataset([photos], crop=None, methods=(("trajectory", 1, params),), fixed=True)
    crop = SyntheticDataset([photos], crop=C, methods=(("trajectory", 1, params),), fixed=True)
    for i in (0, 4):
        w, c = whole[i]["blur"], crop[i]["blur"]
        t, l = (w.shape[1] - C) // 2, (w.shape[2] - C) // 2
        assert (c - w[:, t:t + C, l:l + C]).abs().max() <= 1.01 / 127.5
        assert not torch.equal(c, crop[i]["sharp"])


def test_mix_ratio_is_two_to_one(tmp_path, photos):
    real = PairedFolderDataset(_pairs(tmp_path / "p", photos), crop=C)
    synth = SyntheticDataset([photos], crop=C)
    mix = MixedDataset([(synth, 2.0), (real, 1.0)], length=3000, seed=0)
    parts = [mix.source(i)[0] for i in range(len(mix))]
    assert abs(parts.count(0) / len(parts) - 2 / 3) < 0.03
    k, j = mix.source(7)
    item = mix[7]
    assert item["name"] == (synth if k == 0 else real).entries[j][-1]
    mix.set_epoch(1)
    assert [mix.source(i) for i in range(20)] != [mix.source(i) for i in range(20, 40)]
    built = build_dataset(pairs=tmp_path / "p", sharp=photos, crop=C)
    assert isinstance(built, MixedDataset) and list(built.weights) == pytest.approx([2 / 3, 1 / 3])


def test_bad_and_tiny_files_warned_once_counted_skipped(tmp_path, photos, warnings_seen):
    d = tmp_path / "sharp"
    shutil.copytree(photos, d)
    (d / "corrupt.png").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    cv2.imwrite(str(d / "tiny.png"), np.zeros((20, 90, 3), np.uint8))  # short side under C/2
    kodak = cv2.imread(str(sorted(photos.glob("*.png"))[0]))
    cv2.imwrite(str(d / "small.png"), kodak[:40, :50])  # within 2x of the crop: upscaled
    good = cv2.imencode(".png", kodak)[1].tobytes()
    (d / "truncated.png").write_bytes(good[:200])  # header fine, pixels missing: found on read
    ds = SyntheticDataset([d], crop=C)
    assert sorted(p.name for p, _ in ds.skipped) == ["corrupt.png", "tiny.png"]
    assert "unreadable" in dict((p.name, r) for p, r in ds.skipped)["corrupt.png"]
    assert len(ds) == 8 and len(warnings_seen) == 2
    assert all("corrupt.png" in w or "tiny.png" in w for w in warnings_seen)
    names = [e[1] for e in ds.entries]
    i = names.index("sharp/truncated.png")
    for _ in range(2):
        item = ds[i]  # falls through to the next readable file, warns once
        assert item["name"] == names[(i + 1) % len(names)]
    assert len(warnings_seen) == 3 and ds.skipped[-1][0].name == "truncated.png"
    assert ds[names.index("sharp/small.png")]["blur"].shape == (3, C, C)  # 40 px upscaled to 64


def test_empty_or_unusable_folders_raise_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no usable sharp images.*empty"):
        SyntheticDataset([tmp_path / "empty"], crop=C)
    (tmp_path / "empty" / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(InputError, match="no usable sharp images"):
        build_dataset(sharp=tmp_path / "empty", crop=C)
    for sub in ("blur", "sharp"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    with pytest.raises(InputError, match="pairs.*blur/ and <root>/sharp/"):
        PairedFolderDataset(tmp_path / "pairs", crop=C)
    with pytest.raises(InputError, match="split folder not found"):
        GoProDataset(tmp_path / "pairs", crop=C)
    with pytest.raises(InputError, match="no training data"):
        build_dataset()


def test_detect_layout_rejects_other_folders(tmp_path):
    (tmp_path / "a" / "images").mkdir(parents=True)
    with pytest.raises(InputError, match="neither a paired nor a GoPro"):
        detect_layout(tmp_path / "a")
    with pytest.raises(InputError, match="not found"):
        detect_layout(tmp_path / "missing")


def test_validation_is_fixed_centre_crops(tmp_path, photos):
    root = _pairs(tmp_path / "p", photos)
    val = build_validation(pairs=root, sharp=photos, crop=C, seed=2, limit=3)
    assert isinstance(val, ValidationSet) and len(val) == 6
    before = [val[i] for i in range(len(val))]
    val.set_epoch(5)
    assert all(_same(val[i], before[i]) for i in range(len(val)))
    sharp0 = _rgb_chw(root / "sharp" / before[0]["name"])
    t, l = (sharp0.shape[1] - C) // 2, (sharp0.shape[2] - C) // 2
    assert torch.equal(before[0]["sharp"], sharp0[:, t:t + C, l:l + C])
    assert not torch.equal(before[3]["blur"], before[3]["sharp"])  # synthetic part is blurred
    every = build_validation(sharp=photos, crop=C, seed=2)  # a file's pair ignores the rest of the set
    by_name = {every[i]["name"]: every[i] for i in range(len(every))}
    assert all(_same(by_name[before[3 + i]["name"]], before[3 + i]) for i in range(3))
    whole = build_validation(pairs=root, crop=None)
    assert whole[0]["sharp"].shape == _rgb_chw(root / "sharp" / whole[0]["name"]).shape


def test_max_side_downscales_big_photos_and_the_cache_serves_repeats(tmp_path):
    """Multi-megapixel photos are brought to camera scale once; later items reuse the decoded copy."""
    import cv2

    big = np.random.default_rng(0).integers(0, 256, (900, 1600, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), big)
    ds = SyntheticDataset(tmp_path, crop=64, seed=0, max_side=400)
    photo = ds._photo(tmp_path / "big.png")
    assert photo.shape == (225, 400, 3)
    assert ds._photo(tmp_path / "big.png") is photo  # cached
    assert ds[0]["blur"].shape == (3, 64, 64)
    uncached = SyntheticDataset(tmp_path, crop=64, seed=0, cache=False)
    assert uncached._photo(tmp_path / "big.png").shape == (900, 1600, 3) and not uncached._cache


def test_photo_cache_is_bounded_least_recently_used_out(tmp_path, monkeypatch):
    import cv2

    from deblur.train import datasets

    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((100, 100, 3), i * 40, np.uint8))
    monkeypatch.setattr(datasets, "CACHE_BYTES", 2 * 100 * 100 * 3)  # room for two photos
    ds = SyntheticDataset(tmp_path, crop=32, seed=0)
    paths = [tmp_path / f"{i}.png" for i in range(4)]
    for p in paths[:3]:
        ds._photo(p)
    assert list(ds._cache) == paths[1:3] and ds._cache_bytes == 2 * 30000
    ds._photo(paths[1])  # a hit moves it to the young end
    ds._photo(paths[3])
    assert list(ds._cache) == [paths[1], paths[3]]
