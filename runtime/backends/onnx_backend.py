"""ONNX Runtime backend: the spec and I/O contract come from the file's ``deblur`` metadata."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from deblur.runtime.backends.base import Backend
from deblur.train.errors import InputError


def session_options(threads: int | None):
    """Tuned options where ``runtime.ort_options`` exists, else ORT's full optimisation."""
    try:
        from deblur.runtime.ort_options import session_options as tuned
    except ImportError:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        return so
    return tuned(threads)


class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputError("ONNX Runtime is not installed", path, hint="pip install onnxruntime (or onnxruntime-gpu)") from None
        self.path, self.device = Path(path), device
        if not self.path.is_file():
            raise InputError("model not found", path, hint="check the path, or export one with deblur-export")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise InputError("ONNX Runtime here has no CUDA provider", path, hint="pip install onnxruntime-gpu, or use device='cpu'")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(device.partition(":")[2] or 0)}))
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads), providers=providers)
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
            raise InputError(f"ONNX Runtime cannot load the model ({str(e).splitlines()[0][:200]})", path,
                             hint="re-export it with deblur-export") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "deblur" not in meta:
            raise InputError("is an ONNX model without deblur-edge metadata", path, hint="export it with deblur-export --ckpt")
        contract = json.loads(meta["deblur"])
        self.spec = {**contract["spec"], "pad_multiple": contract["pad_multiple"], "min_size": contract.get("min_size", 8)}
        self.static_hw = tuple(contract["static_hw"]) if contract.get("static_hw") else None

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(["output"], {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]


def load(path: Path, device: str, **options) -> OnnxBackend:
    return OnnxBackend(path, device, threads=options.get("threads"))
