"""The native parts must build and their CPU-side tests pass, even on machines without a GPU.

One CMake build per module: the CUDA kernels (nvcc, one architecture to keep it quick), the CPU-only
manifest/SHA-256 library and its CTest test; the C++ manifest checks must say exactly what Python says.
"""
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from deblur.runtime.contract import (
    EngineManifest,
    ManifestError,
    check_manifest,
    read_manifest,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[2]
needs_cmake = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("ctest") is None,
                                 reason="cmake/ctest not installed")


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, str]:
    build = tmp_path_factory.mktemp("cmake") / "build"
    cfg = subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_CUDA_ARCHITECTURES=87"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    b = subprocess.run(["cmake", "--build", str(build), "-j2"], check=False, capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stdout + b.stderr
    return build, cfg.stdout


@needs_cmake
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cmake_builds_deblur_cuda(build):
    path, cfg = build
    assert "skipping deblur_cuda" not in cfg, "CMake did not find the CUDA compiler"
    assert list(path.glob("libdeblur_cuda.*")), "no deblur_cuda library produced"


@needs_cmake
def test_tensorrt_targets_are_skipped_or_built_with_a_status_line(build):
    path, cfg = build
    if "skipping deblur_trt and deblur_infer" in cfg:
        assert not (path / "deblur_infer").exists()
    else:
        assert "building deblur_trt and deblur_infer" in cfg
        assert (path / "deblur_infer").exists() and list(path.glob("libdeblur_trt.*"))


@needs_cmake
def test_ctest_cpu_tests_pass(build):
    path, _ = build
    r = subprocess.run(["ctest", "--test-dir", str(path), "--output-on-failure"], check=False, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "100% tests passed" in r.stdout and "manifest_sha" in r.stdout


@needs_cmake
@pytest.mark.parametrize("trt,cc,tamper", [("10.3.0.26", "8.7", False), ("10.7.0", "8.7", False),
                                           ("10.3.0", "8.6", False), ("11.0.0", "9.0", True)],
                         ids=["ok", "tensorrt", "gpu", "all-three"])
def test_cpp_manifest_check_says_what_python_says(build, tmp_path, trt, cc, tamper):
    path, _ = build
    engine = tmp_path / "g_fp16.engine"
    data = b"\x00engine bytes\xff" * 10
    engine.write_bytes(data)
    m = EngineManifest(engine_sha256=hashlib.sha256(data).hexdigest(), engine_file=engine.name, tensorrt_version="10.3.0",
                       cuda_version="12.6", driver_version="CUDA 12.6", gpu_name="Orin", compute_capability="8.7",
                       profile={"min": [1, 3, 64, 64], "opt": [1, 3, 720, 1280], "max": [1, 3, 1088, 1920]},
                       precision="fp16", spec={"name": "deblurgan", "pad_multiple": 4}, source_onnx="g_fp16.onnx")
    write_manifest(m, engine)
    if tamper:
        engine.write_bytes(data + b"x")
    try:
        check_manifest(read_manifest(engine), engine, tensorrt_version=trt, compute_capability=cc)
        want = "ok"
    except ManifestError as e:
        want = str(e)
    r = subprocess.run([str(path / "test_manifest_sha"), "--check", str(engine), trt, cc], check=False,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want
