"""Build a TensorRT engine from a strongly typed ONNX graph (TensorRT 10.x and 11.x).

Precision lives in the graph (FP16 made by the converter, InstanceNorm kept FP32): TensorRT 11 has
no FP16 builder flag, and on TensorRT 10 the STRONGLY_TYPED network flag makes it obey the graph the
same way. No version- or hardware-compatibility flags: engines are built on the device that runs
them, and the manifest beside the engine records what that was.

``tensorrt`` and ``cuda`` are imported only inside functions; importing this module is cheap.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deblur.runtime.backends.tensorrt_engine import collecting_logger, start
from deblur.runtime.errors import EngineBuildError, InputError
from deblur.runtime.fileio import atomic_path, atomic_write_bytes

Shape = tuple[int, int, int, int]
INPUT_NAME = "input"
DEFAULT_MIN: Shape = (1, 3, 64, 64)
DEFAULT_OPT: Shape = (1, 3, 720, 1280)
DEFAULT_MAX: Shape = (1, 3, 1088, 1920)
_LOG = logging.getLogger("deblur")


@dataclass(frozen=True)
class Profile:
    """One optimization profile for the input tensor: shapes NCHW."""

    min: Shape
    opt: Shape
    max: Shape

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def _fmt(shape: Shape) -> str:
    return "x".join(map(str, shape))


def parse_shape(text: str) -> Shape:
    """``"1x3x64x64"`` -> ``(1, 3, 64, 64)``."""
    if not re.fullmatch(r"\s*\d+(\s*[xX,]\s*\d+){3}\s*", str(text)):
        raise InputError(f"bad shape {text!r}: expected NxCxHxW, e.g. 1x3x720x1280")
    n, c, h, w = (int(v) for v in re.split(r"[xX,]", str(text).replace(" ", "")))
    return n, c, h, w


def round_shape(shape: Shape, multiple: int = 4, name: str = "shape") -> tuple[Shape, str | None]:
    """Round H and W up to ``multiple`` (the generator's stride); say so when it changed anything."""
    n, c, h, w = shape
    rounded = (n, c, -(-h // multiple) * multiple, -(-w // multiple) * multiple)
    if rounded == tuple(shape):
        return rounded, None
    return rounded, (f"{name} {_fmt(shape)} rounded up to {_fmt(rounded)}: "
                     f"H and W must be multiples of {multiple}")


MAX_BATCH, MAX_SIDE = 64, 8192  # an 8K frame; larger inputs are tiled by the runtime


def make_profile(min_shape: Shape | str | None = None, opt_shape: Shape | str | None = None,
                 max_shape: Shape | str | None = None, static_hw: tuple[int, int] | None = None,
                 multiple: int = 4, min_size: int = 0) -> tuple[Profile, list[str]]:
    """Validated min/opt/max, H and W rounded up to the spec's ``multiple`` and at least its
    ``min_size``; returns the warnings for any shape that was rounded up."""
    if static_hw is not None:
        if min_shape or opt_shape or max_shape:
            raise InputError("give either a static H and W or min/opt/max shapes, not both")
        shapes = {"--static": (1, 3, *static_hw)}
    else:
        shapes = {"--min-shape": min_shape or DEFAULT_MIN, "--opt-shape": opt_shape or DEFAULT_OPT,
                  "--max-shape": max_shape or DEFAULT_MAX}
    out: dict[str, Shape] = {}
    warnings: list[str] = []
    for name, s in shapes.items():
        s = parse_shape(s) if isinstance(s, str) else tuple(int(v) for v in s)
        if len(s) != 4 or any(v < 1 for v in s):
            raise InputError(f"{name} {s}: expected 4 positive sizes NxCxHxW")
        if s[1] != 3:
            raise InputError(f"{name} {_fmt(s)}: the generator takes 3 channels (RGB), got {s[1]}")
        if min(s[2:]) < min_size:
            raise InputError(f"{name} {_fmt(s)}: H and W must be at least {min_size} for this model")
        if s[0] > MAX_BATCH or max(s[2:]) > MAX_SIDE:
            raise InputError(f"{name} {_fmt(s)}: at most N {MAX_BATCH} and H, W {MAX_SIDE} (beyond that an engine's "
                             "activations need tens of GB)", hint="Deblurrer tiles larger frames; keep the profile at the camera's size")
        out[name], warning = round_shape(s, multiple, name)
        warnings += [warning] if warning else []
    if static_hw is not None:
        return Profile(out["--static"], out["--static"], out["--static"]), warnings
    lo, mid, hi = out["--min-shape"], out["--opt-shape"], out["--max-shape"]
    for axis, a, b, c in zip("NCHW", lo, mid, hi, strict=True):
        if not a <= b <= c:
            raise InputError(f"profile {axis} must satisfy min <= opt <= max, got {a}, {b}, {c} "
                             f"(min {_fmt(lo)}, opt {_fmt(mid)}, max {_fmt(hi)})")
    return Profile(lo, mid, hi), warnings


def _cuda_runtime() -> Any | None:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # older cuda-python
        except ImportError:
            return None
    return runtime


def _gpu_count() -> int | None:
    """Visible CUDA GPUs, or None when neither cuda-python nor torch can tell."""
    rt = _cuda_runtime()
    if rt is not None:
        err, n = rt.cudaGetDeviceCount()
        return n if int(err) == 0 else 0
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def tensorrt_unavailable_reason() -> str | None:
    """None when an engine can be built here, else why not (for skips and CLI messages)."""
    try:
        import tensorrt  # noqa: F401
    except Exception:  # ImportError, or OSError when libnvinfer is missing
        return "TensorRT is not installed (pip install tensorrt needs NVIDIA's index / JetPack ships it)"
    n = _gpu_count()
    if n is None:
        return "cannot check for a CUDA GPU: install cuda-python (pip install 'deblur-edge[trt]')"
    return None if n > 0 else "no CUDA GPU visible"


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"  # 12060 -> "12.6"


def device_info() -> dict[str, str]:
    """GPU 0 name, compute capability, CUDA runtime and driver (max CUDA it supports) versions."""
    info = {"gpu_name": "unknown", "compute_capability": "unknown", "cuda_version": "unknown",
            "driver_version": "unknown"}
    rt = _cuda_runtime()
    if rt is not None:
        err, prop = rt.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = prop.name
            info["gpu_name"] = (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).strip("\x00 ")
            info["compute_capability"] = f"{prop.major}.{prop.minor}"
        err, v = rt.cudaRuntimeGetVersion()
        info["cuda_version"] = _version(v) if int(err) == 0 else "unknown"
        err, v = rt.cudaDriverGetVersion()
        info["driver_version"] = f"CUDA {_version(v)}" if int(err) == 0 else "unknown"
        return info
    try:
        import torch
    except ImportError:
        return info
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        info.update(gpu_name=torch.cuda.get_device_name(0), compute_capability=f"{major}.{minor}",
                    cuda_version=str(torch.version.cuda))
    return info


def _parser_error(err: Any) -> str:
    try:
        node = err.node_name() or (f"node {err.node()}" if err.node() >= 0 else "")
        return f"{node} ({err.node_operator()}): {err.desc()}" if node else err.desc()
    except AttributeError:
        return str(err)


def build_engine(onnx_path: str | Path, engine_path: str | Path, profile: Profile, *,
                 timing_cache: Path | None, workspace_gib: float | None = None, trt: Any = None,
                 log: logging.Logger = _LOG) -> dict[str, Any]:
    """Parse ``onnx_path`` into a strongly typed network, build, write the engine bytes untouched.

    ``trt`` is the tensorrt module (imported here when None; tests pass a stand-in). Nothing is
    written under ``engine_path`` unless the build succeeds.
    """
    if trt is None:
        import tensorrt as trt
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    version = str(trt.__version__)
    logger = collecting_logger(trt, lambda severity, msg: log.debug("TensorRT [%s] %s", severity, msg))
    builder = start(trt, "Builder", logger, onnx_path)  # NULL from TensorRT (no CUDA) is TensorRTStartError
    # TRT 11: every network is strongly typed (no flag). TRT 10: opt in; EXPLICIT_BATCH is deprecated.
    flags = 0 if int(version.split(".")[0]) >= 11 else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT {version} cannot parse the ONNX graph: {' | '.join(errors) or 'no details'}",
                               path=onnx_path, hint="check the exporter's opset and the FP16 conversion")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if INPUT_NAME not in inputs:
        raise EngineBuildError(f"the ONNX graph's inputs are {inputs}, expected one named {INPUT_NAME!r}",
                               path=onnx_path, hint="re-export it with deblur-export")
    config = builder.create_builder_config()
    # Engines are built where they run: never version- or hardware-compatible, never weakly typed.
    version_compatible = getattr(trt.BuilderFlag, "VERSION_COMPATIBLE", None)
    if version_compatible is not None:
        config.clear_flag(version_compatible)
    if workspace_gib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    p = builder.create_optimization_profile()
    p.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(p)
    _attach_timing_cache(config, timing_cache, log)
    log.info("TensorRT %s: building engine from %s (profile min %s opt %s max %s); "
             "this can take minutes the first time", version, onnx_path.name,
             _fmt(profile.min), _fmt(profile.opt), _fmt(profile.max))
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - t0
    if plan is None:
        said = " | ".join(logger.lines[-20:]) or "TensorRT logged no errors or warnings"
        raise EngineBuildError(f"TensorRT {version} could not build an engine: {said}", path=onnx_path,
                               hint="rerun with --debug for the full TensorRT log")
    with atomic_path(engine_path) as tmp, open(tmp, "wb") as f:
        f.write(memoryview(plan))  # the plan exactly as TensorRT serialized it: no header
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return {"tensorrt_version": version, "build_seconds": round(seconds, 3), "strongly_typed": True,
            "profile": profile.as_dict(), "engine_bytes": engine_path.stat().st_size,
            "timing_cache": None if timing_cache is None else str(timing_cache), **device_info()}


def _attach_timing_cache(config: Any, path: Path | None, log: logging.Logger) -> None:
    """Load ``path`` if present; a cache from another GPU/TensorRT is replaced by a fresh one."""
    if path is None:
        return
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, False):  # ignore_mismatch=False
        if data:
            log.info("timing cache %s loaded (%d bytes)", path, len(data))
        return
    log.warning("timing cache %s was made by another GPU or TensorRT version; starting a fresh one", path)
    config.set_timing_cache(config.create_timing_cache(b""), False)
