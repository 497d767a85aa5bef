"""The small interface every backend implements; the Deblurrer does pre/post, tiling and batching."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np


class Backend(ABC):
    """Runs ``N x 3 x H x W`` float32 RGB in [-1, 1] through the model, returns the same shape.

    ``spec`` is the model's spec dict (from the checkpoint, the ONNX metadata or the engine
    manifest); ``min_hw``/``max_hw`` bound the input size (engine profiles), ``static_hw`` fixes it.
    """

    name: str = ""
    path: Path
    device: str = "cpu"
    spec: dict[str, Any]
    static_hw: tuple[int, int] | None = None
    min_hw: tuple[int, int] | None = None
    max_hw: tuple[int, int] | None = None

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def infer_device(self, x):  # noqa: ANN001 - a CUDA tensor
        """Device-resident input and output (torch CUDA tensors); backends that can, override."""
        raise NotImplementedError(f"the {self.name} backend takes host arrays only")

    def _record_cuda(self, start, end) -> None:  # noqa: ANN001 - torch.cuda.Event pair
        """Keep the CUDA events around one forward (every tile of a frame); the oldest go past 256."""
        events = self._cuda_events()
        events.append((start, end))
        del events[:-256]

    def _cuda_events(self) -> list:
        return self.__dict__.setdefault("_events", [])

    def last_cuda_ms(self, wait: bool = True) -> float | None:
        """GPU time of the forwards since the last call (all tiles of a frame), from their CUDA events,
        else None. ``wait=False`` never blocks: None unless the GPU has already finished them."""
        events = self._cuda_events()
        if not events:
            return None
        if not wait and not events[-1][1].query():
            events.clear()
            return None
        events[-1][1].synchronize()
        total = sum(float(s.elapsed_time(e)) for s, e in events)
        events.clear()
        return total

    def close(self) -> None:  # noqa: B027 - optional
        """Release sessions, contexts and device memory."""

    @property
    def multiple(self) -> int:
        return int(self.spec.get("pad_multiple", 4))

    @property
    def min_size(self) -> int:
        return int(self.spec.get("min_size", 2 * self.multiple))
