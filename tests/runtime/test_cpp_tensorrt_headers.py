"""The C++ engine runner against NVIDIA's real TensorRT headers (10.3, the JetPack 6 line, and 11.1) (#15 item 6).

For each version the CMake project is configured with ``TensorRT_ROOT`` = the real headers plus a stand-in
libnvinfer (tests/fakes/nvinfer: every factory returns NULL, as TensorRT does when CUDA cannot start) and
``DEBLUR_WERROR=ON``, so deblur_trt and deblur_infer are compiled with -Wall -Wextra -Werror (TensorRT's and
CUDA's headers as system includes) and really linked: an API that one major version renamed, removed or
deprecated fails here, not on a robot. The built deblur_infer then runs on this machine (no GPU, usually no
driver) and must stop with one line and exit code 2. The C++ manifest reader and the engine checks deblur::Deblurrer
runs after deserialising (I/O tensor names and dtypes against the manifest's ``io``, the profile) must say word
for word what Python says (contract.read_manifest; tensorrt_engine.open_engine on the TensorRT stand-in).
One build per version (~5 s here: nvcc compiles the kernels for sm_87 only; only the needed targets).
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.nvinfer import build as standin
from fakes.tensorrt_standin import FAKE_ENGINE, EngineIO, FakeTensorRT

from deblur.runtime.backends.tensorrt_engine import collecting_logger, open_engine
from deblur.runtime.contract import EngineManifest, ManifestError, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[2]
HEADERS = Path(os.environ.get("DEBLUR_TRT_HEADERS", REPO.parent / "shared" / "third_party" / "tensorrt-include"))
SOURCES = ["runtime/cpp/src/deblurrer.cpp", "runtime/cpp/examples/deblur_infer.cpp"]
DEFAULT_IO = {"input": "float32", "output": "float32"}


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


def _cannot_build() -> str | None:
    for tool in ("cmake", "nvcc", "g++", "readelf", "ldd"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if standin.compiler() is None:
        return "no C compiler for the TensorRT stand-in"
    return None


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.skipif(CUDA is None, reason="no CUDA toolkit headers (cuda_runtime_api.h with crt/) found")
@pytest.mark.skipif(not VERSIONS, reason=f"TensorRT headers not found at {HEADERS} (set DEBLUR_TRT_HEADERS)")
@pytest.mark.parametrize("version", VERSIONS or ["none"])
@pytest.mark.parametrize("source", SOURCES)
def test_compiles_against_real_tensorrt_headers(version, source):
    """Without CMake or nvcc: the syntax check alone (the build below needs both)."""
    cmd = ["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-I", str(REPO / "runtime/cpp/include"),
           "-I", str(REPO / "runtime/cpp/src"), "-isystem", str(HEADERS / version), "-isystem", str(CUDA), str(REPO / source)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"TensorRT {version}: {source}\n{r.stderr[-3000:]}"


# ------------------------------------------------------------------------ CMake build with a stand-in libnvinfer


@dataclass(frozen=True)
class Built:
    version: str  # "10.3"
    major: int
    root: Path  # TensorRT_ROOT: include -> the real headers, lib -> the stand-ins
    build: Path
    configure_log: str


@pytest.fixture(scope="module", params=VERSIONS or ["none"])
def built(request, tmp_path_factory) -> Built:
    reason = _cannot_build() or (None if VERSIONS else f"TensorRT headers not found at {HEADERS}")
    if reason:
        pytest.skip(reason)
    version = request.param
    major = int(version.split(".")[0])
    root = tmp_path_factory.mktemp(f"tensorrt-{version}")
    standin.build(major, root / "lib")
    (root / "include").symlink_to(HEADERS / version, target_is_directory=True)
    build = root / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    cfg = subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), *generator, f"-DTensorRT_ROOT={root}",
                          "-DCMAKE_CUDA_ARCHITECTURES=87", "-DDEBLUR_WERROR=ON", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    b = subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "deblur_infer", "test_manifest_sha"],
                       check=False, capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, f"TensorRT {version}:\n{b.stdout[-6000:]}{b.stderr[-3000:]}"
    return Built(version, major, root, build, cfg.stdout)


def test_builds_and_links_against_the_tensorrt_standin(built):
    assert f"TensorRT {built.version} found" in built.configure_log
    assert "building deblur_trt and deblur_infer" in built.configure_log
    lib, exe = built.build / "libdeblur_trt.so", built.build / "deblur_infer"
    assert lib.is_file() and exe.is_file()
    needed = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    assert f"[libnvinfer.so.{built.major}]" in needed
    ldd = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, check=True).stdout
    assert f"libnvinfer.so.{built.major} => {built.root / 'lib'}/libnvinfer.so.{built.major}" in ldd, ldd
    assert "not found" not in ldd, ldd


def test_our_sources_use_werror_and_tensorrt_is_a_system_include(built):
    """-Werror on deblur_trt/deblur_infer only works because TensorRT's headers (which warn about their own
    deprecated classes) are -isystem; both must hold in the real compile commands."""
    commands = json.loads((built.build / "compile_commands.json").read_text())
    for source in SOURCES:
        (cmd,) = [c["command"] for c in commands if c["file"] == str(REPO / source)]
        for flag in ("-Wall", "-Wextra", "-Werror"):
            assert flag in cmd, f"{source}: {flag!r} missing from {cmd}"
        assert f"-I{built.root}/include" not in cmd
    (deblurrer,) = [c["command"] for c in commands if c["file"] == str(REPO / SOURCES[0])]
    assert f"-isystem {built.root}/include" in deblurrer  # (deblur_infer does not include TensorRT)


# ------------------------------------------------------------------------ deblur_infer on a machine without a GPU


def _gpu_compute_capability() -> str | None:
    """The first GPU's "9.0", or None when nvidia-smi is missing or sees no GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    r = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], check=False, capture_output=True, text=True)
    lines = r.stdout.split()
    return lines[0] if r.returncode == 0 and lines else None


def _engine_with_manifest(folder: Path, tensorrt_version: str, compute_capability: str, io=None) -> Path:
    engine = folder / "g_fp16.engine"
    data = b"\x00not a real engine\xff" * 10
    engine.write_bytes(data)
    m = EngineManifest(engine_sha256=hashlib.sha256(data).hexdigest(), engine_file=engine.name,
                       tensorrt_version=tensorrt_version, cuda_version="12.6", driver_version="CUDA 12.6", gpu_name="Orin",
                       compute_capability=compute_capability,
                       profile={"min": [1, 3, 64, 64], "opt": [1, 3, 720, 1280], "max": [1, 3, 1088, 1920]},
                       precision="fp16", spec={"name": "deblurgan", "pad_multiple": 4}, source_onnx="g_fp16.onnx")
    path = write_manifest(m, engine)
    if io is not None:  # written by hand, so the test does not depend on which Python release writes `io`
        d = json.loads(path.read_text())
        d["io"] = io
        path.write_text(json.dumps(d, indent=2) + "\n")
    return engine


def _ppm(folder: Path) -> Path:
    p = folder / "in.ppm"
    p.write_bytes(b"P6\n# a comment\n8 6\n255\n" + bytes(range(8 * 6 * 3)))
    return p


def _infer(built: Built, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(built.build / "deblur_infer"), *map(str, args)], check=False, capture_output=True, text=True, timeout=60)


def _one_line_failure(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, f"exit {r.returncode} (negative: killed by a signal)\n{r.stdout}{r.stderr}"
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_deblur_infer_without_a_manifest_says_how_to_rebuild(built, tmp_path):
    engine = tmp_path / "g_fp16.engine"
    engine.write_bytes(b"engine")
    with pytest.raises(ManifestError) as python:
        read_manifest(engine)
    line = _one_line_failure(_infer(built, engine, _ppm(tmp_path), tmp_path / "out.ppm"))
    assert line == f"deblur_infer: {python.value}"  # the C++ runtime says what Python says


def test_deblur_infer_with_a_valid_manifest_stops_on_one_line(built, tmp_path):
    """No GPU: stops at cudaSetDevice, naming the engine and what to check. With a GPU (and a manifest for it): gets
    as far as TensorRT, whose stand-in cannot create a runtime, like real TensorRT without CUDA. Never an abort."""
    cc = _gpu_compute_capability()
    engine = _engine_with_manifest(tmp_path, f"{built.major}.0.0", cc or "8.7")  # the stand-in reports N.0.0
    out = tmp_path / "out.ppm"
    line = _one_line_failure(_infer(built, engine, _ppm(tmp_path), out))
    if cc is None:
        assert re.fullmatch(rf"deblur_infer: {re.escape(str(engine))}: (no NVIDIA driver on this machine|no CUDA GPU "
                            r"visible) \(cudaSetDevice\(0\): cudaError\w+\); TensorRT engines run only on an NVIDIA GPU; "
                            r"check that nvidia-smi lists one.*", line), line
    else:
        assert line == f"deblur_infer: {engine}: TensorRT runtime could not be created"
    assert not out.exists()


def test_deblur_infer_reports_a_bad_input_before_touching_the_gpu(built, tmp_path):
    engine = _engine_with_manifest(tmp_path, f"{built.major}.0.0", "8.7")
    line = _one_line_failure(_infer(built, engine, tmp_path / "missing.ppm", tmp_path / "out.ppm"))
    assert line == f"deblur_infer: {tmp_path / 'missing.ppm'}: cannot open (No such file or directory)"


def test_deblur_infer_refuses_incomplete_arguments_with_its_usage(built, tmp_path):
    engine = tmp_path / "g_fp16.engine"
    for args in ([engine], [engine, "a.ppm", "b.ppm", "--runs"], [engine, "a.ppm", "b.ppm", "--runs", "0"],
                 [engine, "a.ppm", "b.ppm", "--runs", "x"], [engine, "a.ppm", "b.ppm", "extra"]):
        assert _one_line_failure(_infer(built, *args)).startswith("usage: deblur_infer ENGINE IN.ppm OUT.ppm")


# ------------------------------------------------------------------------ the manifest's `io`, C++ and Python


def _manifest_tool(built: Built, *args: str | Path) -> str:
    r = subprocess.run([str(built.build / "test_manifest_sha"), *map(str, args)], check=False, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@pytest.mark.parametrize("io", [None, {"input": "float16", "output": "float16"}, {"output": "float16", "input": "float32"},
                                {"images": "float32", "output": "float16"}],
                         ids=["absent", "fp16", "file-order", "other-names"])
def test_cpp_reads_the_manifest_io_as_python_does(built, tmp_path, io):
    engine = _engine_with_manifest(tmp_path, "10.3.0", "8.7", io=io)
    got = json.loads(_manifest_tool(built, "--io", engine))
    assert list(got.items()) == list(read_manifest(engine).io.items())  # names, dtypes and their order
    assert list(got.items()) == list((io or DEFAULT_IO).items())


@pytest.mark.parametrize("io", [{"input": "float32", "output": "int8"}, {"input": "float32"}, {"input": 32, "output": None},
                                {"": "float32", "output": "float32"}, ["input", 1.5, True]],
                         ids=["int8", "one-tensor", "not-strings", "empty-name", "not-an-object"])
def test_cpp_refuses_a_manifest_io_as_python_does(built, tmp_path, io):
    engine = _engine_with_manifest(tmp_path, "10.3.0", "8.7", io=io)
    with pytest.raises(ManifestError) as python:
        read_manifest(engine)
    assert _manifest_tool(built, "--io", engine) == str(python.value)


FLOAT_IO = (("input", "INPUT", "FLOAT"), ("output", "OUTPUT", "FLOAT"))
PROFILE = ((1, 3, 64, 64), (1, 3, 720, 1280), (1, 3, 1088, 1920))


@pytest.mark.parametrize("io,tensors,profile", [
    (None, FLOAT_IO, PROFILE),
    ({"input": "float16", "output": "float16"}, (("output", "OUTPUT", "HALF"), ("input", "INPUT", "HALF")), PROFILE),
    (None, (("input", "INPUT", "HALF"), ("output", "OUTPUT", "HALF")), PROFILE),
    (None, (("images", "INPUT", "FLOAT"), ("output", "OUTPUT", "FLOAT")), PROFILE),
    (None, (("input", "INPUT", "FLOAT"), ("mask", "INPUT", "FLOAT"), ("output", "OUTPUT", "FLOAT")), PROFILE),
    (None, (("input", "INPUT", "BF16"), ("output", "OUTPUT", "FLOAT")), PROFILE),
    ({"output": "float32", "input": "float32"}, FLOAT_IO, PROFILE),
    (None, FLOAT_IO, ((1, 3, 64, 64), (1, 3, 720, 1280), (1, 3, 720, 1280))),
], ids=["ok", "ok-fp16-outputs-listed-first", "fp16-engine", "other-name", "two-inputs", "bf16", "manifest-order",
        "profile"])
def test_cpp_engine_checks_say_what_python_says(built, tmp_path, io, tensors, profile):
    """deblur::Deblurrer's checks after deserialising (check_engine_io, check_engine_profile) against Python's
    open_engine on the TensorRT stand-in with the same engine I/O: the same verdict, word for word."""
    engine = _engine_with_manifest(tmp_path, "10.3.0", "8.7", io=io)
    trt = FakeTensorRT(engine=EngineIO(tensors=tensors, profile=profile))
    try:
        open_engine(trt, engine, read_manifest(engine), FAKE_ENGINE, collecting_logger(trt))
        want = "ok"
    except ManifestError as e:
        want = str(e)
    spec = ",".join(":".join(t) for t in tensors)
    shapes = ",".join("x".join(map(str, p)) for p in (profile[0], profile[2]))
    assert _manifest_tool(built, "--engine", engine, spec, shapes) == want
