"""A plain U-Net generator for the CPU budget (``ModelSpec(family="unet")``).

The "plain U-Net" of the research note ``edge-model.md`` (its 10-minute probe): no normalisation
anywhere (no global statistics, so tiled inference matches whole-frame inference far more closely
than InstanceNorm's, and training crops see what a full frame sees), most depth at 1/8-1/16
resolution for a receptive field of hundreds of pixels, and only ops ONNX Runtime's CPU provider
runs fast (dense convs, Add, Relu, a 2x2 ConvTranspose, one final DepthToSpace).

    x -> PixelUnshuffle(stem) -> Conv3x3(3*stem^2 -> widths[0])                    level 0 (1/stem)
         (computed as one Conv(3 -> widths[0], 3stem x 3stem, stride stem, padding stem): the same map)
      -> enc_blocks[0] x Block -> Conv2x2 s2 (widths[0] -> widths[1])              level 1 (1/2stem)
      ...                                                                          deepest level
      -> up (ConvTranspose 2x2 s2, or 1x1 conv + PixelShuffle(2)) + skip -> dec_blocks[i] x Block
      -> Conv3x3(widths[0] -> 3*stem^2), weights x0.01 at init -> PixelShuffle(stem)
    out = clamp(x + that, -1, 1)

``Block(x) = x + conv3(relu(conv3(x)))``. Zero padding only, so any H and W that are multiples of
``spec.pad_multiple`` run; smaller inputs are replicate-padded up to ``spec.min_size`` and cropped,
as ``Generator`` does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deblur.runtime.errors import InputError
from deblur.runtime.spec import ModelSpec
from deblur.train.networks import checked_forward  # networks imports this module lazily: no cycle

HEAD_INIT_SCALE = 0.01  # the head starts 100x smaller: the residual starts near 0 (output ~ input)


class ConvBlock(nn.Module):
    """``x + conv3(relu(conv3(x)))``, no normalisation."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


def _blocks(dim: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(ConvBlock(dim) for _ in range(n)))


def _upsample(c_in: int, c_out: int, how: str) -> nn.Module:
    if how == "pixelshuffle":
        return nn.Sequential(nn.Conv2d(c_in, 4 * c_out, 1), nn.PixelShuffle(2))
    if how == "convtranspose":
        return nn.ConvTranspose2d(c_in, c_out, 2, stride=2)
    raise InputError(f"unknown upsample {how!r}")  # the spec validates this; belt and braces


class UNetGenerator(nn.Module):
    """U-Net generator; input and output RGB NCHW in [-1, 1]; ``out = clamp(x + G(x), -1, 1)``.

    The same public surface as ``deblur.train.networks.Generator``: ``.spec``, ``forward`` (shape
    check and tiny-input padding), ``_forward`` (the pure computation the ONNX export traces).
    """

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if spec.family != "unet":
            raise InputError(f"UNetGenerator needs a spec of family 'unet', {spec.name!r} is {spec.family!r}")
        self.spec = spec
        w, s = spec.widths, spec.stem
        # PixelUnshuffle(s) then a 3x3 conv (padding 1) is exactly one (3s x 3s, stride s, padding s)
        # conv on the frame (``stem_from_unshuffle`` maps the weights); ONNX Runtime runs it ~4 ms
        # faster at 360x640 (no full-resolution 6-D Transpose).
        self.stem = nn.Conv2d(3, w[0], 3 * s, stride=s, padding=s)
        self.encoders = nn.ModuleList(_blocks(w[i], spec.enc_blocks[i]) for i in range(len(w)))
        self.downs = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 2, stride=2) for i in range(len(w) - 1))
        self.ups = nn.ModuleList(_upsample(w[i + 1], w[i], spec.upsample) for i in range(len(w) - 1))
        self.decoders = nn.ModuleList(_blocks(w[i], spec.dec_blocks[i]) for i in range(len(w) - 1))
        self.head = nn.Sequential(nn.Conv2d(w[0], 3 * s * s, 3, padding=1), nn.PixelShuffle(s) if s > 1 else nn.Identity())
        with torch.no_grad():
            self.head[0].weight.mul_(HEAD_INIT_SCALE)
            self.head[0].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checked_forward(self, x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        skips = []
        for i, enc in enumerate(self.encoders):
            y = enc(y)
            if i < len(self.downs):
                skips.append(y)
                y = self.downs[i](y)
        for i in reversed(range(len(self.ups))):
            y = self.decoders[i](self.ups[i](y) + skips[i])
        y = self.head(y)
        if self.spec.learn_residual:
            y = x + y
        return torch.clamp(y, -1.0, 1.0)


def stem_from_unshuffle(weight: torch.Tensor, stem: int) -> torch.Tensor:
    """The stem conv's weight ``[C, 3, 3s, 3s]`` equal to ``PixelUnshuffle(s)`` + a 3x3 conv of weight ``[C, 3 s^2, 3, 3]``.

    Unshuffled channel ``c*s^2 + a*s + b`` at half-res tap ``(u, v)`` reads frame pixel
    ``(s*(i+u-1) + a, s*(j+v-1) + b)``: tap ``(s*u + a, s*v + b)`` of the strided conv.
    """
    c, s = weight.shape[0], stem
    return weight.reshape(c, 3, s, s, 3, 3).permute(0, 1, 4, 2, 5, 3).reshape(c, 3, 3 * s, 3 * s)
