"""The paper's generator and critic, built exactly as the authors' 2018 code builds them.

``build_generator(spec)`` builds the generator of any spec family: this ResNet ``Generator``
(``family="resnet"``) or ``deblur.train.unet.UNetGenerator`` (``family="unet"``). ``Generator(spec)``
given a U-Net spec returns a ``UNetGenerator`` too (so older call sites keep working), but new
code should call ``build_generator``.

Module indices match the authors' ``nn.Sequential`` named ``model``, so their ``latest_net_G.pth``
keys (``model.1.weight``, ``model.10.conv_block.6.weight``, ...) load without a key map. Each
ResBlock always has a slot at index 4 (Dropout, or Identity when the rate is 0), so the second conv
stays at ``conv_block.6`` whatever the dropout setting.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deblur.runtime.errors import InputError, ShapeError
from deblur.runtime.spec import ModelSpec


def _norm(channels: int) -> nn.Module:
    # affine=False, per-image statistics always: never running stats (authors' anchor A, item 2).
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """[ReflPad1, Conv3, IN, ReLU, Dropout, ReflPad1, Conv3, IN] plus the identity."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            _norm(dim),
            nn.ReLU(True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class Generator(nn.Module):
    """ResNet generator; input and output are RGB NCHW in [-1, 1]; ``out = clamp(x + G(x), -1, 1)``.

    H and W must be multiples of ``spec.pad_multiple``. Inputs smaller than ``spec.min_size`` are
    replicate-padded up to it and cropped back, so any multiple of 4 runs (the bottleneck's
    reflect padding needs at least 2 pixels).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if spec.family != "resnet":
            raise InputError(f"Generator is the ResNet family; spec {spec.name!r} is {spec.family!r}: use build_generator")
        self.spec = spec
        ngf, nd = spec.ngf, spec.n_downsampling
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)]
        for i in range(nd):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=True), _norm(2 * c), nn.ReLU(True)]
        c = ngf * 2**nd
        layers += [ResnetBlock(c, spec.dropout) for _ in range(spec.n_blocks)]
        for i in range(nd):
            c = ngf * 2 ** (nd - i)
            layers += [
                nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                _norm(c // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checked_forward(self, x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        if self.spec.learn_residual:
            y = x + y
        return torch.clamp(y, -1.0, 1.0)


def build_generator(spec: ModelSpec) -> nn.Module:
    """The generator of ``spec``'s family, freshly initialised: ``Generator`` or ``UNetGenerator``."""
    if spec.family == "unet":
        from deblur.train.unet import UNetGenerator

        return UNetGenerator(spec)
    if spec.family == "resnet":
        return Generator(spec)
    raise InputError(f"model spec {spec.name!r}: no generator for family {spec.family!r}")


def checked_forward(g: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Every generator family's eager ``forward``: the shape check, and inputs below ``spec.min_size``
    replicate-padded up to it and cropped back; tracing and compiling see ``_forward`` alone."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        return g._forward(x)
    check_input(x, g.spec)
    h, w = x.shape[-2:]
    m = g.spec.min_size
    if h >= m and w >= m:
        return g._forward(x)
    padded = F.pad(x, (0, max(0, m - w), 0, max(0, m - h)), mode="replicate")
    return g._forward(padded)[..., :h, :w]


def check_input(x: torch.Tensor, spec: ModelSpec) -> None:
    """Shape check with a message that says how to fix it (kornia style)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ShapeError(f"generator input must be N x 3 x H x W RGB, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    k = spec.pad_multiple
    if h % k or w % k:
        raise ShapeError(
            f"generator input H and W must be multiples of {k}, got {h}x{w}",
            hint=f"pad to {-(-h // k) * k}x{-(-w // k) * k} (reflect) and crop the output, as deblur.runtime does",
        )


class Critic(nn.Module):
    """PatchGAN critic (n_layers 3, kernel 4, padding 2, IN, LeakyReLU 0.2, no sigmoid), image only."""

    def __init__(self, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        kw, pw = 4, 2
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, kw, stride=2, padding=pw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kw, stride=2, padding=pw, bias=True),
                _norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=pw, bias=True),
            _norm(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=pw),
        ]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """N(0, 0.02) conv weights and zero biases, as the authors' ``weights_init``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
