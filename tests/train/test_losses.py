"""Losses: WGAN-GP variants, adversarial signs, VGG19 layout/loading, content-loss factory."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deblur.runtime.errors import InputError
from deblur.train.losses import (
    VGG19Features,
    content_loss,
    critic_loss,
    generator_adv_loss,
    gradient_penalty,
    load_vgg19_weights,
)
from deblur.train.networks import Critic

# torchvision vgg19().features[0..14] parameters, in state-dict order.
TV_SHAPES = [
    ("features.0.weight", (64, 3, 3, 3)), ("features.0.bias", (64,)),
    ("features.2.weight", (64, 64, 3, 3)), ("features.2.bias", (64,)),
    ("features.5.weight", (128, 64, 3, 3)), ("features.5.bias", (128,)),
    ("features.7.weight", (128, 128, 3, 3)), ("features.7.bias", (128,)),
    ("features.10.weight", (256, 128, 3, 3)), ("features.10.bias", (256,)),
    ("features.12.weight", (256, 256, 3, 3)), ("features.12.bias", (256,)),
    ("features.14.weight", (256, 256, 3, 3)), ("features.14.bias", (256,)),
]


class LinearCritic(nn.Module):
    """D(x) = scale * sum(w * x) per sample, ||w|| = 1: exactly scale-Lipschitz, gradient w."""

    def __init__(self, shape: tuple[int, ...], scale: float = 1.0, dtype: torch.dtype = torch.float32):
        super().__init__()
        w = torch.randn(1, *shape, dtype=dtype)
        self.w = nn.Parameter(w / w.norm())
        self.scale = scale
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach()
        return self.scale * (x * self.w).sum(dim=(1, 2, 3))


def tv_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random state dict in torchvision's vgg19 layout, incl. keys the loader must drop."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) * (0.15 if len(s) == 4 else 0.1) for k, s in TV_SHAPES}
    sd["features.16.weight"] = torch.randn(256, 256, 3, 3, generator=g)
    sd["features.16.bias"] = torch.zeros(256)
    sd["classifier.0.weight"] = torch.randn(8, 4)  # real shape 4096 x 25088; only the name matters
    sd["classifier.6.bias"] = torch.zeros(10)
    return sd


@pytest.fixture
def vgg_file(tmp_path: Path) -> Path:
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(tv_state_dict(), path)
    return path


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gp_zero_for_unit_lipschitz_linear_critic(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    real, fake = torch.rand(3, 3, 8, 8, dtype=dtype), torch.rand(3, 3, 8, 8, dtype=dtype)
    gp = gradient_penalty(LinearCritic((3, 8, 8), dtype=dtype), real, fake)
    assert gp.dtype == dtype
    assert gp.item() == pytest.approx(0.0, abs=1e-8)
    gp3 = gradient_penalty(LinearCritic((3, 8, 8), scale=3.0, dtype=dtype), real, fake)
    assert gp3.item() == pytest.approx(4.0, rel=1e-5)  # (3 - 1)^2


def test_authors_gp_is_per_pixel_channel_norm() -> None:
    torch.manual_seed(1)
    critic = LinearCritic((3, 4, 4))
    real, fake = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    ours = gradient_penalty(critic, real, fake, per_sample=True)
    theirs = gradient_penalty(critic, real, fake, per_sample=False)
    expected = ((critic.w.detach().norm(2, dim=1) - 1) ** 2).mean()
    assert theirs.item() == pytest.approx(expected.item(), rel=1e-5)
    assert ours.item() == pytest.approx(0.0, abs=1e-8)
    assert theirs.item() > 0.1


def test_alpha_per_sample_vs_one_per_batch() -> None:
    torch.manual_seed(2)
    real, fake = torch.ones(6, 3, 4, 4), torch.zeros(6, 3, 4, 4)  # x_hat == alpha
    critic = LinearCritic((3, 4, 4))
    gradient_penalty(critic, real, fake, per_sample=True)
    a = critic.seen
    assert torch.all(a == a[:, :1, :1, :1])  # one alpha per sample ...
    assert a[:, 0, 0, 0].unique().numel() == 6  # ... different across samples
    gradient_penalty(critic, real, fake, per_sample=False)
    assert critic.seen.unique().numel() == 1


def test_variants_differ_and_backprop_into_real_critic() -> None:
    torch.manual_seed(3)
    critic = Critic(ndf=8)
    real, fake = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    torch.manual_seed(4)
    ours = gradient_penalty(critic, real, fake, per_sample=True)
    torch.manual_seed(4)
    theirs = gradient_penalty(critic, real, fake, per_sample=False)
    assert torch.isfinite(ours) and torch.isfinite(theirs)
    assert abs(ours.item() - theirs.item()) > 1e-4
    ours.backward()
    # Conv biases before InstanceNorm and the last bias do not change dD/dx: check the weights.
    grads = [m.weight.grad for m in critic.modules() if isinstance(m, nn.Conv2d)]
    assert len(grads) == 5 and all(g is not None for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_gp_under_cpu_autocast() -> None:
    torch.manual_seed(5)
    critic = Critic(ndf=8)
    real, fake = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, parts = critic_loss(critic, real, fake)
    assert torch.isfinite(total) and total.dtype == torch.float32
    total.backward()
    assert critic.model[0].weight.grad is not None


class ConstCritic(nn.Module):
    """Scores images by their mean; gradient norm 1/sqrt(numel) per sample, so GP is known."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.mean(dim=(1, 2, 3))


def test_critic_and_generator_loss_signs() -> None:
    real, fake = torch.full((2, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), -0.5, requires_grad=True)
    critic = ConstCritic()
    total, parts = critic_loss(critic, real, fake, lambda_gp=10.0)
    assert set(parts) == {"d", "gp"}
    assert parts["d"].item() == pytest.approx(-1.0)  # D(fake) - D(real)
    gp = (1 / 48**0.5 - 1) ** 2
    assert parts["gp"].item() == pytest.approx(gp, rel=1e-5)
    assert total.item() == pytest.approx(-1.0 + 10 * gp, rel=1e-5)
    total.backward()
    assert fake.grad is None  # the critic step never reaches the generator
    assert critic.scale.grad is not None
    g = generator_adv_loss(ConstCritic(), fake)
    assert g.item() == pytest.approx(0.5)
    g.backward()
    assert fake.grad is not None and torch.all(fake.grad < 0)  # raising D(fake) lowers the loss


def test_vgg19_features_layout_matches_torchvision() -> None:
    vgg = VGG19Features()
    assert [(k, tuple(v.shape)) for k, v in vgg.state_dict().items()] == TV_SHAPES
    assert len(vgg.features) == 15 and isinstance(vgg.features[14], nn.Conv2d)
    post = VGG19Features(after_relu=True)
    assert len(post.features) == 16 and isinstance(post.features[15], nn.ReLU)
    assert not post.features[15].inplace
    assert all(not p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training and not vgg.features[0].training
    with pytest.raises(InputError, match="conv3_3"):
        VGG19Features(layer="conv9_9")


def test_load_weights_from_file_drops_extra_keys(vgg_file: Path) -> None:
    sd = load_vgg19_weights(vgg_file)
    assert [k for k, _ in TV_SHAPES] == list(sd)
    assert load_vgg19_weights(vgg_file.parent).keys() == sd.keys()  # a folder holding the file
    vgg = VGG19Features(sd)
    assert torch.equal(vgg.features[14].weight, tv_state_dict()["features.14.weight"])


def test_missing_or_bad_weights_name_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    expected = tmp_path / "th" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    with pytest.raises(InputError) as e:
        load_vgg19_weights(None)
    msg = str(e.value)
    assert str(expected) in msg and "--content l1" in msg and "--content l2" in msg
    assert "download.pytorch.org" in msg
    monkeypatch.delenv("TORCH_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(InputError, match=str(tmp_path / "xdg" / "torch" / "hub" / "checkpoints")):
        load_vgg19_weights(None)
    with pytest.raises(InputError, match="nope.pth"):
        content_loss("perceptual", weights_path=tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match="features.0.weight"):
        load_vgg19_weights(bad)
    cache = tmp_path / "xdg" / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(tv_state_dict(), cache / "vgg19-dcbb9e9d.pth")
    assert len(load_vgg19_weights(None)) == 14  # found in the cache


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_perceptual_loss(vgg_file: Path, dtype: torch.dtype) -> None:
    torch.manual_seed(6)
    loss = content_loss("perceptual", weights_path=vgg_file).to(dtype)
    sharp = (torch.rand(1, 3, 16, 16, dtype=dtype) * 2 - 1).requires_grad_(True)
    fake = (sharp.detach() + 0.2 * torch.randn_like(sharp)).clamp(-1, 1).requires_grad_(True)
    assert loss(sharp, sharp.detach().clone()).item() == 0.0
    value = loss(fake, sharp)
    assert value.dtype == dtype and value.item() > 0
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert sharp.grad is None  # the target is a constant
    assert all(p.grad is None for p in loss.parameters())


def test_perceptual_options_change_features(vgg_file: Path) -> None:
    torch.manual_seed(7)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    sd = load_vgg19_weights(vgg_file)
    pre, post = VGG19Features(sd)(x), VGG19Features(sd, after_relu=True)(x)
    raw = VGG19Features(sd, imagenet_norm=False)(x)
    assert pre.min() < 0 and post.min() >= 0 and torch.equal(post, pre.clamp_min(0))
    assert not torch.allclose(pre, raw)


def test_pixel_content_losses_and_unknown_kind() -> None:
    a, b = torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.5)
    assert content_loss("l1")(a, b).item() == pytest.approx(0.5)
    assert content_loss("L2", weights_path="/nonexistent")(a, b).item() == pytest.approx(0.25)
    with pytest.raises(InputError, match="perceptual, l1, l2"):
        content_loss("ssim")
