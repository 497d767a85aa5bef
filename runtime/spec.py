"""``ModelSpec`` and its registry: the generator and its I/O contract, travelling with every artifact.

Torch-free, so the runtime can read a spec out of ONNX metadata or an engine manifest on a
machine without torch. Specs are plain data: ``to_dict``/``from_dict`` round-trip through JSON.
Everything a runtime derives from a model (pad multiple, minimum size, colour order, value range)
is derived here and nowhere else. Critic settings are training settings (``TrainConfig``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from deblur.runtime.errors import InputError

SPEC_FORMAT_VERSION = 2  # the newest spec format this package reads: 1 = ResNet only, 2 = adds ``family``
FAMILIES = ("resnet", "unet")
UPSAMPLES = ("convtranspose", "pixelshuffle")
_UNET_FIELDS = ("widths", "enc_blocks", "dec_blocks", "stem", "upsample")
MAX_WIDTH, MAX_BLOCKS, MAX_LEVELS = 4096, 256, 8  # far beyond any real generator; keeps a file's numbers from hanging us


@dataclass(frozen=True)
class ModelSpec:
    """A generator and its I/O contract. Two families:

    * ``"resnet"`` (default; every file written before ``family`` existed): the DeblurGAN
      generator (ResNet encoder/decoder, InstanceNorm) set by ``ngf``, ``n_blocks``,
      ``n_downsampling``, ``dropout``. ``dropout`` is the training-time rate inside each ResBlock;
      inference always runs with dropout off (the authors kept it on at test time; an engine must be
      deterministic and checkable).
    * ``"unet"``: a plain U-Net without normalisation (``deblur.train.unet``): a
      ``PixelUnshuffle(stem)`` stem, one level per entry of ``widths`` (level ``i`` at
      ``1/(stem*2**i)`` resolution), ``enc_blocks[i]`` residual conv blocks per level on the way
      down, ``dec_blocks[i]`` per level on the way up (one entry per level above the deepest, so
      ``len(widths) - 1``), upsampling by ``upsample``. The ResNet fields are ignored.

    ``norm`` ``""`` means the family's own: ``"instance"`` (resnet) or ``"none"`` (unet).
    ``format_version`` is set from the family (1 for resnet, so those files read exactly as before;
    2 for unet, so an older deblur-edge refuses a U-Net file instead of misreading it as a ResNet).
    """

    name: str
    ngf: int = 64
    n_blocks: int = 9
    n_downsampling: int = 2
    norm: str = ""
    dropout: float = 0.5
    learn_residual: bool = True
    input_range: tuple[float, float] = (-1.0, 1.0)
    color_order: str = "RGB"
    description: str = ""
    format_version: int = field(default=1)
    family: str = "resnet"
    widths: tuple[int, ...] = ()
    enc_blocks: tuple[int, ...] = ()
    dec_blocks: tuple[int, ...] = ()
    stem: int = 1
    upsample: str = "convtranspose"  # measured faster in ONNX Runtime on CPU than 1x1 conv + PixelShuffle

    def __post_init__(self) -> None:
        self._check_values()
        if self.family not in FAMILIES:
            raise self._invalid(f"family must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        for key in ("widths", "enc_blocks", "dec_blocks"):  # lists (JSON, YAML) become tuples
            value = getattr(self, key)
            if not isinstance(value, list | tuple) or not all(is_int(v) for v in value) or len(value) > MAX_LEVELS:
                raise self._invalid(f"{key} must be a list of integers (at most {MAX_LEVELS}), got {value!r}")
            object.__setattr__(self, key, tuple(value))
        if self.family == "resnet":
            self._check_resnet()
        else:
            self._check_unet()
        object.__setattr__(self, "format_version", 1 if self.family == "resnet" else 2)

    def _invalid(self, why: str) -> InputError:
        return InputError(f"invalid model spec {self.name!r}: {why}")

    def _check_values(self) -> None:
        """Types and bounds of what a file can say (JSON, YAML, safetensors metadata): a bad value is
        one InputError here, not a TypeError later or a hang (``2**n_downsampling``, a 10**9-block
        generator built to check a checkpoint). Input range and colour order: the pre/post code
        feeds RGB in [-1, 1] only, so a spec asking for anything else is refused, not ignored."""
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"invalid model spec: name must be a non-empty string, got {self.name!r}")
        for key, hi in (("ngf", MAX_WIDTH), ("n_blocks", MAX_BLOCKS), ("n_downsampling", MAX_LEVELS), ("stem", 16)):
            value = getattr(self, key)
            if not is_int(value) or not -1 < value <= hi:
                raise self._invalid(f"{key} must be an integer in [0, {hi}], got {value!r}")
        for key in ("norm", "color_order", "description", "family", "upsample"):
            if not isinstance(getattr(self, key), str):
                raise self._invalid(f"{key} must be a string, got {getattr(self, key)!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise self._invalid(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.learn_residual, bool):
            raise self._invalid(f"learn_residual must be true or false, got {self.learn_residual!r}")
        r = self.input_range
        if isinstance(r, list | tuple) and len(r) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in r):
            object.__setattr__(self, "input_range", (float(r[0]), float(r[1])))
        if self.input_range != (-1.0, 1.0):
            raise self._invalid(f"input_range must be [-1, 1] (the range this deblur-edge feeds), got {self.input_range!r}")
        if self.color_order != "RGB":
            raise self._invalid(f"color_order must be 'RGB' (the order this deblur-edge feeds), got {self.color_order!r}")

    def _check_resnet(self) -> None:
        if self.ngf < 1 or self.n_blocks < 0 or self.n_downsampling < 0:
            raise self._invalid("ngf, n_blocks and n_downsampling must be positive")
        if self.norm not in ("", "instance"):
            raise self._invalid(f"family 'resnet' supports only norm='instance', got {self.norm!r}")
        object.__setattr__(self, "norm", "instance")
        extra = [k for k in _UNET_FIELDS if getattr(self, k) != _DEFAULTS[k]]
        if extra:
            raise self._invalid(f"{', '.join(extra)} apply to family 'unet' only (this spec is 'resnet')")

    def _check_unet(self) -> None:
        levels = len(self.widths)
        if levels < 1 or any(not 1 <= w <= MAX_WIDTH for w in self.widths):
            raise self._invalid(f"unet widths must be one or more channel counts in [1, {MAX_WIDTH}], got {list(self.widths)}")
        if any(b > MAX_BLOCKS for b in self.enc_blocks + self.dec_blocks):
            raise self._invalid(f"unet enc_blocks and dec_blocks must be at most {MAX_BLOCKS} per level")
        if len(self.enc_blocks) != levels or any(b < 0 for b in self.enc_blocks):
            raise self._invalid(f"unet enc_blocks needs {levels} counts >= 0 (one per level), got {list(self.enc_blocks)}")
        if len(self.dec_blocks) != levels - 1 or any(b < 0 for b in self.dec_blocks):
            raise self._invalid(f"unet dec_blocks needs {levels - 1} counts >= 0 (one per level above the deepest), "
                      f"got {list(self.dec_blocks)}")
        if self.stem < 1:
            raise self._invalid(f"unet stem (pixel-unshuffle factor) must be >= 1, got {self.stem}")
        if self.upsample not in UPSAMPLES:
            raise self._invalid(f"unet upsample must be one of {', '.join(UPSAMPLES)}, got {self.upsample!r}")
        if self.norm not in ("", "none"):
            raise self._invalid(f"family 'unet' has no normalisation: norm must be 'none', got {self.norm!r}")
        object.__setattr__(self, "norm", "none")

    @property
    def levels(self) -> int:
        """Resolution levels: ``n_downsampling + 1`` (resnet) or ``len(widths)`` (unet)."""
        return self.n_downsampling + 1 if self.family == "resnet" else len(self.widths)

    @property
    def pad_multiple(self) -> int:
        """H and W must be multiples of this (the stem factor, then one factor 2 per stride-2 stage)."""
        if self.family == "unet":
            return self.stem * 2 ** (len(self.widths) - 1)
        return 2**self.n_downsampling

    @property
    def min_size(self) -> int:
        """Smallest H or W the network takes. ResNet: the bottleneck must be >= 2 for reflect
        padding. U-Net: one pixel at the deepest level (zero padding only)."""
        if self.family == "unet":
            return self.pad_multiple
        return 2 * self.pad_multiple

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_range"] = list(self.input_range)
        if self.family == "resnet":  # exactly the keys a format-1 file had, plus the family
            for k in _UNET_FIELDS:
                del d[k]
        else:
            for k in ("widths", "enc_blocks", "dec_blocks"):
                d[k] = list(d[k])
        d["pad_multiple"] = self.pad_multiple
        d["min_size"] = self.min_size
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        if not isinstance(d, dict) or "name" not in d:
            raise InputError("model spec must be a mapping with at least a 'name'")
        version = d.get("format_version", 1)
        if not is_int(version):
            raise InputError(f"model spec format_version must be an integer, got {version!r}")
        if version > SPEC_FORMAT_VERSION:
            raise InputError(
                f"model spec format {version} is newer than this deblur-edge understands "
                f"({SPEC_FORMAT_VERSION})",
                hint="upgrade deblur-edge",
            )
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}  # derived keys (pad_multiple) and old critic keys drop
        if "input_range" in kwargs:
            r = kwargs["input_range"]
            if not isinstance(r, list | tuple) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in r):
                raise InputError(f"model spec input_range must be two numbers, got {r!r}")
            kwargs["input_range"] = tuple(float(v) for v in r)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, s: str) -> ModelSpec:
        try:
            d = json.loads(s)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, bad surrogates, nesting deeper than Python's stack
            raise InputError(f"model spec is not valid JSON ({type(e).__name__})") from None
        return cls.from_dict(d)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelSpec)}


def is_int(v: Any) -> bool:
    """An integer from a file (JSON, YAML, metadata): ``True`` is not 1 here."""
    return isinstance(v, int) and not isinstance(v, bool)

_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


register(ModelSpec("deblurgan", ngf=64, n_blocks=9, description="the paper's generator, 11.38 M parameters"))
register(ModelSpec("deblurgan-lite", ngf=32, n_blocks=6, description="1/4 width, 6 blocks; Jetson Orin class"))
register(ModelSpec("deblurgan-nano", ngf=16, n_blocks=4, description="1/16 width, 4 blocks; small Jetsons, fast CPUs"))
register(ModelSpec("deblurgan-pico", ngf=8, n_blocks=3, description="1/64 width, 3 blocks; real time on a 2-core CPU"))
register(ModelSpec("deblurgan-pico-d3", ngf=8, n_blocks=4, n_downsampling=3,
                   description="pico width, three stride-2 stages (64-channel 1/8-resolution blocks): about twice "
                               "pico's receptive field for long blur at pico speed; pad multiple 8"))

# U-Nets without normalisation, designed to the 2-core CPU budget (research note edge-model.md; timed
# with deblur-bench, ONNX Runtime at 360x640, against deblurgan-pico in the same run). Levels at 1/2,
# 1/4, 1/8, 1/16; most depth at 1/16 (receptive field of hundreds of px, for long shake blur); no
# blocks at 1/2 except one decoder block in -m (a 1/2-resolution block costs ~10 ms on 2 cores).
register(ModelSpec("deblurgan-unet-xs", family="unet", widths=(16, 32, 64, 128), enc_blocks=(0, 1, 2, 3),
                   dec_blocks=(0, 0, 1), stem=2, upsample="convtranspose",
                   description="plain U-Net of the 10-minute probe (1.22 M params, 2.3 GMAC at 360x640); "
                               "0.7-0.94x pico's ONNX Runtime time"))
register(ModelSpec("deblurgan-unet-s", family="unet", widths=(16, 32, 64, 128), enc_blocks=(0, 1, 2, 4),
                   dec_blocks=(0, 1, 1), stem=2, upsample="convtranspose",
                   description="plain U-Net, 4 blocks at 1/16 (1.53 M params, 2.8 GMAC at 360x640); 0.72-0.97x "
                               "pico's ONNX Runtime time; the bundled default"))
register(ModelSpec("deblurgan-unet-m", family="unet", widths=(16, 32, 64, 128), enc_blocks=(0, 1, 2, 6),
                   dec_blocks=(1, 1, 2), stem=2, upsample="convtranspose",
                   description="plain U-Net, 6 blocks at 1/16 and a 1/2-resolution decoder block (2.20 M params, "
                               "3.9 GMAC at 360x640); 1.1-1.46x pico's ONNX Runtime time"))


def list_specs() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown model spec {name!r}", hint=f"choose one of {', '.join(list_specs())}") from None
