"""ONNX Runtime backend: the spec and I/O contract come from the file's own metadata."""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.backends.base import Backend
from deblur.runtime.contract import INPUT_NAME, OUTPUT_NAME, OnnxContract, is_fp16, load_onnx
from deblur.runtime.errors import InputError
from deblur.runtime.onnx_optimize import cpu_rewritten
from deblur.runtime.ort_options import session


class OnnxBackend(Backend):
    """``cpu_rewrites``: on the CPU, run a plain FP32 export with the exact graph rewrites of
    ``runtime/onnx_optimize.py`` applied in memory (1.2-1.6x faster; needs the ``onnx`` package).
    The export gate runs both forms: ``cpu_rewrites=False`` is the file as written."""

    name = "onnxruntime"

    def __init__(self, path: Path, device: str = "cpu", threads: int | None = None, cpu_rewrites: bool = True):
        self.path, self.device = Path(path), device
        if not self.path.is_file():
            raise InputError("model not found", path, hint="check the path, or export one with deblur-export")
        if importlib.util.find_spec("onnxruntime") is None:
            raise InputError("ONNX Runtime is not installed", path, hint="pip install onnxruntime (or onnxruntime-gpu)")
        rewrite = cpu_rewrites and not device.startswith("cuda")
        proto = None
        if importlib.util.find_spec("onnx") is not None:  # the one loader's checks (bad bytes, external data), as everywhere
            proto = load_onnx(self.path, external_data=rewrite)
        rewritten = cpu_rewritten(proto) if rewrite and proto is not None else None
        self.session = session(rewritten[0] if rewritten else self.path, device, threads)
        props = self.session.get_modelmeta().custom_metadata_map
        self.contract = OnnxContract.from_props(props, self.path)
        self.fp16 = is_fp16(props)
        self.precision = "fp16" if self.fp16 else "fp32"
        self.threads = self.session.get_session_options().intra_op_num_threads
        self.rewrites: list[str] = list(rewritten[1] if rewritten else self.contract.graph_rewrites)
        self.spec = self.contract.spec
        self.static_hw = self.contract.static_hw
        used = self.session.get_providers()[0].replace("ExecutionProvider", "").lower()
        self.note = f"{self.path.name}, {used}, {self.threads} threads"
        if self.rewrites:
            self.note += f", rewrites: {'+'.join(self.rewrites)}"

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def close(self) -> None:
        self.session = None  # ORT frees the session's arena with its last reference

    def prepare(self, x: np.ndarray) -> Callable[[], Any]:
        feed = {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}
        return lambda: self.session.run([OUTPUT_NAME], feed)


def load(path: Path, device: str, **options) -> OnnxBackend:
    return OnnxBackend(path, device, threads=options.get("threads"), cpu_rewrites=options.get("cpu_rewrites", True))
