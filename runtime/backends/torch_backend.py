"""PyTorch backend: ``.pth``/``.pt``/``.safetensors`` through the one checkpoint loader, or a model in memory.

The one documented exception to "``deblur.runtime`` imports nothing of ours": opening a checkpoint
needs the networks and the loader of ``deblur.train`` (and torch), imported here only.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deblur.runtime.backends.base import Backend
from deblur.runtime.errors import InputError
from deblur.runtime.shapes import padded_size


class TorchBackend(Backend):
    """``model``: a generator (``deblur.train.networks.Generator`` or anything with its ``spec``)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", threads: int | None = None,
                 path: Path | None = None, note: str = "", precision: str | None = None):
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {device}: torch sees no CUDA GPU here", path, hint="use device='cpu'")
        if precision not in (None, "fp32", "fp16"):
            raise InputError(f"precision {precision!r}: the torch backend runs 'fp32' or 'fp16' (autocast)", path)
        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads() if dev.type == "cpu" else None
        self.model, self.device, self.path = model.to(dev).eval(), device, path
        self.precision = precision or "fp32"
        if self.precision == "fp16":
            fp32_norms(self.model)
        self.spec = model.spec
        self.frames_on_gpu = dev.type == "cuda"  # Deblurrer hands uint8 frames to run_frames: pre/post on the GPU
        self.note = note or (f"eager FP32, {device}" if self.precision == "fp32" else
                             f"FP16 autocast (InstanceNorm in FP32), {device}")

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.infer_device(torch.from_numpy(x)).float().cpu().numpy()

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        xt = torch.from_numpy(x).to(self.device)
        return lambda: self.infer_device(xt)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=self.precision == "fp16"):
            return self.model(x).float()

    def infer_device(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = x.to(self.device, torch.float32)
            if x.device.type != "cuda":
                return self._forward(x)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            y = self._forward(x)
            end.record()
            self._record_cuda(start, end)
            return y

    def padded_hw(self, h: int, w: int) -> tuple[int, int]:
        return padded_size(h, w, self.multiple, self.min_size)

    def run_frames(self, frames: list[np.ndarray], bgr: bool) -> list[np.ndarray]:
        """uint8 HxWx3 host frames up once (1 byte/px), pre, model and post on the GPU, uint8 back."""
        from deblur.runtime.prepost_torch import tensor_post, tensor_pre

        h, w = frames[0].shape[:2]
        with torch.inference_mode():
            up = torch.from_numpy(np.stack(frames)).to(self.device, non_blocking=False)
            x = torch.cat([tensor_pre(f, not bgr, self.multiple, self.min_size) for f in up])
            y = self.infer_device(x)
            out = torch.stack([tensor_post(y[i : i + 1], h, w, not bgr) for i in range(len(frames))]).cpu().numpy()
        return list(out)

    def stage_ms(self) -> dict[str, float]:
        ms = self.last_cuda_ms()
        return {} if ms is None else {"infer_cuda_ms": ms}


class _Fp32(torch.nn.Module):
    """Runs the wrapped module in FP32 with autocast off: InstanceNorm's statistics over a whole frame
    overflow or lose their precision in FP16 (the same rule the FP16 ONNX conversion keeps)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.inner(x.float())


def fp32_norms(model: torch.nn.Module) -> int:
    """Wrap every InstanceNorm in ``_Fp32`` (in place); returns how many."""
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, (torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d, torch.nn.InstanceNorm3d))]
    for name, m in found:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, _Fp32(m))
    return len(found)


def load(path: Path, device: str, **options) -> TorchBackend:
    # the documented lazy import of deblur.train: the networks and the one checkpoint loader
    from deblur.train.checkpoint import load_generator

    model, _ = load_generator(path, spec=options.get("spec"), device=device)
    return TorchBackend(model, device, threads=options.get("threads"), path=Path(path), precision=options.get("precision"))
