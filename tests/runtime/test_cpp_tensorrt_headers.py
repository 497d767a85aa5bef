"""The C++ engine runner against NVIDIA's real TensorRT headers (10.3, the JetPack 6 line, and 11.1), with
-Wall -Wextra -Werror and the headers as system includes (#15 item 6, first step: compile checks; linking
against a stand-in libnvinfer is still to come). Catches an API that one major version renamed or removed,
which the CMake build cannot see here: it skips deblur_trt without a libnvinfer."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEADERS = Path(os.environ.get("DEBLUR_TRT_HEADERS", REPO.parent / "shared" / "third_party" / "tensorrt-include"))
SOURCES = ["runtime/cpp/src/deblurrer.cpp", "runtime/cpp/examples/deblur_infer.cpp"]


def _cuda_include() -> Path | None:
    """A CUDA toolkit include folder with the runtime API and its crt/ headers (the pip wheels lack crt/)."""
    roots = [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    for root in filter(None, roots):
        inc = Path(root) / "include"
        if (inc / "cuda_runtime_api.h").is_file() and (inc / "crt" / "host_defines.h").is_file():
            return inc
    return None


CUDA = _cuda_include()
VERSIONS = sorted(p.name for p in HEADERS.iterdir() if (p / "NvInfer.h").is_file()) if HEADERS.is_dir() else []


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.skipif(CUDA is None, reason="no CUDA toolkit headers (cuda_runtime_api.h with crt/) found")
@pytest.mark.skipif(not VERSIONS, reason=f"TensorRT headers not found at {HEADERS} (set DEBLUR_TRT_HEADERS)")
@pytest.mark.parametrize("version", VERSIONS or ["none"])
@pytest.mark.parametrize("source", SOURCES)
def test_compiles_against_real_tensorrt_headers(version, source):
    cmd = ["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-I", str(REPO / "runtime/cpp/include"),
           "-I", str(REPO / "runtime/cpp/src"), "-isystem", str(HEADERS / version), "-isystem", str(CUDA), str(REPO / source)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"TensorRT {version}: {source}\n{r.stderr[-3000:]}"
