"""``TrainConfig``: every training setting in one dataclass, from YAML, ``--set key=value`` and flags.

The resolved config is written beside the checkpoints and stored in each of them as a plain dict,
so a run can always be reproduced and resumed. Values from ``--set`` are parsed as YAML scalars
(safe_load): never ``eval``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deblur.runtime.errors import InputError
from deblur.train.psf import CURVES
from deblur.train.sensor import NOISE_MODELS


@dataclass
class TrainConfig:
    """Defaults follow the paper and the authors' 2018 code, except where noted.

    Departures (all options): ``residual_init=0.01`` (the last conv starts 100x smaller than the
    authors' N(0, 0.02), so the global residual starts near zero; small specs otherwise spend
    their first thousands of steps suppressing an initial 0.2 residual), ``ema`` (beyond the paper), ``gp="per-sample"`` (the authors drew one
    alpha per batch and took a per-pixel norm; standard WGAN-GP is per sample),
    ``perceptual_imagenet_norm=True`` (the authors fed [-1,1] to VGG unnormalised).
    """

    # data
    sharp: list[str] = field(default_factory=list)  # folders of sharp photos: synthetic pairs on the fly
    pairs: list[str] = field(default_factory=list)  # paired (blur/, sharp/) or GoPro-layout folders
    val_sharp: list[str] = field(default_factory=list)
    val_pairs: list[str] = field(default_factory=list)
    val_limit: int = 16
    val_crop: int = 256
    synthetic_ratio: float = 2.0  # synthetic : real, the paper's Comb model
    blur_methods: dict[str, float] = field(default_factory=lambda: {"trajectory": 1.0})
    blur_max_len: float = 60.0  # trajectory path length in px at full exposure (the authors' 60)
    # camera noise and JPEG on synthetic blurred inputs (train and validation; see sensor.py); 0 = off, as the paper
    noise_read_max: float = 0.0  # read-noise sigma ~ U(0, max), 8-bit levels
    noise_shot_max: float = 0.0  # shot-noise gain ~ U(0, max): variance += gain * value
    jpeg_prob: float = 0.0
    jpeg_min_quality: int = 40
    # synthesis (realistic blur): speed and realism of synthetic pairs; all off by default (the paper's synthesis
    # bit for bit). See datasets.SynthOptions, shake.Realism, sensor.SensorParams.
    kernel_bank: int = 0  # N > 0: N trajectory PSFs built once from the seed, picked per sample (0 = a new path per sample)
    blur_min_len: float = 0.0  # > 0: path lengths log-uniform in [min, blur_max_len] px, full exposure (0 = authors: max_len x 1/10, 1/2, 1)
    pair_reuse: int = 1  # K > 1: K items (sub-crops, flips, transposes) cut from one synthesised patch; must divide batch
    linear_light: bool = False  # trajectory blur in linear light (inverse camera curve before, curve after)
    camera_curve: str = "gamma"  # gamma (2.2 power) | srgb: the curve for linear light and linear-light noise
    highlights: float = 0.0  # probability per image of boosting near-white pixels before the blur (needs linear_light)
    highlight_gain: float = 4.0  # boost ~ U(1.5, gain) in linear light; clipped after the blur
    noise_model: str = "srgb"  # srgb (noise_read_max/noise_shot_max) | poisson-gaussian (linear light, before the curve)
    noise_gain_min: float = 1e-4  # poisson-gaussian shot gain ~ log-uniform(min, max); read noise follows it
    noise_gain_max: float = 4e-3  # 1e-4 -> ~1, 1e-3 -> ~3, 4e-3 -> ~6 8-bit levels of noise
    shake_max_step: float = 0.0  # gopro branch: sub-frames interpolated to <= this many px apart (0 = 9 drawn: fast pans ghost)
    shake_pan_max: float = 500.0  # gopro branch: pan speed ~ U(0, max) px/s; the 37.5 ms exposure smears up to max / 26.7 px
    crop: int = 256
    halve: bool = False  # the authors halve 1280x720 GoPro frames to 640x360
    max_side: int = 0  # synthetic pairs: downscale photos whose long side is larger (0 = keep)
    flip: bool = True
    workers: int = 2
    # model
    spec: str = "deblurgan"
    dropout: float = -1.0  # ResBlock dropout while training; -1 = the spec's (0.5, the paper's)
    residual_init: float = 0.01  # scale of the last conv's initial weights: start near the identity map
    ndf: int = 64  # critic width (the paper's 64); a narrower critic trains much faster on CPU. 0 (old configs) = 64
    n_layers_d: int = 3  # critic depth (the paper's PatchGAN)
    # optimisation (paper)
    batch: int = 1
    steps: int = 1000  # generator steps
    critic_steps: int = 5
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_start: float = 0.5  # constant LR, then linear decay to 0 from this fraction of steps
    content: str = "perceptual"  # perceptual | l1 | l2
    content_weight: float = 100.0
    adv_weight: float = 1.0
    lambda_gp: float = 10.0
    gp: str = "per-sample"  # per-sample | authors
    vgg_weights: str | None = None
    perceptual_after_relu: bool = False  # authors: conv3_3 before ReLU
    perceptual_imagenet_norm: bool = True
    ema: float = 0.999  # 0 disables the EMA generator
    # recipe (beyond the paper): see docs/MODEL_CARD.md for the one the default model was trained with
    optimizer: str = "adam"  # adam (paper) | adamw
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    fft_weight: float = 0.0  # + fft_weight x L1 of the error's FFT, inside the content term
    clip_grad: float = 0.0  # > 0: clip the generator's gradient norm (a spike can push a norm-free net into the clamp)
    init: str | None = None  # generator weights to start from (fresh optimiser): ours, "default", or the authors' file
    amp: str = "auto"  # auto (bf16 autocast on CUDA where supported) | off
    # run
    out: str = "runs/deblur"
    device: str = "auto"
    seed: int = 0
    log_every: int = 10
    val_every: int = 250
    save_every: int = 500
    image_every: int = 500
    keep: int = 3
    max_rollbacks: int = 3
    curves: bool = False  # write OUT/curves.png at each checkpoint
    tensorboard: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        cfg = cls()
        for k, v in d.items():
            set_value(cfg, k, v)
        return cfg


# ------------------------------------------------------------------------------ allowed values
@dataclass(frozen=True)
class Rule:
    """The allowed values of one setting: ``ok(value)`` decides, ``text`` is what the error line shows."""

    ok: Callable[[Any], bool]
    text: str


def _finite(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> tuple[Callable[[Any], bool], str]:
    def ok(v: Any) -> bool:
        return (_finite(v) and (lo is None or (v > lo if lo_open else v >= lo))
                and (hi is None or (v < hi if hi_open else v <= hi)))

    if lo is not None and hi is not None:
        text = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        text = f"{'>' if lo_open else '>='} {lo}"
    else:
        text = f"{'<' if hi_open else '<='} {hi}"
    return ok, text


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
           also: tuple[float, ...] = (), note: str = "") -> Rule:
    """A finite number in an interval (NaN and inf are never allowed), or one of the special values ``also``."""
    inside, text = _interval(lo, hi, lo_open, hi_open)
    text = f"a finite number {text}" if hi is None or lo is None else f"a finite number in {text}"
    text = f"{' or '.join(f'{a:g}' for a in also)} {note}or {text}" if also else f"{text} {note}".strip()
    return Rule(lambda v: inside(v) or (_finite(v) and v in also), text)


def integer(lo: int, hi: int | None = None, note: str = "") -> Rule:
    inside, text = _interval(lo, hi, False, False)
    text = f"an integer {text}" if hi is None else f"an integer in {text}"
    return Rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and inside(v), text + (f" {note}" if note else ""))


def choice(options: tuple[str, ...] | Callable[[], list[str]]) -> Rule:
    names = options if isinstance(options, tuple) else None
    return Rule(lambda v: v in (names or options()), "one of " + ", ".join(names or options()))


def flag() -> Rule:
    return Rule(lambda v: isinstance(v, bool), "true or false")


def path(optional: bool = False) -> Rule:
    """A non-empty path: '' means the current folder to pathlib, which is never what was meant."""
    good = lambda v: isinstance(v, str) and bool(v.strip())  # noqa: E731
    return Rule((lambda v: v is None or good(v)) if optional else good, "null or a non-empty path" if optional else "a non-empty path")


def nonempty(what: str) -> Rule:
    return Rule(lambda v: isinstance(v, str) and bool(v.strip()), f"a non-empty {what}")


def paths() -> Rule:
    return Rule(lambda v: isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v), "a list of non-empty paths")


def weights(keys: tuple[str, ...]) -> Rule:
    """A mapping of ``keys`` to finite weights > 0, at least one entry (the datasets refuse a weight of 0)."""
    return Rule(lambda v: isinstance(v, dict) and bool(v) and all(k in keys and _finite(w) and w > 0 for k, w in v.items()),
                f"a non-empty mapping of {'/'.join(keys)} to finite weights > 0, e.g. {{{keys[0]}: 2, {keys[-1]}: 1}}")


def _specs() -> list[str]:
    from deblur.runtime.spec import list_specs

    return list_specs()


#: Every field's allowed values, declared once; ``check_ranges`` applies them and a test requires one per field.
#: Relations between fields (crop vs spec, blur_min_len <= blur_max_len, ...) are in ``validate``.
RULES: dict[str, Rule] = {
    "sharp": paths(), "pairs": paths(), "val_sharp": paths(), "val_pairs": paths(),
    "val_limit": integer(1), "val_crop": integer(1),
    "synthetic_ratio": number(0, lo_open=True),
    "blur_methods": weights(("trajectory", "gopro")),
    "blur_max_len": number(0, lo_open=True),
    "noise_read_max": number(0), "noise_shot_max": number(0),
    "jpeg_prob": number(0, 1), "jpeg_min_quality": integer(1, 95),
    "kernel_bank": integer(0, note="(0 = off)"),
    "blur_min_len": number(0, note="(0 = off)"),
    "pair_reuse": integer(1),
    "linear_light": flag(),
    "camera_curve": choice(CURVES),
    "highlights": number(0, 1), "highlight_gain": number(1.5),
    "noise_model": choice(NOISE_MODELS),
    "noise_gain_min": number(0, 1, lo_open=True), "noise_gain_max": number(0, 1, lo_open=True),
    "shake_max_step": number(0), "shake_pan_max": number(0),
    "crop": integer(1), "halve": flag(), "max_side": integer(0, note="(0 = keep)"), "flip": flag(), "workers": integer(0),
    "spec": choice(_specs),
    "dropout": number(0, 1, hi_open=True, also=(-1,), note="(the spec's) "),
    "residual_init": number(0),
    "ndf": integer(0, note="(0 = 64)"), "n_layers_d": integer(1),
    "batch": integer(1), "steps": integer(1), "critic_steps": integer(1),
    "lr": number(0, lo_open=True), "beta1": number(0, 1, hi_open=True), "beta2": number(0, 1, hi_open=True),
    "decay_start": number(0, 1, note="(a fraction of steps)"),
    "content": choice(("perceptual", "l1", "l2", "charbonnier")),
    "content_weight": number(0), "adv_weight": number(0), "lambda_gp": number(0),
    "gp": choice(("per-sample", "authors")),
    "vgg_weights": path(optional=True),
    "perceptual_after_relu": flag(), "perceptual_imagenet_norm": flag(),
    "ema": number(0, 1, hi_open=True, note="(0 = off)"),
    "optimizer": choice(("adam", "adamw")),
    "weight_decay": number(0), "fft_weight": number(0), "clip_grad": number(0, note="(0 = off)"),
    "init": path(optional=True),
    "amp": choice(("auto", "off")),
    "out": path(), "device": nonempty("device name: auto, cpu, cuda or cuda:N"),
    "seed": integer(0, 2**32 - 1),
    "log_every": integer(1), "val_every": integer(1), "save_every": integer(1), "image_every": integer(1),
    "keep": integer(1), "max_rollbacks": integer(0),
    "curves": flag(), "tensorboard": flag(),
}


def check_ranges(cfg: TrainConfig) -> None:
    """Each setting against its declared rule: one line naming the setting, the value and what is allowed."""
    for f in dataclasses.fields(cfg):
        rule, value = RULES[f.name], getattr(cfg, f.name)
        if not rule.ok(value):
            raise InputError(f"bad value {value!r} for training setting {f.name!r} (allowed: {rule.text})",
                             hint=f"fix it in the config file or with --set {f.name}=...")


def set_value(cfg: TrainConfig, key: str, value: Any) -> None:
    """Set one field with type coercion; unknown keys get a suggestion. Ranges are checked by ``check_ranges``."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    if key not in fields:  # (a YAML key may be a number or null)
        near = difflib.get_close_matches(str(key), fields, n=1)
        raise InputError(f"unknown training setting {key!r}", hint=f"did you mean {near[0]!r}?" if near else "see deblur-train --help")
    current = getattr(cfg, key)
    try:
        if isinstance(current, list):
            if isinstance(value, dict):
                raise TypeError("expected a list of paths")
            value = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise TypeError("expected a mapping like {trajectory: 2, gopro: 1}")
            value = {str(k): _number(v) for k, v in value.items()}
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
        elif isinstance(current, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError("expected an integer")
            value = value if isinstance(value, int) else int(float(value))
        elif isinstance(current, float):
            value = _number(value)
        elif isinstance(value, list | tuple | dict):
            raise TypeError("expected a single value")
        elif value is not None:
            value = str(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise InputError(f"bad value {value!r} for training setting {key!r} ({e}; allowed: {RULES[key].text})",
                         hint=f"fix it in the config file or with --set {key}=...") from None
    setattr(cfg, key, value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number, not true/false")
    return float(value)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; values are YAML scalars or flow collections (safe_load)."""
    import yaml

    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"bad --set {item!r}", hint="write --set key=value, e.g. --set lr=2e-4")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError("config file not found", path, hint="pass a YAML file written by deblur-train (OUT/config.yaml)")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as e:
        raise InputError(f"is not UTF-8 text (byte {e.start})", path, hint="save it as UTF-8") from None
    except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: a date like 2001-02-30
        first = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"is not valid YAML ({first})", path, hint="fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError("must hold a mapping of settings", path, hint="write one 'key: value' per line")
    return data


def validate(cfg: TrainConfig) -> None:
    """Every field's range (``RULES``), then the relations between fields and the paths, before any work starts."""
    from deblur.runtime.device import parse_device
    from deblur.runtime.spec import get_spec

    check_ranges(cfg)
    parse_device(cfg.device, allow_auto=True)  # tpu, or cuda without a GPU: one line now, not a torch error later
    if not cfg.sharp and not cfg.pairs:
        raise InputError("no training data", hint="pass --sharp DIR (synthetic pairs) and/or --pairs DIR (blur/ and sharp/ or GoPro layout)")
    if len(cfg.pairs) > 1 or len(cfg.val_pairs) > 1:
        raise InputError("one --pairs (and one --val-pairs) folder per run", hint="put the sequences under one GoPro-layout folder")
    for folder in [*cfg.sharp, *cfg.pairs, *cfg.val_sharp, *cfg.val_pairs]:
        try:
            found = Path(folder).is_dir()
        except OSError as e:  # a name too long for the file system, ...
            raise InputError(f"data folder cannot be used ({e.strerror})", folder, hint="check the path") from None
        if not found:
            raise InputError("data folder not found", folder, hint="check the path")
    if cfg.max_side and cfg.max_side < cfg.crop:
        raise InputError(f"max_side ({cfg.max_side}) must be 0 or at least the crop ({cfg.crop})")
    multiple = get_spec(cfg.spec).pad_multiple
    for name in ("crop", "val_crop"):
        if getattr(cfg, name) % multiple:
            raise InputError(f"{name} must be a multiple of {multiple} (spec {cfg.spec}'s pad multiple), got {getattr(cfg, name)}")
    if cfg.content_weight == 0 and cfg.adv_weight == 0:
        raise InputError("content_weight and adv_weight are both 0: the generator would learn nothing",
                         hint="set --set content_weight=100 (the paper's) or adv_weight=1")
    if cfg.blur_min_len > cfg.blur_max_len:
        raise InputError(f"blur_min_len must be 0 (off) or in (0, blur_max_len = {cfg.blur_max_len}], got {cfg.blur_min_len}")
    if cfg.batch % cfg.pair_reuse:
        raise InputError(f"pair_reuse must divide batch ({cfg.batch}), got {cfg.pair_reuse}")
    if cfg.highlights > 0 and not cfg.linear_light:
        raise InputError("highlights need linear-light blur", hint="add --set linear_light=true")
    if cfg.noise_gain_min > cfg.noise_gain_max:
        raise InputError(f"need noise_gain_min <= noise_gain_max, got {cfg.noise_gain_min}, {cfg.noise_gain_max}")
    if cfg.noise_model == "poisson-gaussian" and (cfg.noise_read_max or cfg.noise_shot_max):
        raise InputError("noise_model=poisson-gaussian replaces noise_read_max/noise_shot_max", hint="set both to 0")
