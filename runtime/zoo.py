"""The files this package ships: bundled models (``default``, ``pico``) and the parity photos. Torch-free.

``default`` is the model to use; ``pico`` is the previous default (``deblurgan-pico``), kept so that
a new default can be timed and scored beside it in the same run, and for users who pinned it.
"""
from __future__ import annotations

from pathlib import Path

from deblur.runtime.errors import InputError

MODELS_DIR = Path(__file__).resolve().parent / "models"
PARITY_IMAGES = Path(__file__).resolve().parent / "parity_images"  # real photos for the gate and deblur-bench
BUNDLED = {name: {"torch": f"{name}.safetensors", "onnxruntime": f"{name}.onnx", "openvino": f"{name}.onnx"}
           for name in ("default", "pico")}
BUNDLED_HINT = "a bundled name (" + ", ".join(map(repr, BUNDLED)) + ")"  # for help texts and 'not found' hints


def resolve_model(name_or_path: str | Path, backend: str = "torch") -> Path:
    """``default`` (or another bundled name) becomes the packaged file for ``backend``; else a path."""
    key = str(name_or_path)
    if key not in BUNDLED:
        return Path(name_or_path)
    files = BUNDLED[key]
    path = MODELS_DIR / files.get(backend, files["torch"])
    if not path.exists():
        raise InputError(
            f"the bundled model {key!r} is not in this install ({path} missing)",
            hint="pass a checkpoint with --model, or reinstall deblur-edge",
        )
    return path
