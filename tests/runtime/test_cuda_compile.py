"""The CUDA kernels must compile, even on machines without a GPU (nvcc through CMake)."""
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("nvcc") is None or shutil.which("cmake") is None, reason="nvcc or cmake not installed")
def test_cmake_builds_deblur_cuda(tmp_path):
    build = tmp_path / "build"
    cfg = subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_CUDA_ARCHITECTURES=87"],
                         capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    assert "skipping deblur_cuda" not in cfg.stdout, "CMake did not find the CUDA compiler"
    b = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stdout + b.stderr
    assert list(build.glob("libdeblur_cuda.*")), "no deblur_cuda library produced"
