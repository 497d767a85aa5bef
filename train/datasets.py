"""Training datasets: paired folders, GoPro, on-the-fly synthetic blur, mixtures, validation sets.

Every item is ``{"blur", "sharp": float32 3xHxW RGB in [-1, 1], "name": str}``. An item's randomness
is a pure function of (seed, epoch, index): each item derives its own numpy Generator and never
touches global RNG state, so runs are reproducible, resumable, and identical for any DataLoader
worker count or DistributedSampler rank. Bad files are warned about once, counted in ``skipped``
and passed over; only a dataset with nothing usable is an error.
"""
from __future__ import annotations

import collections
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset

from deblur.runtime.errors import InputError
from deblur.runtime.images import IMAGE_SUFFIXES, list_images, read_rgb
from deblur.runtime.prepost import U8_TO_UNIT
from deblur.train.blur_io import rng_for
from deblur.train.images import fit_long_side, spread_evenly
from deblur.train.psf import TrajectoryParams
from deblur.train.sensor import SensorParams, degrade
from deblur.train.shake import ShakeParams, make_pair

log = logging.getLogger("deblur")
PathLike = str | Path
Methods = Sequence[tuple[Any, ...]]  # (method, weight) or (method, weight, params)
GOPRO_HINT = "expected <root>/<split>/<seq>/{blur,blur_gamma,sharp}/*.png"
CACHE_BYTES = 512 * 2**20  # decoded photos kept per process (each DataLoader worker has its own)
PAIRED_HINT = "expected <root>/blur/ and <root>/sharp/ holding images with matching names"


def _fit(img: np.ndarray, crop: int | None, halve: bool) -> np.ndarray:
    """Halve (the authors' 1280x720 -> 640x360), then upscale so the short side holds the crop."""
    if halve:
        img = cv2.resize(img, (max(1, img.shape[1] // 2), max(1, img.shape[0] // 2)), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    if crop is not None and min(h, w) < crop:
        s = crop / min(h, w)
        img = cv2.resize(img, (max(crop, round(w * s)), max(crop, round(h * s))), interpolation=cv2.INTER_CUBIC)
    return img


def _box(h: int, w: int, crop: int | None, rng: np.random.Generator | None) -> tuple[int, int, int, int]:
    """(top, left, height, width): the whole image, a centre crop (rng None) or a random crop."""
    if crop is None:
        return 0, 0, h, w
    if rng is None:
        return (h - crop) // 2, (w - crop) // 2, crop, crop
    return int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1)), crop, crop


def _tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> contiguous float32 3xHxW in [-1, 1], by the runtime's own table (``prepost.U8_TO_UNIT``)."""
    return torch.from_numpy(np.ascontiguousarray(U8_TO_UNIT[img.transpose(2, 0, 1)]))


def _header_size(path: Path) -> tuple[int, int] | str:
    """(W, H) from the header only (cheap), or why the file cannot be opened."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # noqa: BLE001 - any failure just means "skip this file"
        return f"unreadable ({type(e).__name__}: {e})"


def _margin(method: str, params: Any) -> int:
    """Context px around a crop so the blur inside it never sees the patch border."""
    if method == "trajectory":
        return (params or TrajectoryParams()).canvas // 2 + 1
    p = params or ShakeParams()
    return math.ceil(p.pan_speed[1] * p.subframes / p.sample_rate / 2 + 4 * p.jitter_px) + 4


class _Base(Dataset):
    """Shared crop/flip/epoch/skip logic; subclasses fill ``entries`` and implement ``_load``."""

    def __init__(self, crop: int | None, flip: bool, halve: bool, seed: int, fixed: bool):
        if crop is not None and int(crop) < 1:
            raise InputError(f"crop must be a positive size or None, got {crop}")
        if int(seed) < 0:
            raise InputError(f"seed must be >= 0, got {seed}")
        self.crop, self.flip, self.halve = None if crop is None else int(crop), flip, halve
        self.seed, self.fixed, self.epoch, self.length = int(seed), fixed, 0, None
        self.entries: list[tuple] = []  # one tuple per file (pair); the name is last
        self._skipped: list[tuple[Path, str]] = []
        self._warned: set[Path] = set()

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        """(path, reason) of every file passed over (runtime failures: in this process only)."""
        return self._skipped

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose crops, flips and blurs ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries) if self.length is None else self.length

    def _rng(self, index: int) -> np.random.Generator:
        """The item's own generator; fixed sets ignore the epoch (same pairs every epoch)."""
        return np.random.default_rng([self.seed, index, 0 if self.fixed else self.epoch, 2 if self.fixed else 1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        return self._item(int(index), self._rng(int(index)))

    def _item(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        """The item at ``index``, or (if its file fails to decode) the next readable one."""
        n = len(self)
        for k in range(len(self.entries)):  # entries repeat cyclically when length > entries
            item = self._load((index + k) % n, rng)
            if item is not None:
                return item
        raise InputError(f"none of the {n} files could be decoded", hint="see the warnings above")

    def _skip(self, path: Path, reason: str) -> None:
        """One warning per file, ever, plus a record in ``skipped``."""
        if path not in self._warned:
            self._warned.add(path)
            self._skipped.append((path, reason))
            log.warning("%s: %s; skipped", path, reason)

    def _usable(self, path: Path) -> tuple[int, int] | None:
        """Header size if the file opens and is not tiny (short side under crop/2 after halving)."""
        size = _header_size(path)
        if isinstance(size, str):
            self._skip(path, size)
            return None
        w, h = (size[0] // 2, size[1] // 2) if self.halve else size
        need = 1 if self.crop is None else self.crop / 2
        if min(w, h) < need:
            self._skip(path, f"tiny ({size[0]}x{size[1]}{', halved' if self.halve else ''}); "
                             f"needs at least {need:g} px a side for crop {self.crop}")
            return None
        return size

    def _finish(self, blur: np.ndarray, sharp: np.ndarray, name: str, rng: np.random.Generator) -> dict[str, Any]:
        """Same horizontal flip for both images (p=0.5, never in fixed sets), then tensors."""
        if self.flip and not self.fixed and rng.random() < 0.5:
            blur, sharp = blur[:, ::-1], sharp[:, ::-1]
        return {"blur": _tensor(blur), "sharp": _tensor(sharp), "name": name}

    def thin(self, limit: int | None) -> None:
        """Keep ``limit`` entries spread evenly over the list (GoPro's first N are one sequence)."""
        if limit is not None and limit < len(self.entries):
            self.entries = [self.entries[i] for i in spread_evenly(len(self.entries), limit)]
            self.length = None


class _PairBase(_Base):
    """Real (blur, sharp) file pairs: entries are (blur_path, sharp_path, name)."""

    def _add_folder(self, blur_dir: Path, sharp_dir: Path, prefix: str = "") -> None:
        """Pair files by name, then by stem among those left (a.jpg blur with a.png sharp)."""
        sharps = list_images(sharp_dir)
        by_name = {p.name: p for p in sharps}
        pairs, left = {}, []
        for b in list_images(blur_dir):
            if b.name in by_name:
                pairs[b] = by_name.pop(b.name)
            else:
                left.append(b)
        stems: dict[str, list[Path]] = {}
        for s in by_name.values():
            stems.setdefault(s.stem, []).append(s)
        for b in left:
            if len(stems.get(b.stem, [])) == 1:
                pairs[b] = stems[b.stem][0]
            else:
                self._skip(b, f"no sharp file with the same name or stem in {sharp_dir}")
        for b, s in sorted(pairs.items()):
            sb, ss = self._usable(b), self._usable(s)
            if sb and ss and sb != ss:
                self._skip(b, f"blur is {sb[0]}x{sb[1]} but sharp {s.name} is {ss[0]}x{ss[1]}")
            elif sb and ss:
                self.entries.append((b, s, prefix + b.name))

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        bp, sp, name = self.entries[index % len(self.entries)]
        blur, sharp = read_rgb(bp), read_rgb(sp)
        if blur is None or sharp is None:
            self._skip(bp if blur is None else sp, "cannot decode the image")
            return None
        if blur.shape != sharp.shape:
            self._skip(bp, f"decoded blur {blur.shape} and sharp {sharp.shape} differ")
            return None
        blur, sharp = _fit(blur, self.crop, self.halve), _fit(sharp, self.crop, self.halve)
        t, l, h, w = _box(*blur.shape[:2], self.crop, None if self.fixed else rng)
        return self._finish(blur[t:t + h, l:l + w], sharp[t:t + h, l:l + w], name, rng)


class PairedFolderDataset(_PairBase):
    """``root/blur/*`` with ``root/sharp/*`` of matching names: random crops, flips, optional halving."""

    def __init__(self, root: PathLike, crop: int | None = 256, flip: bool = True, halve: bool = False,
                 seed: int = 0, fixed: bool = False):
        super().__init__(crop, flip, halve, seed, fixed)
        self.root = Path(root)
        self._add_folder(self.root / "blur", self.root / "sharp")
        if not self.entries:
            raise InputError("no usable blur/sharp pairs", self.root, hint=PAIRED_HINT)


class GoProDataset(_PairBase):
    """GoPro layout ``<root>/<split>/<seq>/{blur,blur_gamma,sharp}/``; split=None: root is the split."""

    def __init__(self, root: PathLike, split: str | None = "train", blur_folder: str = "blur",
                 crop: int | None = 256, flip: bool = True, halve: bool = False, seed: int = 0,
                 fixed: bool = False):
        super().__init__(crop, flip, halve, seed, fixed)
        self.root = Path(root) / split if split else Path(root)
        if not self.root.is_dir():
            raise InputError("GoPro split folder not found", self.root, hint=GOPRO_HINT)
        for seq in sorted(d for d in self.root.iterdir() if d.is_dir()):
            if (seq / blur_folder).is_dir() and (seq / "sharp").is_dir():
                self._add_folder(seq / blur_folder, seq / "sharp", prefix=f"{seq.name}/")
            else:
                self._skip(seq, f"no {blur_folder}/ and sharp/ folders in this sequence")
        if not self.entries:
            raise InputError(f"no usable {blur_folder}/sharp pairs in any sequence", self.root, hint=GOPRO_HINT)


class SyntheticDataset(_Base):
    """Sharp photos (folders searched recursively) blurred on the fly with ``shake.make_pair``.

    A crop plus a margin is blurred and then cut to the crop, so borders carry no artefacts and only
    the patch is convolved. ``methods`` mixes "trajectory"/"gopro" by weight; an optional third
    tuple element passes params. ``length`` sets the epoch size (files are reused cyclically).
    Fixed sets blur each file with ``rng_for(seed, name)``, the same every epoch. ``sensor`` adds
    camera noise and JPEG to the blurred crop only (``sensor.degrade``). ``max_side`` downscales
    larger photos on load (multi-megapixel wallpapers to camera-frame scale, where a crop holds
    detail rather than one smooth patch); ``cache`` keeps up to ``CACHE_BYTES`` of decoded photos
    per process, least recently used out (decoding a 6 MP JPEG costs more than blurring a crop).
    """

    def __init__(self, sharp_dirs: PathLike | Sequence[PathLike], crop: int | None = 256,
                 methods: Methods = (("trajectory", 1.0),), flip: bool = True, halve: bool = False,
                 seed: int = 0, length: int | None = None, fixed: bool = False,
                 sensor: SensorParams = SensorParams(), max_side: int | None = None, cache: bool = True):
        super().__init__(crop, flip, halve, seed, fixed)
        self.sensor, self.max_side, self.cache = sensor, max_side, cache
        self._cache: collections.OrderedDict[Path, np.ndarray] = collections.OrderedDict()
        self._cache_bytes = 0
        dirs = [Path(sharp_dirs)] if isinstance(sharp_dirs, (str, Path)) else [Path(d) for d in sharp_dirs]
        self.methods = [(m[0], float(m[1]), m[2] if len(m) > 2 else None) for m in methods]
        if not self.methods or any(m not in ("trajectory", "gopro") or w <= 0 for m, w, _ in self.methods):
            raise InputError(f"bad blur methods {list(methods)}", hint="use ('trajectory', w) / ('gopro', w), w > 0")
        weights = np.array([w for _, w, _ in self.methods])
        self._p = weights / weights.sum()
        for d in dirs:
            if not d.is_dir():
                raise InputError("sharp image folder not found", d, hint="pass a folder of sharp photos")
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and self._usable(p):
                    self.entries.append((p, f"{d.name}/{p.relative_to(d).as_posix()}"))
        if not self.entries:
            raise InputError(f"no usable sharp images ({' '.join(IMAGE_SUFFIXES)}, searched recursively) in "
                             + ", ".join(map(str, dirs)), hint="short sides must be at least crop/2 px (after halving)")
        self.length = None if length is None else int(length)

    def _photo(self, path: Path) -> np.ndarray | None:
        """The decoded photo (long side capped at ``max_side``), from this process's cache if ``cache``."""
        img = self._cache.get(path)
        if img is not None:
            self._cache.move_to_end(path)
            return img
        img = read_rgb(path)
        if img is not None and self.max_side:
            img = fit_long_side(img, self.max_side)
        if img is not None and self.cache:
            self._cache[path] = img
            self._cache_bytes += img.nbytes
            while self._cache_bytes > CACHE_BYTES and len(self._cache) > 1:  # least recently used out
                self._cache_bytes -= self._cache.popitem(last=False)[1].nbytes
        return img

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        path, name = self.entries[index % len(self.entries)]
        img = self._photo(path)
        if img is None:
            self._skip(path, "cannot decode the image")
            return None
        rng = rng_for(self.seed, name) if self.fixed else rng
        k = int(rng.choice(len(self.methods), p=self._p)) if len(self.methods) > 1 else 0
        method, _, params = self.methods[k]
        img = _fit(img, self.crop, self.halve)
        h, w = img.shape[:2]
        t, l, ch, cw = _box(h, w, self.crop, None if self.fixed else rng)
        m = _margin(method, params)
        t0, l0 = max(0, t - m), max(0, l - m)
        patch = np.ascontiguousarray(img[t0:min(h, t + ch + m), l0:min(w, l + cw + m)])
        blurred, sharp = make_pair(patch, rng, method, params)
        inner = np.s_[t - t0:t - t0 + ch, l - l0:l - l0 + cw]
        return self._finish(degrade(np.ascontiguousarray(blurred[inner]), rng, self.sensor), sharp[inner], name, rng)


class MixedDataset(_Base):
    """Draws each item from one part with probability proportional to its weight (Comb: 2:1).

    Item i picks its part and the index inside it from its own (seed, epoch, i) generator, which
    then drives that part's crop/flip/blur, so repeated draws of one file still differ.
    ``length`` defaults to the sum of the parts' lengths.
    """

    def __init__(self, parts: Sequence[tuple[Dataset, float]], length: int | None = None, seed: int = 0):
        super().__init__(None, False, False, seed, False)
        if not parts or any(w <= 0 or len(d) == 0 for d, w in parts):
            raise InputError("MixedDataset needs non-empty parts with weights > 0")
        self.parts = [d for d, _ in parts]
        weights = np.array([float(w) for _, w in parts])
        self.weights = weights / weights.sum()
        self.length = int(length) if length is not None else sum(len(d) for d in self.parts)

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return [s for d in self.parts for s in getattr(d, "skipped", [])]

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for d in self.parts:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def _draw(self, rng: np.random.Generator) -> tuple[int, int]:
        k = int(rng.choice(len(self.parts), p=self.weights))
        return k, int(rng.integers(len(self.parts[k])))

    def source(self, index: int) -> tuple[int, int]:
        """(part, index in part) that item ``index`` comes from this epoch; reads no file."""
        return self._draw(self._rng(index))

    def _item(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
        k, j = self._draw(rng)
        part = self.parts[k]
        return part._item(j, rng) if isinstance(part, _Base) else part[j]


class ValidationSet(ConcatDataset):
    """Fixed datasets back to back: same pairs every epoch; ``set_epoch`` is a no-op."""

    def set_epoch(self, epoch: int) -> None:
        pass

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        return [s for d in self.datasets for s in d.skipped]


def detect_layout(root: PathLike) -> str:
    """"paired" for root/{blur,sharp}/, "gopro" for [<split>/]<seq>/{blur|blur_gamma,sharp}/."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("paired data folder not found", root, hint=f"{PAIRED_HINT}, or GoPro: {GOPRO_HINT}")
    if (root / "blur").is_dir() and (root / "sharp").is_dir():
        return "paired"
    for pattern in ("*/sharp", "*/*/sharp"):
        for d in root.glob(pattern):
            if d.is_dir() and ((d.parent / "blur").is_dir() or (d.parent / "blur_gamma").is_dir()):
                return "gopro"
    raise InputError("neither a paired nor a GoPro folder", root, hint=f"{PAIRED_HINT}, or {GOPRO_HINT}")


def _real(root: PathLike, split: str, **kw: Any) -> _PairBase:
    """Paired or GoPro dataset by layout; GoPro uses ``split`` if present, else root is a split."""
    if detect_layout(root) == "paired":
        kw.pop("blur_folder", None)
        return PairedFolderDataset(root, **kw)
    if (Path(root) / split).is_dir():
        return GoProDataset(root, split, **kw)
    if any(d.is_dir() for d in Path(root).glob("*/*/sharp")):
        raise InputError(f"GoPro folder has no '{split}' split", root, hint=GOPRO_HINT)
    return GoProDataset(root, None, **kw)


def build_dataset(pairs: PathLike | None = None, sharp: PathLike | Sequence[PathLike] | None = None,
                  crop: int = 256, flip: bool = True, halve: bool = False, seed: int = 0,
                  synthetic_ratio: float = 2.0, methods: Methods = (("trajectory", 1.0),),
                  blur_folder: str = "blur", length: int | None = None,
                  sensor: SensorParams = SensorParams(), max_side: int | None = None) -> Dataset:
    """Training data: ``sharp`` -> synthetic, ``pairs`` -> paired/GoPro, both -> synthetic:real mix."""
    if pairs is None and sharp is None:
        raise InputError("no training data given", hint="pass paired/GoPro pairs, sharp photos, or both")
    if synthetic_ratio <= 0:
        raise InputError(f"synthetic_ratio must be > 0, got {synthetic_ratio}")
    common = dict(crop=crop, flip=flip, halve=halve, seed=seed)
    real = None if pairs is None else _real(pairs, "train", blur_folder=blur_folder, **common)
    if sharp is None:
        if length is not None:
            real.length = int(length)
        return real
    synth = SyntheticDataset(sharp, methods=methods, length=None if real else length, sensor=sensor, max_side=max_side, **common)
    return synth if real is None else MixedDataset([(synth, synthetic_ratio), (real, 1.0)], length, seed)


def build_validation(pairs: PathLike | None = None, sharp: PathLike | Sequence[PathLike] | None = None,
                     crop: int | None = 256, seed: int = 0, limit: int | None = None, halve: bool = False,
                     methods: Methods = (("trajectory", 1.0),), blur_folder: str = "blur",
                     sensor: SensorParams = SensorParams(), max_side: int | None = None) -> ValidationSet:
    """Deterministic pairs (centre crop, or whole images if crop=None); GoPro uses its "test" split.

    ``limit`` keeps at most that many items from each source, spread evenly over the files.
    """
    if pairs is None and sharp is None:
        raise InputError("no validation data given", hint="pass paired/GoPro pairs, sharp photos, or both")
    common = dict(crop=crop, flip=False, halve=halve, seed=seed, fixed=True)
    parts: list[_Base] = []
    if pairs is not None:
        parts.append(_real(pairs, "test", blur_folder=blur_folder, **common))
    if sharp is not None:
        parts.append(SyntheticDataset(sharp, methods=methods, sensor=sensor, max_side=max_side, **common))
    for p in parts:
        p.thin(limit)
    return ValidationSet(parts)
