"""``TrainConfig``: every training setting in one dataclass, from YAML, ``--set key=value`` and flags.

The resolved config is written beside the checkpoints and stored in each of them as a plain dict,
so a run can always be reproduced and resumed. Values from ``--set`` are parsed as YAML scalars
(safe_load): never ``eval``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deblur.runtime.errors import InputError


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


_CHOICES = {"content": ("perceptual", "l1", "l2", "charbonnier"), "gp": ("per-sample", "authors"), "amp": ("auto", "off"),
            "optimizer": ("adam", "adamw")}


def set_value(cfg: TrainConfig, key: str, value: Any) -> None:
    """Set one field with type coercion; unknown keys get a suggestion."""
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    if key not in fields:
        near = difflib.get_close_matches(key, fields, n=1)
        raise InputError(f"unknown training setting {key!r}", hint=f"did you mean {near[0]!r}?" if near else "see deblur-train --help")
    current = getattr(cfg, key)
    try:
        if isinstance(current, list):
            value = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
        elif isinstance(current, dict):
            if not isinstance(value, dict):
                raise TypeError("expected a mapping like {trajectory: 2, gopro: 1}")
            value = {str(k): float(v) for k, v in value.items()}
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
        elif isinstance(current, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise TypeError("expected an integer")
            value = int(value)
        elif isinstance(current, float):
            value = float(value)
        elif value is not None:
            value = str(value)
    except (TypeError, ValueError) as e:
        raise InputError(f"bad value {value!r} for training setting {key!r}", hint=str(e)) from None
    if key in _CHOICES and value not in _CHOICES[key]:
        raise InputError(f"bad value {value!r} for {key!r}", hint=f"choose one of {', '.join(_CHOICES[key])}")
    setattr(cfg, key, value)


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
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"is not valid YAML ({str(e).splitlines()[0]})", path, hint="fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError("must hold a mapping of settings", path, hint="write one 'key: value' per line")
    return data


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks, before any work starts."""
    from deblur.runtime.device import parse_device
    from deblur.runtime.spec import get_spec

    get_spec(cfg.spec)
    parse_device(cfg.device, allow_auto=True)  # tpu, or cuda without a GPU: one line now, not a torch error later
    if not cfg.sharp and not cfg.pairs:
        raise InputError("no training data", hint="pass --sharp DIR (synthetic pairs) and/or --pairs DIR (blur/ and sharp/ or GoPro layout)")
    if len(cfg.pairs) > 1 or len(cfg.val_pairs) > 1:
        raise InputError("one --pairs (and one --val-pairs) folder per run", hint="put the sequences under one GoPro-layout folder")
    for folder in [*cfg.sharp, *cfg.pairs, *cfg.val_sharp, *cfg.val_pairs]:
        if not Path(folder).is_dir():
            raise InputError("data folder not found", folder, hint="check the path")
    for name in ("steps", "batch", "crop", "critic_steps", "keep", "log_every", "val_every", "save_every", "image_every"):
        if getattr(cfg, name) < 1:
            raise InputError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.max_side and cfg.max_side < cfg.crop:
        raise InputError(f"max_side ({cfg.max_side}) must be 0 or at least the crop ({cfg.crop})")
    multiple = get_spec(cfg.spec).pad_multiple
    for name in ("crop", "val_crop"):
        if getattr(cfg, name) % multiple:
            raise InputError(f"{name} must be a multiple of {multiple} (spec {cfg.spec}'s pad multiple), got {getattr(cfg, name)}")
    from deblur.train.sensor import SensorParams

    try:
        SensorParams(cfg.noise_read_max, cfg.noise_shot_max, cfg.jpeg_prob, cfg.jpeg_min_quality)
    except ValueError as e:
        raise InputError(str(e), hint="noise_*_max >= 0, jpeg_prob in [0, 1], jpeg_min_quality in [1, 95]") from None
    if not 0 <= cfg.ema < 1:
        raise InputError(f"ema must be in [0, 1), got {cfg.ema}")
    for name in ("weight_decay", "fft_weight", "adv_weight", "content_weight", "clip_grad"):
        if not (getattr(cfg, name) >= 0 and math.isfinite(getattr(cfg, name))):
            raise InputError(f"{name} must be a finite number >= 0, got {getattr(cfg, name)}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise InputError(f"lr must be a finite number > 0, got {cfg.lr}")
    # synthesis (realistic blur)
    from deblur.train.psf import CURVES
    from deblur.train.sensor import NOISE_MODELS

    if cfg.kernel_bank < 0:
        raise InputError(f"kernel_bank must be 0 (off) or a bank size, got {cfg.kernel_bank}")
    if not 0 <= cfg.blur_min_len <= cfg.blur_max_len:
        raise InputError(f"blur_min_len must be 0 (off) or in (0, blur_max_len = {cfg.blur_max_len}], got {cfg.blur_min_len}")
    if cfg.pair_reuse < 1 or cfg.batch % cfg.pair_reuse:
        raise InputError(f"pair_reuse must be at least 1 and divide batch ({cfg.batch}), got {cfg.pair_reuse}")
    if cfg.camera_curve not in CURVES:
        raise InputError(f"bad camera_curve {cfg.camera_curve!r}", hint=f"choose one of {', '.join(CURVES)}")
    if not 0 <= cfg.highlights <= 1 or cfg.highlight_gain < 1.5:
        raise InputError(f"need highlights in [0, 1] and highlight_gain >= 1.5, got {cfg.highlights}, {cfg.highlight_gain}")
    if cfg.highlights > 0 and not cfg.linear_light:
        raise InputError("highlights need linear-light blur", hint="add --set linear_light=true")
    if cfg.noise_model not in NOISE_MODELS:
        raise InputError(f"bad noise_model {cfg.noise_model!r}", hint=f"choose one of {', '.join(NOISE_MODELS)}")
    if not 0 < cfg.noise_gain_min <= cfg.noise_gain_max <= 1:
        raise InputError(f"need 0 < noise_gain_min <= noise_gain_max <= 1, got {cfg.noise_gain_min}, {cfg.noise_gain_max}")
    if cfg.noise_model == "poisson-gaussian" and (cfg.noise_read_max or cfg.noise_shot_max):
        raise InputError("noise_model=poisson-gaussian replaces noise_read_max/noise_shot_max", hint="set both to 0")
    if cfg.shake_max_step < 0 or cfg.shake_pan_max < 0:
        raise InputError(f"shake_max_step and shake_pan_max must be >= 0, got {cfg.shake_max_step}, {cfg.shake_pan_max}")
