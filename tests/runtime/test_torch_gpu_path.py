"""``.pth`` models on CUDA: frames go up once as uint8, pre/post run as torch ops on the GPU, and FP16
autocast keeps InstanceNorm in FP32. The CPU twins run the same code on the CPU: ``run_frames`` must
equal the host path bit for bit, and FP16 autocast must pass the export gate's FP16 bounds against FP32."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deblur.runtime import Deblurrer
from deblur.runtime.backends.torch_backend import fp32_norms
from deblur.runtime.compare import compare
from deblur.runtime.device import cuda_device_count
from deblur.runtime.errors import InputError

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted((REPO / "runtime/parity_images").glob("*.png"))
needs_gpu = pytest.mark.skipif(not (cuda_device_count() and torch.cuda.is_available()),
                               reason="needs a CUDA GPU visible to torch (the CPU twins run the same checks)")


def _frames() -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in IMAGES]


@pytest.mark.parametrize("bgr", [True, False])
def test_run_frames_equals_the_host_path_on_the_cpu(bgr):
    """The GPU frame path's code (upload, tensor_pre, model, tensor_post) on the CPU: bit for bit the host path."""
    with Deblurrer("default", backend="torch", rgb=not bgr) as d:
        for frame in _frames():
            want = d(frame)
            got = d.backend.run_frames([frame], bgr=bgr)[0]
            assert got.dtype == np.uint8 and got.shape == frame.shape
            np.testing.assert_array_equal(got, want)
        same = [_frames()[0]] * 3  # N > 1: one upload, one forward
        for got in d.backend.run_frames(same, bgr=bgr):
            np.testing.assert_array_equal(got, d(same[0]))


def test_fp16_autocast_passes_the_fp16_gate_against_fp32():
    """CPU twin of FP16 on CUDA: autocast FP16 (InstanceNorm in FP32) against FP32 with the gate's FP16 bounds."""
    with Deblurrer("default", backend="torch") as ref, Deblurrer("default", backend="torch", precision="fp16") as half:
        assert ref.info["precision"] == "fp32" and half.info["precision"] == "fp16"
        assert "FP16 autocast" in half.info["note"]
        for path, frame in zip(IMAGES, _frames(), strict=True):
            a, b = ref(frame), half(frame)
            r = compare(path.name, a.astype(np.float32) / 255, b.astype(np.float32) / 255, "fp16")
            assert not r.failures, (path.name, r.failures)
            assert not np.array_equal(a, b) or frame.shape[0] < 64, "FP16 ran as FP32?"


def test_fp32_norms_wraps_every_instance_norm():
    from deblur.runtime.spec import get_spec
    from deblur.train.networks import build_generator

    g = build_generator(get_spec("deblurgan"))
    n = sum(isinstance(m, torch.nn.InstanceNorm2d) for m in g.modules())
    assert n > 0 and fp32_norms(g) == n
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
        y = g(x)
    assert torch.isfinite(y).all()


def test_precision_names_are_checked():
    with pytest.raises(InputError, match="'fp32' or 'fp16'"):
        Deblurrer("default", backend="torch", precision="bf16")
    with pytest.raises(InputError, match="openvino and torch backends"):
        Deblurrer("default", backend="onnxruntime", precision="fp16")


@needs_gpu
@pytest.mark.gpu
def test_cuda_frames_match_the_cpu_within_fp32_bounds():
    with Deblurrer("default", backend="torch") as cpu, Deblurrer("default", backend="torch", device="cuda:0") as gpu:
        assert gpu.backend.frames_on_gpu
        for path, frame in zip(IMAGES, _frames(), strict=True):
            a, b = cpu(frame), gpu(frame)
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, path.name
            assert "infer_cuda_ms" in gpu.timings


def test_deblurrer_routes_frames_to_the_gpu_path_and_chunks_by_the_profile(monkeypatch):
    """Deblurrer's routing for backends with a frame path (engines, torch on CUDA), run on the CPU: uint8
    3-channel frames go to run_frames in chunks of the profile's batch; other frames take the host path."""
    with Deblurrer("default", backend="torch") as d:
        frame = _frames()[3]
        want = d(frame)
        calls: list[int] = []
        real = d.backend.run_frames
        monkeypatch.setattr(d.backend, "frames_on_gpu", True, raising=False)
        monkeypatch.setattr(d.backend, "max_batch", 2, raising=False)
        monkeypatch.setattr(d.backend, "run_frames", lambda fs, bgr: calls.append(len(fs)) or real(fs, bgr))
        out = d.batch([frame] * 5)
        assert calls == [2, 2, 1]
        for y in out:
            np.testing.assert_array_equal(y, want)
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        assert d(gray).shape == gray.shape and calls == [2, 2, 1]  # gray: the host path
        d.tile = 64  # a frame that needs tiles: the host path (tiles are host tensors)
        d(frame)
        assert calls == [2, 2, 1]
