import pytest
import torch

from deblur.runtime.errors import ShapeError
from deblur.runtime.macs import macs
from deblur.runtime.spec import ModelSpec, get_spec, list_specs
from deblur.train.networks import Critic, Generator, build_generator, count_parameters

TINY = ModelSpec("tiny", ngf=4, n_blocks=2)


def test_paper_generator_parameter_count():
    assert count_parameters(Generator(get_spec("deblurgan"))) == 11_378_179


def test_paper_generator_macs_at_720p():
    # ~697 GMAC at 1280x720 (the paper's generator at 720p)
    assert round(macs(get_spec("deblurgan"), 720, 1280) / 1e9) == 697


def test_registry_has_smaller_specs_with_fewer_parameters():
    names = list_specs()
    assert {"deblurgan", "deblurgan-lite", "deblurgan-nano"} <= set(names)
    counts = [count_parameters(Generator(get_spec(n))) for n in ("deblurgan", "deblurgan-lite", "deblurgan-nano")]
    assert counts == sorted(counts, reverse=True)


def test_authors_module_indices():
    keys = set(Generator(get_spec("deblurgan")).state_dict())
    for k in ("model.1.weight", "model.4.weight", "model.7.weight", "model.10.conv_block.1.weight",
              "model.10.conv_block.6.weight", "model.18.conv_block.6.bias", "model.19.weight", "model.22.weight",
              "model.26.weight"):
        assert k in keys
    assert not any("running" in k for k in keys)


@pytest.mark.parametrize("hw", [(4, 4), (8, 12), (4, 16), (36, 44), (64, 32), (100, 8)])
def test_generator_any_multiple_of_4(hw):
    g = Generator(TINY).eval()
    x = torch.rand(2, 3, *hw) * 2 - 1
    y = g(x)
    assert y.shape == x.shape


@pytest.mark.parametrize("hw", [(6, 8), (8, 10), (33, 32)])
def test_generator_refuses_other_sizes(hw):
    with pytest.raises(ShapeError, match="multiples of 4"):
        Generator(TINY)(torch.zeros(1, 3, *hw))


def test_generator_refuses_wrong_channels():
    with pytest.raises(ShapeError, match="N x 3 x H x W"):
        Generator(TINY)(torch.zeros(1, 1, 8, 8))


def test_residual_clamp_and_identity():
    g = Generator(TINY).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(1000.0)  # saturate tanh: output must still be clamped to [-1, 1]
    y = g(torch.rand(1, 3, 16, 16) * 2 - 1)
    assert y.min() >= -1 and y.max() <= 1
    last = g.model[-2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(g(x), x)  # tanh(0) = 0: out = clamp(x + 0)


def test_eval_is_deterministic_train_has_dropout():
    g = Generator(ModelSpec("d", ngf=4, n_blocks=2, dropout=0.5))
    x = torch.rand(1, 3, 16, 16)
    g.eval()
    torch.testing.assert_close(g(x), g(x))
    g.train()
    torch.manual_seed(0)
    a = g(x)
    torch.manual_seed(1)
    assert not torch.equal(a, g(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generator_dtypes(dtype):
    g = Generator(TINY).to(dtype).eval()
    assert g(torch.zeros(1, 3, 8, 8, dtype=dtype)).dtype == dtype


def test_instance_norm_uses_per_image_statistics():
    # The same image must give the same output whatever else is in the batch.
    g = Generator(TINY).eval()
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16) * 5
    torch.testing.assert_close(g(torch.cat([a, b]))[:1], g(a))


def test_critic_shapes():
    d = Critic()
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0], c.padding[0]) for c in convs] == [
        (3, 64, 2, 2), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 1, 2), (512, 1, 1, 2)]
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in d.modules())
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 35, 35)


def test_spec_roundtrip_json():
    s = get_spec("deblurgan-nano")
    assert ModelSpec.from_json(s.to_json()) == s
    assert s.to_dict()["pad_multiple"] == 4


@pytest.mark.parametrize("name", list_specs())
def test_every_registered_spec_round_trips_and_builds(name):
    s = get_spec(name)
    assert ModelSpec.from_json(s.to_json()) == s
    assert ModelSpec.from_dict({k: v for k, v in s.to_dict().items() if k != "family"} | {"family": s.family}) == s
    assert build_generator(s).spec == s


def test_spec_without_family_field_is_a_resnet():
    d = get_spec("deblurgan-nano").to_dict()
    del d["family"]  # every file written before the field existed
    s = ModelSpec.from_dict(d)
    assert s == get_spec("deblurgan-nano") and s.family == "resnet" and s.pad_multiple == 4 and s.min_size == 8
    assert type(build_generator(s)) is Generator
