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


class TorchBackend(Backend):
    """``model``: a generator (``deblur.train.networks.Generator`` or anything with its ``spec``)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", threads: int | None = None,
                 path: Path | None = None, note: str = ""):
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {device}: torch sees no CUDA GPU here", path, hint="use device='cpu'")
        if threads:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads() if dev.type == "cpu" else None
        self.model, self.device, self.path = model.to(dev).eval(), device, path
        self.spec = model.spec
        self.note = note or f"eager FP32, {device}"

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.infer_device(torch.from_numpy(x)).float().cpu().numpy()

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        xt = torch.from_numpy(x).to(self.device)
        return lambda: self.infer_device(xt)

    def infer_device(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = x.to(self.device, torch.float32)
            if x.device.type != "cuda":
                return self.model(x)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            y = self.model(x)
            end.record()
            self._record_cuda(start, end)
            return y


def load(path: Path, device: str, **options) -> TorchBackend:
    # the documented lazy import of deblur.train: the networks and the one checkpoint loader
    from deblur.train.checkpoint import load_generator

    model, _ = load_generator(path, spec=options.get("spec"), device=device)
    return TorchBackend(model, device, threads=options.get("threads"), path=Path(path))
