"""Multiply-accumulates of a generator forward, from its ``ModelSpec`` alone (no torch, no weights).

The work the model defines (convolutions and transposed convolutions; transposed ones counted per
input pixel, as ptflops does), not what a backend's rewritten graph happens to execute: deblur-bench
divides it by each backend's time, so the achieved GMAC/s of every backend are comparable.
Checked against hooks on the real torch modules in tests/train/test_networks.py and test_unet.py.
"""
from __future__ import annotations

from deblur.runtime.spec import ModelSpec


def macs(spec: ModelSpec, height: int, width: int) -> int:
    """Multiply-accumulates of one generator forward at H x W (convs and transposed convs).

    U-Net specs count the frame the runtime runs: H and W rounded up to ``pad_multiple``."""
    if spec.family == "unet":
        return unet_macs(spec, height, width)
    ngf, nd = spec.ngf, spec.n_downsampling
    hw = height * width
    total = hw * 3 * ngf * 49
    for i in range(nd):
        c = ngf * 2**i
        total += (hw // 4 ** (i + 1)) * c * 2 * c * 9
    c = ngf * 2**nd
    total += spec.n_blocks * 2 * (hw // 4**nd) * c * c * 9
    for i in range(nd):
        c = ngf * 2 ** (nd - i)
        total += (hw // 4 ** (nd - i)) * c * (c // 2) * 9  # per input pixel, as ptflops counts ConvT
    total += hw * ngf * 3 * 49
    return total


def unet_macs(spec: ModelSpec, height: int, width: int) -> int:
    """Multiply-accumulates of one forward at H x W (rounded up to ``pad_multiple``, as the runtime pads)."""
    m = spec.pad_multiple
    height, width = max(-(-height // m) * m, spec.min_size), max(-(-width // m) * m, spec.min_size)
    w, s = spec.widths, spec.stem
    hw = [(height // (s * 2**i)) * (width // (s * 2**i)) for i in range(len(w))]
    total = hw[0] * 3 * s * s * w[0] * 9  # stem conv (3s x 3s kernel at stride s = 3 s^2 x 9 taps)
    total += hw[0] * w[0] * 3 * s * s * 9  # head conv
    for i in range(len(w)):
        total += spec.enc_blocks[i] * 2 * hw[i] * w[i] * w[i] * 9
    for i in range(len(w) - 1):
        total += hw[i + 1] * w[i] * w[i + 1] * 4  # 2x2 stride-2 down conv
        total += hw[i + 1] * w[i + 1] * 4 * w[i]  # 1x1 conv to 4*w[i], or ConvT 2x2 per input pixel: the same
        total += spec.dec_blocks[i] * 2 * hw[i] * w[i] * w[i] * 9
    return total
