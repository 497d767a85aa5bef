"""Build the TensorRT library stand-ins (nvinfer_standin.c) for one TensorRT major version.

``build(major, out)`` compiles ``libnvinfer.so.N``, ``libnvinfer_plugin.so.N`` and ``libnvonnxparser.so.N``
(plus unversioned links for the C++ linker) into ``out`` and returns their paths; ``load(paths)`` loads
them globally so that NVIDIA's real ``tensorrt_bindings`` module imports. Never shipped, never installed.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("nvinfer_standin.c")
LIBRARIES = ("nvinfer", "nvinfer_plugin", "nvonnxparser")


def compiler() -> str | None:
    return shutil.which("gcc") or shutil.which("cc")


def build(major: int, out: Path) -> list[Path]:
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler (gcc/cc) to build the TensorRT stand-in libraries")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in LIBRARIES:
        path = out / f"lib{name}.so.{major}"
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", f"-DSTANDIN_MAJOR={major}",
                        f"-Wl,-soname,{path.name}", "-o", str(path), str(SOURCE)], check=True, capture_output=True)
        link = out / f"lib{name}.so"
        link.unlink(missing_ok=True)
        link.symlink_to(path.name)
        paths.append(path)
    return paths


def load(paths: list[Path]) -> None:
    """RTLD_GLOBAL, so the bindings' NEEDED entries resolve to these already-loaded sonames."""
    for path in paths:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
