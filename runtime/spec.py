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

SPEC_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    """A DeblurGAN generator (ResNet encoder/decoder) and its I/O contract.

    ``dropout`` is the training-time rate inside each ResBlock; inference always runs with dropout
    off (the authors kept it on at test time; an engine must be deterministic and checkable).
    """

    name: str
    ngf: int = 64
    n_blocks: int = 9
    n_downsampling: int = 2
    norm: str = "instance"
    dropout: float = 0.5
    learn_residual: bool = True
    input_range: tuple[float, float] = (-1.0, 1.0)
    color_order: str = "RGB"
    description: str = ""
    format_version: int = field(default=SPEC_FORMAT_VERSION)

    def __post_init__(self) -> None:
        if self.ngf < 1 or self.n_blocks < 0 or self.n_downsampling < 0:
            raise InputError(f"invalid model spec {self.name!r}: ngf, n_blocks and n_downsampling must be positive")
        if self.norm != "instance":
            raise InputError(f"model spec {self.name!r}: only norm='instance' is supported, got {self.norm!r}")

    @property
    def pad_multiple(self) -> int:
        """H and W must be multiples of this (one factor 2 per stride-2 stage)."""
        return 2**self.n_downsampling

    @property
    def min_size(self) -> int:
        """Smallest H or W the network takes: the bottleneck must be >= 2 for reflect padding."""
        return 2 * self.pad_multiple

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_range"] = list(self.input_range)
        d["pad_multiple"] = self.pad_multiple
        d["min_size"] = self.min_size
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        if not isinstance(d, dict) or "name" not in d:
            raise InputError("model spec must be a mapping with at least a 'name'")
        version = int(d.get("format_version", SPEC_FORMAT_VERSION))
        if version > SPEC_FORMAT_VERSION:
            raise InputError(
                f"model spec format {version} is newer than this deblur-edge understands "
                f"({SPEC_FORMAT_VERSION})",
                hint="upgrade deblur-edge",
            )
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}  # derived keys (pad_multiple) and old critic keys drop
        if "input_range" in kwargs:
            kwargs["input_range"] = tuple(float(v) for v in kwargs["input_range"])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, s: str) -> ModelSpec:
        return cls.from_dict(json.loads(s))


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


def list_specs() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown model spec {name!r}", hint=f"choose one of {', '.join(list_specs())}") from None
