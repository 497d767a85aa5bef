"""PyTorch backend: ``.pth``/``.pt``/``.safetensors`` through the one checkpoint loader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deblur.runtime.backends.base import Backend
from deblur.train.checkpoint import load_generator


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None, spec: str | None = None):
        self.path, self.device = Path(path), device
        if threads:
            torch.set_num_threads(threads)
        self.model, self.weights = load_generator(path, spec=spec, device=device)
        self.spec = self.weights.spec.to_dict()

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.infer_device(torch.from_numpy(x)).float().cpu().numpy()

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
    return TorchBackend(path, device, threads=options.get("threads"), spec=options.get("spec"))
