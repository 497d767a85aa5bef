"""Inference backends, one module each, imported lazily by file type (``backend_for``)."""
from __future__ import annotations

from pathlib import Path

from deblur.runtime.errors import InputError

SUFFIXES = {".pth": "torch", ".pt": "torch", ".safetensors": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt",
            ".xml": "openvino"}
MODULES = {"torch": "torch_backend", "onnxruntime": "onnx_backend", "tensorrt": "tensorrt_backend",
           "openvino": "openvino_backend"}


def backend_name(path: Path, backend: str | None) -> str:
    """The backend for a model file: given, or chosen from the suffix."""
    if backend is not None:
        if backend not in MODULES:
            raise InputError(f"unknown backend {backend!r}", hint=f"choose one of {', '.join(MODULES)}")
        return backend
    try:
        return SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise InputError(f"cannot tell the backend from the suffix {path.suffix!r}", path,
                         hint=f"use one of {', '.join(SUFFIXES)} or pass backend=") from None


def load_backend(path: Path, backend: str | None, device: str, **options):
    """Import only the backend that is needed (a robot with engines has no torch)."""
    import importlib

    name = backend_name(path, backend)
    module = importlib.import_module(f"deblur.runtime.backends.{MODULES[name]}")
    return module.load(path, device, **options)
