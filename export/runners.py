"""Runners: one callable per backend, ``NCHW float32 in [-1, 1] -> NCHW float32`` (Polygraphy style).

Each is built by a small loader and knows nothing of images or thresholds; ``parity`` compares.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


def torch_runner(model, device: str = "cpu") -> Runner:
    """The reference: the PyTorch generator in FP32, eval mode (dropout off)."""
    import torch

    model = model.to(device).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run


def torch_half_runner(model) -> Runner:
    """The stricter FP16 proxy on CPU: convolutions really in FP16, InstanceNorm in FP32."""
    from deblur.export.fp16 import half_reference

    return torch_runner(half_reference(model))


def ort_session(path: str | Path, device: str = "cpu", threads: int | None = None):
    """The runtime's ONNX Runtime session (same tuned options), so parity checks what users run."""
    from deblur.runtime.ort_options import session

    return session(path, device, threads)


def ort_runner(path: str | Path, device: str = "cpu") -> Runner:
    sess = ort_session(path, device)

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(["output"], {"input": x})[0]

    return run


def tensorrt_runner(engine_path: str | Path, device: str = "cuda:0") -> Runner:
    """A TensorRT engine through the named-tensor API (TRT 10/11), with torch CUDA buffers.

    Not run on a GPU yet (none here): written against NVIDIA's documented API.
    """
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise RuntimeError(f"TensorRT could not deserialise {engine_path}")
    ctx = engine.create_execution_context()
    dev = torch.device(device)

    def run(x: np.ndarray) -> np.ndarray:
        inp = torch.from_numpy(x).to(dev)
        ctx.set_input_shape("input", tuple(inp.shape))
        out = torch.empty(tuple(ctx.get_tensor_shape("output")), dtype=torch.float32, device=dev)
        ctx.set_tensor_address("input", inp.data_ptr())
        ctx.set_tensor_address("output", out.data_ptr())
        stream = torch.cuda.current_stream(dev)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        stream.synchronize()
        return out.cpu().numpy()

    return run
