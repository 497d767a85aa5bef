"""Names for bundled models (``default``), resolved to files inside the package. Torch-free."""
from __future__ import annotations

from pathlib import Path

from deblur.train.errors import InputError

MODELS_DIR = Path(__file__).resolve().parent / "models"
BUNDLED = {"default": {"torch": "default.safetensors", "onnxruntime": "default.onnx"}}


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
