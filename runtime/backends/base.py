"""The one runner family: every way of running a model (torch, ONNX Runtime, TensorRT) is a ``Backend``.

``Deblurrer``, the export parity gate and ``deblur-bench`` all run artifacts through these, so
every run of an engine gets the manifest, profile and host-code checks, and every ONNX run the
runtime's session options. A backend does no image handling: pre/post, tiling and batching are
``Deblurrer``'s; comparisons are the parity gate's.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.spec import ModelSpec


class Backend(ABC):
    """Runs ``N x 3 x H x W`` float32 RGB in [-1, 1] through the model, returns the same shape.

    ``spec`` is the model's ``ModelSpec`` (from the checkpoint, the ONNX contract or the engine
    manifest); ``min_hw``/``max_hw`` bound the input size (engine profiles), ``static_hw`` fixes it.
    ``precision`` is what it really computes in (reports, the parity bounds it must meet); ``note``
    says in a few words what runs (bench tables).
    """

    name: str = ""
    path: Path | None = None
    device: str = "cpu"
    spec: ModelSpec
    static_hw: tuple[int, int] | None = None
    min_hw: tuple[int, int] | None = None
    max_hw: tuple[int, int] | None = None
    precision: str = "fp32"  # what it really computes in: fp32 | fp16 | bf16
    threads: int | None = None  # CPU threads, where the backend sets them
    note: str = ""

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        """A zero-argument step that runs the model on ``x`` with the input already where the backend
        wants it (device memory, a bound feed): what benchmarks time."""
        return lambda: self.infer(x)

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

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def multiple(self) -> int:
        return self.spec.pad_multiple

    @property
    def min_size(self) -> int:
        return self.spec.min_size
