"""The U-Net generator family (``ModelSpec(family="unet")``): spec, shapes, MACs, checkpoints, ONNX."""
import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deblur.runtime import Deblurrer
from deblur.runtime.contract import read_onnx_contract
from deblur.runtime.errors import InputError, ShapeError
from deblur.runtime.macs import macs
from deblur.runtime.prepost import to_tensor, to_uint8
from deblur.runtime.spec import ModelSpec, get_spec, list_specs
from deblur.train import checkpoint as ck
from deblur.train.networks import Generator, build_generator, count_parameters
from deblur.train.unet import UNetGenerator, stem_from_unshuffle

SMALL = ModelSpec("u", family="unet", widths=(8, 16, 32), enc_blocks=(1, 1, 2), dec_blocks=(1, 1), stem=2)
CANDIDATES = [n for n in list_specs() if n.startswith("deblurgan-unet")]


def _unet(spec=SMALL, seed=0, head=100.0):
    """Random weights; the head scaled back up from its x0.01 init so the residual is not tiny."""
    torch.manual_seed(seed)
    g = build_generator(spec).eval()
    with torch.no_grad():
        g.head[0].weight.mul_(head)
    return g


def _photo(h, w, seed=0):
    """A smooth image with edges (not noise): blocks and a gradient, uint8 RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 0.5 + 0.3 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None] * rng.uniform(0.5, 1, 3)
    img[(xx // 24 + yy // 24) % 2 == 0] *= 0.6
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------- spec


@pytest.mark.parametrize(("widths", "stem", "multiple"), [((8,), 1, 1), ((8,), 2, 2), ((8, 16), 2, 4),
                                                           ((8, 16, 32, 64), 2, 16), ((8, 16, 32), 4, 16)])
def test_pad_multiple_and_min_size(widths, stem, multiple):
    n = len(widths)
    s = ModelSpec("p", family="unet", widths=widths, enc_blocks=(1,) * n, dec_blocks=(1,) * (n - 1), stem=stem)
    assert s.pad_multiple == multiple and s.min_size == multiple and s.levels == n


def test_resnet_specs_unchanged():
    pico = get_spec("deblurgan-pico")
    assert pico.family == "resnet" and pico.norm == "instance" and pico.format_version == 1
    assert (pico.pad_multiple, pico.min_size) == (4, 8)
    assert get_spec("deblurgan-pico-d3").pad_multiple == 8
    d = pico.to_dict()
    assert not {"widths", "enc_blocks", "dec_blocks", "stem", "upsample"} & set(d)  # a format-1 file's keys
    assert d["family"] == "resnet"


def test_spec_json_round_trip_unet():
    s = ModelSpec.from_json(SMALL.to_json())
    assert s == SMALL and isinstance(s.widths, tuple) and isinstance(s.enc_blocks, tuple)
    d = json.loads(SMALL.to_json())
    assert d["widths"] == [8, 16, 32] and d["family"] == "unet" and d["norm"] == "none"
    assert d["format_version"] == 2 and d["pad_multiple"] == 8 and d["min_size"] == 8
    for name in CANDIDATES:
        assert ModelSpec.from_json(get_spec(name).to_json()) == get_spec(name)


def test_spec_from_dict_without_family_is_the_resnet():
    old = {"name": "deblurgan-pico", "ngf": 8, "n_blocks": 3, "n_downsampling": 2, "norm": "instance", "dropout": 0.5,
           "learn_residual": True, "input_range": [-1.0, 1.0], "color_order": "RGB", "description": "1/64 width, 3 "
           "blocks; real time on a 2-core CPU", "format_version": 1, "pad_multiple": 4, "min_size": 8}
    s = ModelSpec.from_dict(old)
    assert s == get_spec("deblurgan-pico") and s.family == "resnet"
    assert ModelSpec.from_dict({"name": "x"}).family == "resnet"


def test_lists_become_tuples_and_norm_defaults_per_family():
    s = ModelSpec("l", family="unet", widths=[4, 8], enc_blocks=[0, 1], dec_blocks=[1])
    assert s.widths == (4, 8) and s.enc_blocks == (0, 1) and s.dec_blocks == (1,) and s.norm == "none"
    assert hash(s)  # frozen and hashable: lists would not be
    assert ModelSpec("r").norm == "instance"


def test_older_reader_refuses_a_newer_spec_format():
    with pytest.raises(InputError, match="newer than this deblur-edge"):
        ModelSpec.from_dict({"name": "x", "format_version": 3})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"family": "vit"}, "family must be one of resnet, unet"),
    ({"family": "unet"}, "widths must be one or more"),
    ({"family": "unet", "widths": (8, 0), "enc_blocks": (1, 1), "dec_blocks": (1,)}, "widths must be one or more"),
    ({"family": "unet", "widths": (8, 16), "enc_blocks": (1,), "dec_blocks": (1,)}, "enc_blocks needs 2 counts"),
    ({"family": "unet", "widths": (8, 16), "enc_blocks": (1, 1), "dec_blocks": (1, 1)}, "dec_blocks needs 1 counts"),
    ({"family": "unet", "widths": (8, 16), "enc_blocks": (1, -1), "dec_blocks": (1,)}, "enc_blocks needs 2 counts"),
    ({"family": "unet", "widths": (8,), "enc_blocks": (1,), "dec_blocks": (), "stem": 0}, "stem"),
    ({"family": "unet", "widths": (8,), "enc_blocks": (1,), "dec_blocks": (), "upsample": "bilinear"}, "upsample"),
    ({"family": "unet", "widths": (8,), "enc_blocks": (1,), "dec_blocks": (), "norm": "instance"}, "norm must be 'none'"),
    ({"family": "unet", "widths": "abc", "enc_blocks": (1,), "dec_blocks": ()}, "widths must be a list of integers"),
    ({"widths": (8, 16)}, "apply to family 'unet' only"),
    ({"stem": 2}, "apply to family 'unet' only"),
    ({"norm": "none"}, "supports only norm='instance'"),
])
def test_spec_validation_one_line_messages(kwargs, message):
    with pytest.raises(InputError, match=message) as e:
        ModelSpec("bad", **kwargs)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------- model


def test_build_generator_picks_the_family():
    assert isinstance(build_generator(SMALL), UNetGenerator)
    assert type(build_generator(get_spec("deblurgan-pico"))) is Generator
    with pytest.raises(InputError, match="use build_generator"):
        Generator(SMALL)  # one way to build a family: build_generator
    assert type(copy.deepcopy(Generator(get_spec("deblurgan-pico")))) is Generator
    with pytest.raises(InputError, match="family 'unet'"):
        UNetGenerator(get_spec("deblurgan-pico"))


@pytest.mark.parametrize("upsample", ["pixelshuffle", "convtranspose"])
@pytest.mark.parametrize("hw", [(8, 8), (24, 40), (8, 72), (56, 24)])
def test_shapes_any_multiple(upsample, hw):
    g = _unet(ModelSpec("u", family="unet", widths=(4, 8, 16), enc_blocks=(1, 1, 1), dec_blocks=(1, 1), stem=2,
                        upsample=upsample))
    x = torch.rand(2, 3, *hw) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1


@pytest.mark.parametrize("hw", [(12, 16), (16, 20), (33, 32)])
def test_refuses_non_multiples_with_the_fix(hw):
    with pytest.raises(ShapeError, match="multiples of 8") as e:
        build_generator(SMALL)(torch.zeros(1, 3, *hw))
    assert "pad to" in (e.value.hint or "")


def test_refuses_wrong_channels():
    with pytest.raises(ShapeError, match="N x 3 x H x W"):
        build_generator(SMALL)(torch.zeros(1, 1, 8, 8))


def test_starts_near_identity_and_zero_head_is_identity():
    torch.manual_seed(0)
    g = build_generator(SMALL).eval()
    x = torch.rand(1, 3, 32, 48) * 1.6 - 0.8
    with torch.no_grad():
        assert (g(x) - x).abs().max() < 0.05  # head x0.01: the residual starts near 0
        g.head[0].weight.zero_()
        g.head[0].bias.zero_()
        torch.testing.assert_close(g(x), x)


def test_stem_is_pixel_unshuffle_then_3x3_conv():
    torch.manual_seed(0)
    for s in (1, 2, 4):
        w, b = torch.randn(6, 3 * s * s, 3, 3), torch.randn(6)
        x = torch.randn(2, 3, 4 * s, 6 * s)
        ref = F.conv2d(F.pixel_unshuffle(x, s), w, b, padding=1)
        torch.testing.assert_close(F.conv2d(x, stem_from_unshuffle(w, s), b, stride=s, padding=s), ref, atol=1e-4, rtol=1e-4)


def test_batch_independent_and_deterministic():
    g = _unet()
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(g(torch.cat([a, b]))[:1], g(a))
        torch.testing.assert_close(g(a), g(a))


def test_gradients_flow_everywhere():
    g = build_generator(SMALL).train()
    g(torch.rand(2, 3, 32, 32) * 2 - 1).abs().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g.parameters())


def _hook_macs(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels * m.out_channels // m.groups
        pixels = (out if isinstance(m, nn.Conv2d) else inp[0]).shape[-2:]  # ConvT: per input pixel (ptflops)
        total += k * pixels[0] * pixels[1]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name", ["deblurgan-pico", "deblurgan-pico-d3", *CANDIDATES])
def test_macs_match_a_forward_hook_count(name):
    spec = get_spec(name)
    with torch.device("meta"):
        g = build_generator(spec).eval()
    m = spec.pad_multiple * 4
    x = torch.zeros(1, 3, 2 * m, 3 * m, device="meta")
    assert macs(spec, 2 * m, 3 * m) == _hook_macs(g, x)


def test_unet_macs_count_the_padded_frame():
    s = get_spec(CANDIDATES[0])
    assert macs(s, 360, 640) == macs(s, 368, 640)  # the runtime pads 360 up to a multiple of 16


def test_registered_candidates():
    assert 2 <= len(CANDIDATES) <= 3
    for name in CANDIDATES:
        s = get_spec(name)
        assert s.family == "unet" and s.norm == "none" and s.description
        assert min(s.widths) >= 8 and s.pad_multiple == 16  # depth down to 1/16 resolution
    params = [count_parameters(build_generator(get_spec(n))) for n in CANDIDATES]
    assert all(5e5 < p < 5e6 for p in params)


# ---------------------------------------------------------------------------- checkpoint


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_round_trip(tmp_path, suffix):
    g = _unet(seed=3)
    path = ck.save_generator(tmp_path / f"u{suffix}", g, SMALL, meta={"step": 1})
    model, w = ck.load_generator(path)
    assert isinstance(model, UNetGenerator) and w.spec == SMALL and not model.training
    x = torch.rand(1, 3, 24, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x), g(x))


def test_checkpoint_of_another_unet_is_refused(tmp_path):
    other = ModelSpec("u", family="unet", widths=(8, 16, 32), enc_blocks=(1, 1, 3), dec_blocks=(1, 1), stem=2)
    path = ck.save_generator(tmp_path / "u.pth", build_generator(other).state_dict(), SMALL)  # lies about its spec
    with pytest.raises(ck.CheckpointMismatchError, match="unexpected"):
        ck.load_generator(path)


# ------------------------------------------------------------------------------ ONNX, runtime


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from deblur.export.onnx_export import export_onnx

    tmp = tmp_path_factory.mktemp("unet")
    g = _unet(seed=1)
    return g, ck.save_generator(tmp / "u.pth", g, SMALL), export_onnx(g, tmp / "u.onnx")


def test_onnx_deblurrer_matches_torch_on_a_non_multiple_frame(exported):
    g, ckpt, onnx_path = exported
    assert read_onnx_contract(onnx_path).spec == SMALL
    frame = _photo(61, 83)  # neither a multiple of 8: padded, run, cropped
    x = to_tensor(frame, SMALL.pad_multiple, SMALL.min_size)
    with torch.no_grad():
        ref = to_uint8(g(torch.from_numpy(x)).numpy(), 61, 83)
    assert np.abs(ref.astype(int) - frame).max() > 10  # a real, non-identity model
    with Deblurrer(onnx_path, rgb=True, backend="onnxruntime") as d:
        assert d.spec == SMALL
        assert d.backend.rewrites == []  # the ResNet-tail rewrites find nothing to match
        out = d(frame)
    with Deblurrer(ckpt, rgb=True) as t:
        out_t = t(frame)
    assert out.shape == frame.shape
    assert np.abs(out.astype(int) - ref).max() <= 1 and np.abs(out_t.astype(int) - ref).max() <= 1


def test_cpu_rewrites_do_not_apply(exported):
    import onnx

    from deblur.runtime.onnx_optimize import cpu_rewritten, optimize

    _, _, onnx_path = exported
    model = onnx.load(str(onnx_path))
    assert [n.op_type for n in optimize(model).graph.node] == [n.op_type for n in model.graph.node]
    assert cpu_rewritten(onnx_path) is None


def _tiled_vs_whole(model_path, frame, tile, overlap):
    with Deblurrer(model_path, rgb=True, tile=0) as d:
        whole = d(frame).astype(np.float32)
    with Deblurrer(model_path, rgb=True, tile=tile, tile_overlap=overlap) as d:
        tiled = d(frame).astype(np.float32)
    residual = np.abs(whole - frame).mean()
    return np.abs(tiled - whole).mean() / residual, residual


def test_tiling_agrees_far_better_than_the_instance_norm_model(tmp_path):
    from deblur.export.onnx_export import export_onnx

    frame = _photo(128, 192, seed=2)
    g = _unet(seed=1)
    unet = export_onnx(g, tmp_path / "u.onnx")
    torch.manual_seed(1)
    r = Generator(ModelSpec("t", ngf=8, n_blocks=2)).eval()
    with torch.no_grad():
        for p in r.parameters():
            p.mul_(3.0)
    resnet = export_onnx(r, tmp_path / "r.onnx")
    u_rel, u_res = _tiled_vs_whole(unet, frame, 64, 32)
    r_rel, r_res = _tiled_vs_whole(resnet, frame, 64, 32)
    assert u_res > 3 and r_res > 3  # both models really change the frame
    assert u_rel < 0.2 * r_rel, (u_rel, r_rel)


def test_deblur_export_fp32_and_fp16_parity_gate(tmp_path):
    from deblur.export.cli import main

    ckpt = ck.save_generator(tmp_path / "u.pth", _unet(seed=2), SMALL)
    assert main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "parity.json").read_text())
    arts = {a["artifact"]: a for a in report["artifacts"]}
    assert report["passed"] and arts["u.onnx"]["passed"] and arts["u_fp16.onnx"]["passed"]
    assert not any("rewrites" in k for k in arts)  # no CPU rewrite matched, none gated
    assert read_onnx_contract(tmp_path / "u.onnx").spec == SMALL
