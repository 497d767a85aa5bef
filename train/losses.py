"""DeblurGAN losses: WGAN-GP critic/generator terms and the content (perceptual, L1, L2) loss.

Paper defaults: total G loss = adversarial + lambda * content with lambda = 100 (the authors'
``lambda_A``), perceptual loss = MSE of VGG19 conv3_3 features; critic loss with lambda_gp = 10.
The weights (lambda, lambda_gp) are applied by the trainer, except ``critic_loss``'s lambda_gp.
Departures from the authors' code are options:

* ``per_sample`` GP (default) is Gulrajani et al.; ``per_sample=False`` is the authors' variant
  (one alpha per batch, gradient norm over channels per pixel).
* ``after_relu=False`` (default) taps ``features[14]`` = conv3_3 before its ReLU, as the authors'
  code; the paper says "after activation" (``features[15]``).
* ``imagenet_norm=True`` (default) maps [-1, 1] to ImageNet statistics, as VGG was trained and as
  DeblurGAN-v2 does; ``False`` feeds [-1, 1] unnormalised, as the authors' code.

Everything follows the input's dtype and device, and runs under ``torch.autocast``.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deblur.runtime.errors import InputError

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = f"https://download.pytorch.org/models/{VGG19_FILE}"
# torchvision's VGG19 ("E") features config; "M" = MaxPool2d(2, 2).
_VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                     512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
CONTENT_KINDS = ("perceptual", "l1", "l2", "charbonnier")


def _mean(x: torch.Tensor) -> torch.Tensor:
    """Mean accumulated in at least float32 (autocast outputs may be half), float64 kept."""
    return x.mean(dtype=torch.promote_types(x.dtype, torch.float32))


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                     per_sample: bool = True) -> torch.Tensor:
    """WGAN-GP term mean((||grad D(x_hat)|| - 1)^2), unweighted; differentiable w.r.t. the critic."""
    real, fake = real.detach(), fake.detach()
    shape = (real.shape[0],) + (1,) * (real.ndim - 1) if per_sample else (1,) * real.ndim
    alpha = torch.rand(shape, dtype=real.dtype, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out, x_hat, grad_outputs=torch.ones_like(out), create_graph=True)
    grad = grad.to(torch.promote_types(grad.dtype, torch.float32))
    # sqrt(sum + tiny) instead of .norm(): same value, but a finite gradient where grad is 0.
    dims = tuple(range(1, grad.ndim)) if per_sample else (1,)
    norm = torch.sqrt(grad.pow(2).sum(dim=dims) + 1e-12)
    return ((norm - 1) ** 2).mean()


def critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, lambda_gp: float = 10.0,
                per_sample: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D(fake) - D(real) + lambda_gp * GP; ``fake`` is detached so only the critic learns.

    Returns ``(total, {"d": D(fake)-D(real), "gp": GP})``; the dict holds detached values for
    logging (-"d" is the critic's Wasserstein distance estimate).
    """
    fake = fake.detach()
    d = _mean(critic(fake)) - _mean(critic(real))
    gp = gradient_penalty(critic, real, fake, per_sample=per_sample)
    return d + lambda_gp * gp, {"d": d.detach(), "gp": gp.detach()}


def generator_adv_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """-D(fake).mean(): the generator raises the critic's score of its output."""
    return -_mean(critic(fake))


def _vgg19_layers() -> list[tuple[int, str, int, int]]:
    """(features index, name, in, out) of each conv in torchvision's vgg19.features."""
    convs, idx, cin, block, n = [], 0, 3, 1, 0
    for v in _VGG19_CFG:
        if v == "M":
            idx, block, n = idx + 1, block + 1, 0
            continue
        n += 1
        convs.append((idx, f"conv{block}_{n}", cin, int(v)))
        idx, cin = idx + 2, int(v)
    return convs


def _layer_index(layer: str, after_relu: bool) -> int:
    for idx, name, _, _ in _vgg19_layers():
        if name == layer:
            return idx + int(after_relu)
    names = ", ".join(n for _, n, _, _ in _vgg19_layers())
    raise InputError(f"unknown VGG19 layer {layer!r}", hint=f"choose one of {names}")


class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features[: last + 1]`` without torchvision; frozen, always eval.

    ``features.{i}.weight`` keys and shapes match torchvision's state dict, so its file loads as is.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor] | None = None, *, layer: str = "conv3_3",
                 after_relu: bool = False, imagenet_norm: bool = True):
        super().__init__()
        last = _layer_index(layer, after_relu)
        mods: list[nn.Module] = []
        cin = 3
        for v in _VGG19_CFG:
            if v == "M":
                mods.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                mods += [nn.Conv2d(cin, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*mods[: last + 1])
        self.imagenet_norm = imagenet_norm
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if state_dict is not None:
            self.load_state_dict(state_dict)
        self.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> VGG19Features:
        """Always eval: the loss network is fixed, whatever the trainer sets."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: N x 3 x H x W RGB in [-1, 1]."""
        if self.imagenet_norm:
            x = ((x + 1) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.features(x)


def _default_vgg19_path() -> Path:
    # torch.hub.get_dir(): $TORCH_HOME/hub, TORCH_HOME defaulting to $XDG_CACHE_HOME/torch (~/.cache).
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def load_vgg19_weights(path: str | Path | None, *, layer: str = "conv3_3") -> dict[str, torch.Tensor]:
    """torchvision's VGG19 ImageNet state dict from ``path`` (file or folder) or torch's cache.

    Keeps only the ``features.*`` keys up to ``layer``; VGG weights cannot be downloaded here.
    """
    if path is None:
        candidates = [_default_vgg19_path()]
    else:
        p = Path(path).expanduser()
        candidates = [p / VGG19_FILE] if p.is_dir() else [p]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise InputError(
            f"VGG19 ImageNet weights not found at {' or '.join(str(c) for c in candidates)}",
            hint=f"download {VGG19_URL} (torchvision vgg19 IMAGENET1K_V1) to that path, "
                 "or train with --content l1 or --content l2, which need no VGG weights",
        )
    try:
        # The one torch.load outside the checkpoint module: tensors only (weights_only=True).
        sd = torch.load(found, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(f"cannot read VGG19 weights ({type(e).__name__})", path=found,
                         hint=f"expected torchvision's {VGG19_FILE} state dict") from None
    last = _layer_index(layer, after_relu=False)
    want = {f"features.{i}.{k}": (o, c, 3, 3) if k == "weight" else (o,)
            for i, _, c, o in _vgg19_layers() if i <= last for k in ("weight", "bias")}
    if not isinstance(sd, dict):
        sd = {}
    bad = [k for k, s in want.items() if not isinstance(sd.get(k), torch.Tensor) or tuple(sd[k].shape) != s]
    if bad:
        raise InputError(f"not a torchvision VGG19 state dict: missing or misshapen {', '.join(bad[:3])}",
                         path=found, hint=f"use torchvision's {VGG19_FILE} from {VGG19_URL}")
    return {k: sd[k] for k in want}


class PerceptualLoss(nn.Module):
    """MSE between VGG19 features of ``fake`` and ``sharp`` (both in [-1, 1]); target detached."""

    def __init__(self, weights_path: str | Path | None = None, after_relu: bool = False,
                 imagenet_norm: bool = True, layer: str = "conv3_3"):
        super().__init__()
        sd = load_vgg19_weights(weights_path, layer=layer)
        self.vgg = VGG19Features(sd, layer=layer, after_relu=after_relu, imagenet_norm=imagenet_norm)

    def forward(self, fake: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.vgg(fake), self.vgg(sharp).detach())


class CharbonnierLoss(nn.Module):
    """mean(sqrt(d^2 + eps^2)): L1 with a smooth minimum (the PSNR-leading deblurring recipes' pixel loss)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, fake: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
        return _mean(torch.sqrt((fake.float() - sharp.float()) ** 2 + self.eps**2))


def fft_loss(fake: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    """L1 of the real and imaginary parts of the orthonormal 2-D FFT of the error (MIMO-UNet's frequency
    term): blur removes high frequencies, and this weighs them as much as the low ones."""
    f = torch.fft.rfft2(fake.float() - sharp.float(), norm="ortho")
    return _mean(torch.abs(torch.view_as_real(f)))


def content_loss(kind: str, weights_path: str | Path | None = None, **kw) -> nn.Module:
    """Content loss module ``loss(fake, sharp)``; the caller weights it (paper: lambda = 100).

    ``kw`` (after_relu, imagenet_norm, layer) go to ``PerceptualLoss``; l1/l2 ignore them and the
    weights path, so they train without VGG weights.
    """
    k = str(kind).lower()
    if k == "perceptual":
        return PerceptualLoss(weights_path, **kw)
    if k == "l1":
        return nn.L1Loss()
    if k == "l2":
        return nn.MSELoss()
    if k == "charbonnier":
        return CharbonnierLoss()
    raise InputError(f"unknown content loss {kind!r}", hint=f"choose one of {', '.join(CONTENT_KINDS)}")
