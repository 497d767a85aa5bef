"""TensorRT backend (10.x and 11.x, named-tensor API), with torch CUDA tensors as buffers.

The manifest beside the engine is checked before the engine is deserialised: SHA-256, TensorRT
version and GPU compute capability; a mismatch says how to rebuild. Host code in engines stays
disallowed. Written against NVIDIA's documented API; it has not yet run on a GPU.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deblur.runtime.backends.base import Backend
from deblur.runtime.contract import check_manifest, read_manifest
from deblur.runtime.errors import EngineLoadError, InputError, ManifestError


def _logger(trt):
    class Collect(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity, msg):  # noqa: ANN001
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.lines.append(str(msg))

    return Collect()


def compute_capability(device: str) -> str:
    import torch

    major, minor = torch.cuda.get_device_capability(torch.device(device))
    return f"{major}.{minor}"


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Path, device: str = "cuda:0"):
        try:
            import tensorrt as trt
            import torch
        except ImportError as e:
            raise InputError(f"TensorRT engines need tensorrt and torch with CUDA ({e.name} is missing)", path,
                             hint="install TensorRT (JetPack ships it), or run the .onnx with device='cpu'") from None
        if not torch.cuda.is_available():
            raise InputError("no CUDA GPU visible: TensorRT engines run on the GPU they were built for", path,
                             hint="run the .onnx on the CPU instead")
        self.path, self.device = Path(path), device if device.startswith("cuda") else "cuda:0"
        manifest = read_manifest(self.path)
        check_manifest(manifest, self.path, tensorrt_version=trt.__version__, compute_capability=compute_capability(self.device))
        logger = _logger(trt)
        runtime = trt.Runtime(logger)
        if hasattr(runtime, "engine_host_code_allowed"):
            runtime.engine_host_code_allowed = False
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EngineLoadError("TensorRT could not deserialise the engine: " + " | ".join(logger.lines[-5:]), self.path,
                                  hint="rebuild it on this machine with deblur-export --onnx ... --require-engine")
        self.context = self.engine.create_execution_context()
        self.spec = manifest.model_spec
        lo, hi = manifest.profile["min"], manifest.profile["max"]
        self.min_hw, self.max_hw = (lo[2], lo[3]), (hi[2], hi[3])
        self.static_hw = self.min_hw if self.min_hw == self.max_hw else None
        self.max_batch = hi[0]
        self.precision = manifest.precision
        self._torch = torch
        self.stream = torch.cuda.Stream(device=self.device)
        self.note = f"{self.path.name}, TensorRT {trt.__version__}, {manifest.precision}, incl. H2D/D2H"

    def infer_device(self, x):  # noqa: ANN001 - torch CUDA tensor N x 3 x H x W float32
        torch = self._torch
        x = x.to(self.device, torch.float32).contiguous()
        h, w = x.shape[2:]
        if not (self.min_hw[0] <= h <= self.max_hw[0] and self.min_hw[1] <= w <= self.max_hw[1]):
            raise InputError(f"input {w}x{h} is outside the engine profile {self.min_hw[1]}x{self.min_hw[0]} .. "
                             f"{self.max_hw[1]}x{self.max_hw[0]}", self.path, hint="enable tiling or rebuild with a larger --max-shape")
        self.context.set_input_shape("input", tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape("output")), dtype=torch.float32, device=self.device)
        self.context.set_tensor_address("input", x.data_ptr())
        self.context.set_tensor_address("output", out.data_ptr())
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(self.stream)
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise EngineLoadError("TensorRT execute_async_v3 failed", self.path)
        end.record(self.stream)
        self._record_cuda(start, end)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return out

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.infer_device(self._torch.from_numpy(x)).cpu().numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None


def load(path: Path, device: str, **options) -> TensorRTBackend:
    del options
    return TensorRTBackend(path, device)


__all__ = ["EngineLoadError", "ManifestError", "TensorRTBackend", "load"]
