"""One error hierarchy for every deblur tool.

Torch-free on purpose: ``deblur.runtime`` and the CLIs import it on machines without torch.
Every message says what went wrong, which file, and what to do, on one line.
"""
from __future__ import annotations

from pathlib import Path


class DeblurError(Exception):
    """Base of all errors the tools report as one line (exit code ``exit_code``)."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        parts = [self.message]
        if self.path is not None and self.path not in self.message:
            parts[0] = f"{self.path}: {self.message}"
        if self.hint:
            parts.append(self.hint)
        return "; ".join(parts)


class InputError(DeblurError):
    """A user-supplied path or value is unusable (missing folder, empty set, bad size)."""


class ShapeError(DeblurError, ValueError):
    """A tensor or image has a shape the model cannot take."""


class CheckpointError(DeblurError):
    """A checkpoint file cannot be used as a generator."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    pass


class CheckpointEmptyError(CheckpointError):
    pass


class CheckpointTruncatedError(CheckpointError):
    pass


class CheckpointFormatError(CheckpointError):
    """The file is some other kind of file (HTML, ONNX, random bytes, ...)."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle inside would import or call code; refused without running it."""


class CheckpointMismatchError(CheckpointError):
    """Keys or shapes do not match any generator layout we know."""


class WrongModelError(CheckpointError):
    """The file holds a valid model, but not a generator (e.g. the critic)."""
