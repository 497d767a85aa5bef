"""ONNX Runtime backend: the spec and I/O contract come from the file's ``deblur`` metadata."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from deblur.runtime.backends.base import Backend
from deblur.runtime.ort_options import contract, session
from deblur.train.errors import InputError


class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        self.path, self.device = Path(path), device
        if not self.path.is_file():
            raise InputError("model not found", path, hint="check the path, or export one with deblur-export")
        if importlib.util.find_spec("onnxruntime") is None:
            raise InputError("ONNX Runtime is not installed", path, hint="pip install onnxruntime (or onnxruntime-gpu)")
        self.session = session(self.path, device, threads)
        meta = contract(self.session, self.path)
        self.spec = {**meta["spec"], "pad_multiple": meta["pad_multiple"], "min_size": meta.get("min_size", 8)}
        self.static_hw = tuple(meta["static_hw"]) if meta.get("static_hw") else None

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["output"], {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]


def load(path: Path, device: str, **options) -> OnnxBackend:
    return OnnxBackend(path, device, threads=options.get("threads"))
