"""Every error type of every deblur tool, and the one exit-code table.

Torch-free on purpose: ``deblur.runtime`` and the CLIs import it on machines without torch.
Every message says what went wrong, which file, and what to do, on one line; the CLIs print that
line and exit with the error's ``exit_code``:

====  =====================================================================================
code  meaning
====  =====================================================================================
0     done
1     the input was valid but the run failed (a source broke for good, a camera was unplugged,
      an internal error: run again with ``--debug``)
2     bad input: a path, value, file or setting the user can fix (``InputError`` and most types)
3     the export parity gate failed; nothing was published (``ParityError``)
4     ``--require-engine`` but TensorRT or a GPU is missing here (``EngineRequiredError``)
5     training diverged after every rollback (``TrainingDivergedError``)
130   interrupted (Ctrl-C, SIGTERM)
====  =====================================================================================
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


# --------------------------------------------------------------------------------------- runtime


class ManifestError(DeblurError):
    """An engine manifest is missing, unreadable, or does not match the engine or this machine."""


class EngineLoadError(DeblurError):
    """TensorRT could not deserialise or run an engine."""


class TensorRTStartError(EngineLoadError):
    """TensorRT's Builder or Runtime came back empty: CUDA could not start under TensorRT (no GPU visible, a
    driver older than this TensorRT's CUDA, or the GPU out of memory). Real TensorRT raises
    ``TypeError: pybind11::init(): factory function returned nullptr`` for it."""


class EngineMismatchError(ManifestError):
    """The engine's I/O tensors (names, dtypes, count) are not what its manifest and our kernels expect."""


class ProfileError(ShapeError):
    """An input shape outside the engine's optimization profile (TensorRT's set_input_shape refused it,
    or the batch is above the profile's maximum)."""


class CudaDriverError(DeblurError):
    """No usable NVIDIA driver/GPU, or a CUDA driver call failed (the call and CUDA's error name are in the message)."""


class CudaCompileError(DeblurError):
    """NVRTC is missing, or it refused ``prepost.cu``; ``log`` holds NVRTC's own output."""

    def __init__(self, message: str, log: str = "", path: str | Path | None = None, hint: str | None = None):
        self.log = log
        super().__init__(message + (f": {log.strip()}" if log.strip() else ""), path=path, hint=hint)


# ---------------------------------------------------------------------------------------- export


class ExportError(DeblurError):
    """The exporter produced something unusable (external data, a failing ONNX check)."""


class Fp16GraphError(DeblurError):
    """The converted graph is not what the TensorRT build needs (wrong types, unrunnable)."""


class EngineBuildError(DeblurError):
    """TensorRT could not parse the ONNX graph or build an engine from it."""


class ParityError(DeblurError):
    """An artifact differs from the reference beyond the gate's limits; nothing was published."""

    exit_code = 3


class EngineRequiredError(DeblurError):
    """``--require-engine`` was given, but no engine can be built on this machine."""

    exit_code = 4


# -------------------------------------------------------------------------------------- training


class TrainingDivergedError(DeblurError):
    """A loss stayed non-finite through every rollback."""

    exit_code = 5


# ----------------------------------------------------------------------------------------- video


class SourceFailedError(DeblurError):
    """A source that could not be (re)connected or broke for good: exit code 1 (the input was valid)."""

    exit_code = 1


class DeviceGone(DeblurError):
    """The camera device is not there: reported as FAILED, never retried by index."""


class DeviceLost(DeviceGone):
    """The camera went away while streaming (unplugged): the input was valid, so exit code 1."""

    exit_code = 1


class OutputFailedError(DeblurError):
    """An output that was being written broke for good (a stream's server closed it or stopped taking
    data, the disk filled up under a recording): the input was valid, so exit code 1. An output that
    cannot be opened is an ``InputError``."""

    exit_code = 1
