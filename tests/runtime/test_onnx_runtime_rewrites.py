"""A plain FP32 export runs with the CPU graph rewrites applied in memory; the numbers stay FP32-equal."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from deblur.export.onnx_export import export_onnx
from deblur.runtime.backends.onnx_backend import OnnxBackend
from deblur.runtime.spec import ModelSpec
from deblur.train.networks import Generator

SPEC = ModelSpec("t", ngf=8, n_blocks=1)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    torch.manual_seed(0)
    g = Generator(SPEC).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(3)  # a non-trivial output, so parity means something
    return export_onnx(g, tmp_path_factory.mktemp("rw") / "g.onnx")


def test_plain_export_is_rewritten_in_memory_and_stays_fp32_equal(plain):
    fast, slow = OnnxBackend(plain), OnnxBackend(plain, cpu_rewrites=False)
    assert fast.rewrites and not slow.rewrites
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 40, 56)).astype(np.float32)
    a, b = fast.infer(x), slow.infer(x)
    assert np.abs(a - b).max() <= 1e-4 + 1e-3 * np.abs(b).max()


def test_fp16_graphs_and_rewritten_files_are_left_alone(plain, tmp_path):
    from deblur.export.fp16 import convert_fp16
    from deblur.runtime.onnx_optimize import cpu_rewritten

    convert_fp16(plain, tmp_path / "g_fp16.onnx")
    assert cpu_rewritten(tmp_path / "g_fp16.onnx") is None
    data, applied = cpu_rewritten(plain)
    (tmp_path / "r.onnx").write_bytes(data)
    assert applied and cpu_rewritten(tmp_path / "r.onnx") is None and OnnxBackend(tmp_path / "r.onnx").rewrites == applied
