"""The ORT CPU graph rewrites are exact: FP32 parity with torch on every size the contract allows."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from deblur.export.onnx_export import export_onnx
from deblur.runtime.contract import OnnxContract, onnx_props
from deblur.runtime.onnx_optimize import (
    optimize,
    phase_conv_weight,
    phase_plan,
    polyphase_conv_weight,
    subpixel_convtranspose_weight,
)
from deblur.runtime.spec import ModelSpec
from deblur.train.networks import Generator

SPECS = [ModelSpec("t", ngf=8, n_blocks=2), ModelSpec("t1", ngf=8, n_blocks=1, n_downsampling=1)]
SIZES = [(64, 96), (36, 52), (8, 12), (16, 16)]


def _trained_like(spec, seed=0):
    torch.manual_seed(seed)
    g = Generator(spec).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(3.0)  # a residual that is not tiny, so parity is not trivially met
    return g


@pytest.fixture(scope="module", params=SPECS, ids=lambda s: s.name)
def exported(request, tmp_path_factory):
    spec = request.param
    g = _trained_like(spec)
    path = export_onnx(g, tmp_path_factory.mktemp("opt") / "g.onnx")
    return g, onnx.load(str(path))


def _session(model):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("options", [
    {},
    {"phase_tail": False},
], ids=["default", "subpixel_tail"])
def test_fp32_parity_on_every_allowed_size(exported, options):
    g, model = exported
    sess = _session(optimize(model, **options))
    rng = np.random.default_rng(0)
    for h, w in SIZES:
        if h % g.spec.pad_multiple or w % g.spec.pad_multiple:
            continue
        x = (rng.random((2, 3, h, w)) * 2 - 1).astype(np.float32)  # batch 2: per-image statistics
        with torch.no_grad():
            ref = g(torch.from_numpy(x)).numpy()
        y = sess.run(["output"], {"input": x})[0]
        d = np.abs(y - ref)
        assert y.shape == ref.shape and np.isfinite(y).all()
        assert (d <= 1e-4 + 1e-3 * np.abs(ref)).all(), f"{h}x{w} {options}: max |d| {d.max():.2e}"
        assert np.abs(ref - x).mean() > 0.05  # the check is not vacuous


def test_default_rewrites_the_tail_and_records_it(exported):
    g, model = exported
    out = optimize(model)
    ops = [n.op_type for n in out.graph.node]
    orig = [n.op_type for n in model.graph.node]
    assert ops.count("ConvTranspose") == orig.count("ConvTranspose") - 1  # the last up-sampling stage
    assert ops.count("DepthToSpace") == 1 and "SpaceToDepth" not in ops
    contract = OnnxContract.from_props(onnx_props(out))
    assert "phase_tail" in contract.graph_rewrites and contract.spec == g.spec
    assert len(model.graph.node) == len(orig)  # the input model is untouched
    onnx.checker.check_model(out, full_check=True)


def test_without_metadata_the_even_size_rewrite_is_not_applied(exported):
    _, model = exported
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.metadata_props[:]
    ops = [n.op_type for n in optimize(bare, phase_tail=False).graph.node]
    assert "SpaceToDepth" not in ops  # pad_multiple unknown: evenness not guaranteed


def _conv1d(x, w):  # valid cross-correlation, x [L], w [k]
    k = len(w)
    return np.array([x[i:i + k] @ w for i in range(len(x) - k + 1)])


def test_phase_plan_in_1d():
    """phase_tail's index algebra without ONNX: reflect-pad-3 conv of a 1-D signal, phase by phase."""
    rng = np.random.default_rng(1)
    n = 20
    x, w = rng.standard_normal(n), rng.standard_normal(7)
    ref = _conv1d(np.pad(x, 3, mode="reflect"), w)
    taps, starts, table = phase_plan(7, 3)
    assert taps == 4 and starts == [-1, -2]

    def refl(i):
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    for a in range(2):
        out = np.zeros(n // 2)
        for (aa, r, t), kk in table.items():
            if aa == a:
                ext = np.array([x[refl(2 * q + r)] for q in range(starts[r], starts[r] + n // 2 + taps - 1)])
                out += w[kk] * ext[t:t + n // 2]
        np.testing.assert_allclose(out, ref[a::2], rtol=1e-12, atol=1e-12)


def _dcr(phases, c):  # ONNX DepthToSpace/SpaceToDepth order (phase-major) <-> torch's (channel-major)
    n, _, h, w = phases.shape
    return phases.reshape(n, 4, c, h, w).transpose(1, 2).reshape(n, 4 * c, h, w)


def test_polyphase_conv_weight_matches_torch():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 3, 7).eval()
    xp = torch.randn(1, 8, 16, 22)
    s2d = torch.nn.functional.pixel_unshuffle(xp, 2).reshape(1, 8, 4, 8, 11).transpose(1, 2).reshape(1, 32, 8, 11)
    k = torch.from_numpy(polyphase_conv_weight(conv.weight.detach().numpy()))
    phases = torch.nn.functional.conv2d(s2d, k, conv.bias.detach().repeat(4))
    y = torch.nn.functional.pixel_shuffle(_dcr(phases, 3), 2)
    torch.testing.assert_close(y, conv(xp).detach(), rtol=1e-5, atol=1e-6)


def test_convtranspose_weight_matches_torch():
    torch.manual_seed(0)
    ct = torch.nn.ConvTranspose2d(5, 3, 3, stride=2, padding=1, output_padding=1).eval()
    x = torch.randn(1, 5, 6, 7)
    k = torch.from_numpy(subpixel_convtranspose_weight(ct.weight.detach().numpy()))
    phases = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), k, ct.bias.detach().repeat(4))
    y = torch.nn.functional.pixel_shuffle(_dcr(phases, 3), 2)
    torch.testing.assert_close(y, ct(x).detach(), rtol=1e-5, atol=1e-6)


def test_phase_conv_weight_shape():
    w = np.ones((3, 8, 7, 7), np.float32)
    wp = phase_conv_weight(w, 3)
    assert wp.shape == (12, 32, 4, 4)
    assert wp.sum() == pytest.approx(4 * w.sum())  # every original tap used once per output phase
