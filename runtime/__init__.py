"""deblur.runtime: ``Deblurrer`` for .pth, .onnx and .engine models; imports without torch.

``Deblurrer`` is imported on first use, so ``import deblur.runtime`` stays cheap and needs
neither torch, ONNX Runtime nor TensorRT.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deblur.runtime.deblurrer import Deblurrer

__all__ = ["Deblurrer"]


def __getattr__(name: str) -> Any:
    if name == "Deblurrer":
        from deblur.runtime.deblurrer import Deblurrer

        return Deblurrer
    raise AttributeError(f"module 'deblur.runtime' has no attribute {name!r}")
