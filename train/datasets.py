"""Training datasets: paired folders, GoPro, on-the-fly synthetic blur, mixtures, validation sets.

Every item is ``{"blur", "sharp": float32 3xHxW RGB in [-1, 1], "name": str}``. An item's randomness
is a pure function of (seed, epoch, index): each item derives its own numpy Generator and never
touches global RNG state, so runs are reproducible, resumable, and identical for any DataLoader
worker count or DistributedSampler rank. Bad files are warned about once, counted in ``skipped``
and passed over; only a dataset with nothing usable is an error.
"""
from __future__ import annotations

import collections
import dataclasses
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
from deblur.train.kernel_bank import kernel_bank
from deblur.train.psf import TrajectoryParams, crop_psf, random_psf
from deblur.train.sensor import SensorParams, degrade, finish
from deblur.train.shake import Realism, ShakeParams, make_pair, render

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


@dataclasses.dataclass(frozen=True)
class SynthOptions:
    """Speed and realism options of ``SyntheticDataset``. The defaults are the paper's synthesis, bit for bit.

    bank=0: a new random trajectory per trajectory-branch sample (``random_trajectory``, a Python
    loop of several ms); N > 0: PSFs from a ``kernel_bank.KernelBank`` of N trajectories built
    once from the dataset seed (validation sets use a separate stream of the seed, so their kernels
    are never trained on). min_len=0.0: path lengths as the authors (every path the trajectory
    params' max_len, exposure fractions 1/10, 1/2, 1); > 0: log-uniform in [min_len, max_len] px at
    full exposure (with or without a bank). reuse=1: K > 1 cuts K training items (random sub-crops,
    flips and transposes, each with its own sensor noise) from one synthesised patch of about
    crop * (1 + (sqrt(K) - 1) / 2) px a side (see ``SyntheticDataset``). realism: ``shake.Realism``
    (linear light, camera curve, saturated highlights); the sensor noise model is in ``SensorParams``.
    """

    bank: int = 0
    min_len: float = 0.0
    reuse: int = 1
    realism: Realism = dataclasses.field(default_factory=Realism)

    def __post_init__(self) -> None:
        if self.bank < 0 or self.min_len < 0 or self.reuse < 1:
            raise InputError(f"need bank >= 0, min_len >= 0 and reuse >= 1, got {self.bank}, {self.min_len}, {self.reuse}")

    @property
    def active(self) -> bool:
        return self.bank > 0 or self.min_len > 0 or self.reuse > 1 or self.realism.active


def synthesis_options(cfg: Any) -> tuple[Methods, SensorParams, SynthOptions]:
    """(methods, sensor, synth) for ``build_dataset``/``build_validation`` from a ``TrainConfig``.

    Trajectory paths are ``blur_max_len`` long on a canvas of at least 64 px that fits them (64 up
    to 60 px, the authors'); the GoPro-style branch gets ``shake_pan_max`` and ``shake_max_step``
    (None, i.e. ``ShakeParams()``, at their defaults). With every synthesis setting at its default
    this is exactly the paper's synthesis.
    """
    length = float(cfg.blur_max_len)
    traj = TrajectoryParams(max_len=length, canvas=max(64, 2 * math.ceil(length / 2) + 4))
    shake = None
    if cfg.shake_max_step or cfg.shake_pan_max != ShakeParams().pan_speed[1]:
        shake = ShakeParams(pan_speed=(0.0, float(cfg.shake_pan_max)), max_step=float(cfg.shake_max_step))
    methods = tuple((name, weight, traj if name == "trajectory" else shake) for name, weight in cfg.blur_methods.items())
    sensor = SensorParams(cfg.noise_read_max, cfg.noise_shot_max, cfg.jpeg_prob, cfg.jpeg_min_quality,
                          model=cfg.noise_model, gain=(float(cfg.noise_gain_min), float(cfg.noise_gain_max)))
    realism = Realism(linear=cfg.linear_light, curve=cfg.camera_curve, highlights=float(cfg.highlights),
                      highlight_gain=float(cfg.highlight_gain))
    synth = SynthOptions(bank=int(cfg.kernel_bank), min_len=float(cfg.blur_min_len), reuse=int(cfg.pair_reuse),
                         realism=realism)
    return methods, sensor, synth


#: Synthesised patches kept per process for ``SynthOptions.reuse`` (a batch touches batch / K of them).
REUSE_CACHE = 8


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

    ``synth`` (``SynthOptions``) turns on the kernel bank, path-length range, pair reuse and the
    realism options; with any of them the pair is made by ``shake.render`` (blurred image kept in
    float, linear light where asked) and ``sensor.finish`` (noise in linear light for the
    poisson-gaussian model, clip, camera curve, 8-bit noise, JPEG), still on the blurred input only.
    Pair reuse (K = ``synth.reuse`` > 1, training sets with a crop only) groups items by their
    position in this epoch's sampling order, ``numpy.random.default_rng([seed, epoch]).permutation(len)``
    (``distributed.StepBatches``'s order, so a batch of B items needs about B / K patches and one
    DataLoader worker makes them all): group g = position // K is one patch of the photo at the
    group's first position, synthesised from ``default_rng([seed, g, epoch, 3])`` and cached per
    process; each item draws its sub-crop, flip/transpose and noise from its own generator. Items
    stay a pure function of (seed, epoch, index); only the cache hit rate depends on the order.
    """

    def __init__(self, sharp_dirs: PathLike | Sequence[PathLike], crop: int | None = 256,
                 methods: Methods = (("trajectory", 1.0),), flip: bool = True, halve: bool = False,
                 seed: int = 0, length: int | None = None, fixed: bool = False,
                 sensor: SensorParams = SensorParams(), max_side: int | None = None, cache: bool = True,
                 synth: SynthOptions = SynthOptions()):
        super().__init__(crop, flip, halve, seed, fixed)
        self.sensor, self.max_side, self.cache, self.synth = sensor, max_side, cache, synth
        self._banks: dict[int, Any] = {}  # method position -> KernelBank
        self._pairs: collections.OrderedDict[tuple[int, int], tuple] = collections.OrderedDict()
        self._order_cache: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None
        self.renders = 0  # patches synthesised in this process (pair reuse: fewer than items)
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
        for k, (method, _, params) in enumerate(self.methods):
            if method == "trajectory" and synth.bank:  # built now, so forked workers inherit it
                self._banks[k] = kernel_bank(self.seed + (2**32 if fixed else 0), synth.bank,
                                             params or TrajectoryParams(), synth.min_len)

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

    def _entry(self, index: int) -> tuple[str, np.ndarray | None]:
        """The name and decoded photo of entry ``index`` (wrapping); None, warned once, if it cannot be decoded."""
        path, name = self.entries[index % len(self.entries)]
        img = self._photo(path)
        if img is None:
            self._skip(path, "cannot decode the image")
        return name, img

    def _load_paper(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        """The original synthesis (``SynthOptions()``): ``make_pair`` then ``degrade``."""
        name, img = self._entry(index)
        if img is None:
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

    def _load(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        if not self.synth.active:
            return self._load_paper(index, rng)
        if self.synth.reuse > 1 and not self.fixed and self.crop is not None:
            return self._load_reused(index, rng)
        name, img = self._entry(index)
        if img is None:
            return None
        rng = rng_for(self.seed, name) if self.fixed else rng
        blur, sharp, linear = self._synthesise(_fit(img, self.crop, self.halve), rng, self.crop, not self.fixed)
        return self._finish(finish(blur, rng, self.sensor, self.synth.realism.curve, linear), sharp, name, rng)

    def _kernel(self, k: int, params: TrajectoryParams | None, rng: np.random.Generator) -> np.ndarray:
        """A trajectory PSF: from the bank, or drawn now (at a log-uniform length when ``min_len``), cropped."""
        if k in self._banks:
            return self._banks[k].draw(rng)
        p = params or TrajectoryParams()
        if self.synth.min_len:
            length = math.exp(rng.uniform(math.log(self.synth.min_len), math.log(p.max_len)))
            p = dataclasses.replace(p, max_len=length, fractions=(1.0,))
        return crop_psf(random_psf(rng, p))

    def _synthesise(self, img: np.ndarray, rng: np.random.Generator, crop: int | None,
                    random_box: bool) -> tuple[np.ndarray, np.ndarray, bool]:
        """(blurred float, sharp uint8, linear) of one crop (random, or centred) of a fitted photo, with a
        margin of context blurred and cut away. Draws the method, the PSF, the box, then ``render``'s."""
        k = int(rng.choice(len(self.methods), p=self._p)) if len(self.methods) > 1 else 0
        method, _, params = self.methods[k]
        psf = self._kernel(k, params, rng) if method == "trajectory" else None
        m = max(psf.shape) // 2 + 1 if psf is not None else _margin(method, params)
        h, w = img.shape[:2]
        t, l, ch, cw = _box(h, w, crop, rng if random_box else None)
        t0, l0 = max(0, t - m), max(0, l - m)
        patch = np.ascontiguousarray(img[t0:min(h, t + ch + m), l0:min(w, l + cw + m)])
        blurred, sharp, linear = render(patch, rng, method, params, self.synth.realism, psf)
        inner = np.s_[t - t0:t - t0 + ch, l - l0:l - l0 + cw]
        self.renders += 1
        return np.ascontiguousarray(blurred[inner]), np.ascontiguousarray(sharp[inner]), linear

    def _order(self) -> tuple[np.ndarray, np.ndarray]:
        """(order, position): this epoch's sampling permutation of range(len) and its inverse."""
        key = (self.epoch, len(self))
        if self._order_cache is None or self._order_cache[0] != key:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self))
            pos = np.empty_like(order)
            pos[order] = np.arange(len(order))
            self._order_cache = (key, order, pos)
        return self._order_cache[1], self._order_cache[2]

    def _load_reused(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        """One of K items cut from the patch of its group (see the class docstring)."""
        reuse, crop = self.synth.reuse, int(self.crop)
        order, pos = self._order()
        group = int(pos[index]) // reuse
        key = (self.epoch, group)
        hit = self._pairs.get(key)
        if hit is None:
            name, img = self._entry(int(order[group * reuse]))
            if img is None:
                return None
            img = _fit(img, crop, self.halve)
            side = min(img.shape[0], img.shape[1], round(crop * (1 + (math.sqrt(reuse) - 1) / 2)))
            hit = (*self._synthesise(img, np.random.default_rng([self.seed, group, self.epoch, 3]), side, True), name)
            self._pairs[key] = hit
            while len(self._pairs) > REUSE_CACHE:
                self._pairs.popitem(last=False)
        else:
            self._pairs.move_to_end(key)
        blur, sharp, linear, name = hit
        top, left = int(rng.integers(0, blur.shape[0] - crop + 1)), int(rng.integers(0, blur.shape[1] - crop + 1))
        b, s = blur[top:top + crop, left:left + crop], sharp[top:top + crop, left:left + crop]
        if self.flip:  # one of the 8 flips/transposes of the square, the same for both images
            d = int(rng.integers(8))
            if d & 4:
                b, s = b.transpose(1, 0, 2), s.transpose(1, 0, 2)
            if d & 2:
                b, s = b[::-1], s[::-1]
            if d & 1:
                b, s = b[:, ::-1], s[:, ::-1]
        out = finish(np.ascontiguousarray(b), rng, self.sensor, self.synth.realism.curve, linear)
        return {"blur": _tensor(out), "sharp": _tensor(np.ascontiguousarray(s)), "name": name}


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
                  sensor: SensorParams = SensorParams(), max_side: int | None = None,
                  synth: SynthOptions = SynthOptions()) -> Dataset:
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
    made = SyntheticDataset(sharp, methods=methods, length=None if real else length, sensor=sensor, max_side=max_side,
                            synth=synth, **common)
    return made if real is None else MixedDataset([(made, synthetic_ratio), (real, 1.0)], length, seed)


def build_validation(pairs: PathLike | None = None, sharp: PathLike | Sequence[PathLike] | None = None,
                     crop: int | None = 256, seed: int = 0, limit: int | None = None, halve: bool = False,
                     methods: Methods = (("trajectory", 1.0),), blur_folder: str = "blur",
                     sensor: SensorParams = SensorParams(), max_side: int | None = None,
                     synth: SynthOptions = SynthOptions()) -> ValidationSet:
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
        parts.append(SyntheticDataset(sharp, methods=methods, sensor=sensor, max_side=max_side, synth=synth, **common))
    for p in parts:
        p.thin(limit)
    return ValidationSet(parts)
