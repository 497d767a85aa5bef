"""Compile ``prepost.cu`` at run time with NVRTC (cuda-python), so the Python path needs no nvcc.

The same source is compiled by nvcc in the CMake build. Two options matter for correctness:

- ``--fmad=false``: the CPU reference (``deblur.runtime.prepost``) computes ``x * (1/127.5) - 1``
  with two roundings; NVRTC's default contracts it into one FMA, which differs in the last bit for
  158 of the 256 input values and would break bit-exact parity with the CPU path. The way back is
  an explicit ``fmaf(y, 127.5f, 127.5f)`` (one rounding, as the reference), which the flag leaves alone.
- ``cuda_fp16.h`` must be on the include path: NVRTC does not bundle it. It comes from the
  ``nvidia-cuda-runtime`` wheel (``cuda-toolkit[cudart]``), or a system toolkit (``CUDA_HOME``,
  ``/usr/local/cuda``).

Nothing is imported or compiled at import time; results are cached per process.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from deblur.runtime.errors import CudaCompileError

SOURCE = Path(__file__).with_name("prepost.cu")
KERNELS = ("deblur_pre_f32", "deblur_pre_f16", "deblur_post_f32", "deblur_post_f16")
INSTALL_HINT = "pip install 'cuda-python>=12.6' 'cuda-toolkit[nvrtc,cudart]' (match the driver's CUDA major version)"


def kernel_source() -> str:
    """The CUDA source shared by NVRTC and nvcc."""
    return SOURCE.read_text(encoding="utf-8")


def _nvrtc():
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:
        raise CudaCompileError(f"NVRTC is not available ({e})", hint=INSTALL_HINT) from None
    return nvrtc


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library that will compile; its major must not exceed the driver's."""
    nvrtc = _nvrtc()
    err, major, minor = _loaded(nvrtc.nvrtcVersion)()
    _check(nvrtc, err, "nvrtcVersion")
    return major, minor


def supported_archs() -> list[int]:
    """SM numbers this NVRTC can generate code for (e.g. 75, 80, 86, 87, ...)."""
    nvrtc = _nvrtc()
    err, archs = _loaded(nvrtc.nvrtcGetSupportedArchs)()
    _check(nvrtc, err, "nvrtcGetSupportedArchs")
    return list(archs)


def include_dirs() -> list[str]:
    """The directory holding ``cuda_fp16.h``: pip wheels first, then CUDA_HOME/CUDA_PATH, /usr/local/cuda."""
    candidates: list[Path] = []
    try:
        from cuda.pathfinder import find_nvidia_header_directory

        found = find_nvidia_header_directory("cudart")
        if found:
            candidates.append(Path(found))
    except (ImportError, RuntimeError, OSError):  # older cuda-python has no pathfinder: walk the paths below
        pass
    for site in sys.path:
        for sub in ("nvidia/cu13/include", "nvidia/cu12/include", "nvidia/cuda_runtime/include"):
            candidates.append(Path(site) / sub)
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(Path(os.environ[var]) / "include")
    candidates.append(Path("/usr/local/cuda/include"))
    for d in candidates:
        if (d / "cuda_fp16.h").is_file():
            return [str(d)]  # one directory only: never mix headers from two CUDA versions
    return []


def options(arch: str) -> list[str]:
    """NVRTC options for ``arch`` ("compute_87" for PTX, "sm_87" for a CUBIN)."""
    inc = include_dirs()
    if not inc:
        raise CudaCompileError("cuda_fp16.h not found for NVRTC", path=SOURCE,
                               hint=f"{INSTALL_HINT}, or set CUDA_HOME to a CUDA toolkit")
    return [f"--gpu-architecture={arch}", "--std=c++17", "--fmad=false", *[f"--include-path={d}" for d in inc]]


def _loaded(fn):
    """Call NVRTC functions, turning 'libnvrtc not found' into a CudaCompileError."""
    @functools.wraps(fn)
    def call(*args):
        try:
            return fn(*args)
        except (OSError, RuntimeError) as e:  # cuda.pathfinder raises subclasses of these
            raise CudaCompileError(f"cannot load libnvrtc ({e})", hint=INSTALL_HINT) from None
    return call


def _check(nvrtc, err, what: str, log: str = "") -> None:
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, name = nvrtc.nvrtcGetErrorString(err)
        raise CudaCompileError(f"{what} failed ({name.decode()})", log=log, path=SOURCE)


def _compile(arch: str, want_cubin: bool) -> bytes:
    if want_cubin and not arch.startswith("sm_"):
        raise CudaCompileError(f"a CUBIN needs a real architecture such as 'sm_87', got {arch!r}", path=SOURCE)
    nvrtc = _nvrtc()
    opts = [o.encode() for o in options(arch)]
    err, prog = _loaded(nvrtc.nvrtcCreateProgram)(kernel_source().encode(), SOURCE.name.encode(), 0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    try:
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            _check(nvrtc, err, f"NVRTC compile for {arch}", log=_log(nvrtc, prog))
        if want_cubin:
            err, size = nvrtc.nvrtcGetCUBINSize(prog)
            _check(nvrtc, err, f"nvrtcGetCUBINSize for {arch}")
            buf = bytearray(size)
            (err,) = nvrtc.nvrtcGetCUBIN(prog, buf)
        else:
            err, size = nvrtc.nvrtcGetPTXSize(prog)
            _check(nvrtc, err, "nvrtcGetPTXSize")
            buf = bytearray(size)
            (err,) = nvrtc.nvrtcGetPTX(prog, buf)
        _check(nvrtc, err, "reading NVRTC output")
        return bytes(buf)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def _log(nvrtc, prog) -> str:
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS or size <= 1:
        return ""
    buf = bytearray(size)
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return bytes(buf).rstrip(b"\0").decode(errors="replace")


@functools.cache
def compile_ptx(arch: str = "compute_87") -> bytes:
    """PTX text (NUL-terminated, as cuModuleLoadData wants it); the driver JIT-compiles it for newer GPUs."""
    return _compile(arch, want_cubin=False)


@functools.cache
def compile_cubin(arch: str = "sm_87") -> bytes:
    """A CUBIN (ELF) for exactly one GPU architecture; no JIT at load time."""
    return _compile(arch, want_cubin=True)
