"""The TensorRT side of running an engine, without CUDA memory and without torch: start the runtime,
deserialise, check the engine's I/O tensors against its manifest, set input shapes inside the profile,
bind addresses, enqueue. Each real TensorRT failure becomes one typed error naming the file and the fix.

Kept apart from the CUDA buffers and stream (``tensorrt_backend``) so that every one of these checks runs
on machines without a GPU, against the stand-in whose surface is checked against NVIDIA's real bindings
(tests/fakes/trt_surface.py), and so the C++ runtime has one list of checks to mirror.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deblur.runtime.contract import EngineManifest, rebuild_command
from deblur.runtime.errors import EngineLoadError, EngineMismatchError, ProfileError, TensorRTStartError

NULLPTR = "factory function returned nullptr"  # pybind11's words when TensorRT's factory returns NULL
DTYPES = {"FLOAT": "float32", "HALF": "float16"}  # trt.DataType member -> manifest/numpy name


def collecting_logger(trt: Any, on_message: Any = None) -> Any:
    """A ``trt.ILogger`` that keeps warnings and errors (``lines``), so a failure can say what TensorRT said."""

    class Collect(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity: Any, msg: str) -> None:
            name = getattr(severity, "name", str(severity))
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                self.lines.append(f"[{name}] {msg}")
            if on_message is not None:
                on_message(name, msg)

    return Collect()


def start(trt: Any, factory: str, logger: Any, path: str | Path) -> Any:
    """``trt.Runtime(logger)`` or ``trt.Builder(logger)``; NULL from TensorRT is TensorRTStartError."""
    try:
        return getattr(trt, factory)(logger)
    except TypeError as e:
        if NULLPTR not in str(e):
            raise
        said = " | ".join(getattr(logger, "lines", [])[-3:])
        raise TensorRTStartError(
            f"TensorRT {trt.__version__} could not start CUDA (trt.{factory} returned nullptr)"
            + (f": {said}" if said else ""), path,
            hint="no GPU visible, a driver older than this TensorRT's CUDA, or the GPU is out of memory: "
                 "run deblur-doctor, check nvidia-smi and CUDA_VISIBLE_DEVICES") from None


@dataclass
class EngineSession:
    """One deserialised engine and its execution context, with the manifest's promises checked."""

    trt: Any
    path: Path
    engine: Any
    context: Any
    input: str
    output: str
    in_dtype: str  # "float32" | "float16"
    out_dtype: str
    min_shape: tuple[int, int, int, int]
    max_shape: tuple[int, int, int, int]
    rebuild: str

    @property
    def static_hw(self) -> tuple[int, int] | None:
        return self.min_shape[2:] if self.min_shape[2:] == self.max_shape[2:] else None

    @property
    def max_batch(self) -> int:
        return self.max_shape[0]

    def set_shape(self, n: int, h: int, w: int) -> tuple[int, ...]:
        """Set the input shape; returns the output's. Outside the profile is ProfileError, never ignored."""
        lo, hi = self.min_shape, self.max_shape
        if n > hi[0]:
            raise ProfileError(f"a batch of {n} is above the engine profile's maximum of {hi[0]}", self.path,
                               hint=f"pass at most {hi[0]} frames per call, or rebuild with a larger N in --max-shape")
        if not (lo[0] <= n and lo[2] <= h <= hi[2] and lo[3] <= w <= hi[3]):
            raise ProfileError(f"input {n}x3x{h}x{w} is outside the engine profile {_fmt(lo)} .. {_fmt(hi)}",
                               self.path, hint="enable tiling, or rebuild with a --max-shape that covers it")
        if not self.context.set_input_shape(self.input, (n, 3, h, w)):
            raise ProfileError(f"TensorRT refused the input shape {n}x3x{h}x{w} (profile {_fmt(lo)} .. {_fmt(hi)})",
                               self.path, hint=self.rebuild)
        out = tuple(int(d) for d in self.context.get_tensor_shape(self.output))
        if out != (n, 3, h, w):  # the post kernel reads exactly the input's geometry
            raise EngineMismatchError(f"the engine's output is {_fmt(out)} for input {n}x3x{h}x{w}; a deblur generator "
                                      "keeps the shape", self.path, hint=self.rebuild)
        return out

    def bind(self, input_address: int, output_address: int) -> None:
        for name, address in ((self.input, input_address), (self.output, output_address)):
            if not self.context.set_tensor_address(name, int(address)):
                raise EngineLoadError(f"TensorRT refused the address of tensor {name!r}", self.path)

    def enqueue(self, stream: int) -> None:
        if not self.context.execute_async_v3(int(stream)):
            raise EngineLoadError("TensorRT execute_async_v3 failed", self.path,
                                  hint="rerun with --debug for TensorRT's log; " + self.rebuild)


def _fmt(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(v)) for v in shape)


def open_engine(trt: Any, path: str | Path, manifest: EngineManifest, plan: bytes, logger: Any) -> EngineSession:
    """Deserialise ``plan`` (the bytes the manifest's digest was checked on) and check it against ``manifest``."""
    path = Path(path)
    rebuild = f"rebuild on this machine: {rebuild_command(manifest, path)}"
    runtime = start(trt, "Runtime", logger, path)
    runtime.engine_host_code_allowed = False  # plans with host code run arbitrary code: never from a file
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        said = " | ".join(logger.lines[-5:]) or "TensorRT logged nothing"
        raise EngineLoadError(f"TensorRT {trt.__version__} could not deserialise the engine: {said}", path, hint=rebuild)
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        tensors.append((name, engine.get_tensor_mode(name).name, engine.get_tensor_dtype(name).name))
    ins = [t for t in tensors if t[1] == "INPUT"]
    outs = [t for t in tensors if t[1] == "OUTPUT"]
    want = list(manifest.io.items())
    got = [(n, DTYPES.get(d, d.lower())) for n, _, d in ins + outs]
    if len(ins) != 1 or len(outs) != 1 or got != want:
        raise EngineMismatchError(
            f"the engine's I/O tensors are {_describe(got, len(ins))}, its manifest says "
            f"{_describe(want, 1)}", path, hint=f"the engine and its manifest do not belong together: {rebuild}")
    name = ins[0][0]
    lo, _, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0))
    if [list(lo), list(hi)] != [manifest.profile["min"], manifest.profile["max"]]:
        raise EngineMismatchError(f"the engine's profile is {_fmt(lo)} .. {_fmt(hi)}, its manifest says "
                                  f"{_fmt(manifest.profile['min'])} .. {_fmt(manifest.profile['max'])}", path, hint=rebuild)
    context = engine.create_execution_context()
    if context is None:
        raise EngineLoadError("TensorRT could not create an execution context (GPU memory?)", path,
                              hint="close other GPU programs, or rebuild with a smaller --max-shape")
    return EngineSession(trt, path, engine, context, name, outs[0][0], got[0][1], got[1][1], lo, hi, rebuild)


def _describe(io: list[tuple[str, str]], n_inputs: int) -> str:
    ins = ", ".join(f"{n} ({d})" for n, d in io[:n_inputs]) or "none"
    outs = ", ".join(f"{n} ({d})" for n, d in io[n_inputs:]) or "none"
    return f"inputs {ins}; outputs {outs}"
