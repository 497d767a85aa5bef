"""The engine path's TensorRT logic and its typed errors, with torch blocked, as far as this machine allows.

Against the stand-in (tests/fakes/tensorrt_standin.py, whose surface is checked against NVIDIA's real
bindings): every real failure mode is one typed error naming the file and the fix. Against the real
bindings (where installed, see test_tensorrt_real_api.py): the runtime cannot start CUDA here, which is the
typed TensorRTStartError, and nothing on the way imports torch.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import trt_surface
from fakes.tensorrt_standin import FAKE_ENGINE, EngineIO, FakeTensorRT

from deblur.runtime.backends.tensorrt_engine import collecting_logger, open_engine, start
from deblur.runtime.contract import EngineManifest, write_manifest
from deblur.runtime.errors import (
    EngineLoadError,
    EngineMismatchError,
    ProfileError,
    TensorRTStartError,
)

REPO = Path(__file__).resolve().parents[2]
PROFILE = {"min": [1, 3, 64, 64], "opt": [1, 3, 720, 1280], "max": [1, 3, 1088, 1920]}


def _manifest(**over) -> EngineManifest:
    fields = dict(engine_sha256=hashlib.sha256(FAKE_ENGINE).hexdigest(), engine_file="g_fp16.engine",
                  tensorrt_version="10.3.0", cuda_version="12.6", driver_version="CUDA 12.6", gpu_name="Orin",
                  compute_capability="8.7", profile=PROFILE, precision="fp16",
                  spec={"name": "deblurgan", "pad_multiple": 4}, source_onnx="g_fp16.onnx")
    return EngineManifest(**{**fields, **over})


def _open(tmp_path: Path, trt: FakeTensorRT, **manifest):
    engine = tmp_path / "g_fp16.engine"
    engine.write_bytes(FAKE_ENGINE)
    return open_engine(trt, engine, _manifest(**manifest), FAKE_ENGINE, collecting_logger(trt))


@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_engine_session_runs_and_refuses_host_code(tmp_path, version):
    trt = FakeTensorRT(version)
    s = _open(tmp_path, trt)
    assert (s.input, s.output, s.in_dtype, s.out_dtype) == ("input", "output", "float32", "float32")
    assert s.max_batch == 1 and s.static_hw is None
    assert s.set_shape(1, 360, 640) == (1, 3, 360, 640)
    s.bind(0x1000, 0x2000)
    s.enqueue(7)
    assert trt.calls.input_shapes == [("input", (1, 3, 360, 640))]
    assert trt.calls.addresses == {"input": 0x1000, "output": 0x2000}
    assert trt.calls.executions == [7]
    assert trt.calls.deserialized == [len(FAKE_ENGINE)]


def test_cuda_cannot_start_is_one_typed_line(tmp_path):
    with pytest.raises(TensorRTStartError) as e:
        _open(tmp_path, FakeTensorRT(cuda_fails=True))
    line = e.value.line()
    assert "g_fp16.engine" in line and "could not start CUDA (trt.Runtime returned nullptr)" in line
    assert "deblur-doctor" in line and "\n" not in line
    with pytest.raises(TypeError, match="something else"):  # only TensorRT's own NULL is translated
        start(type("T", (), {"Runtime": staticmethod(lambda lg: (_ for _ in ()).throw(TypeError("something else"))),
                             "__version__": "10.3.0"}), "Runtime", None, "x")


def test_builder_start_failure_is_typed_too(tmp_path):
    from deblur.export.tensorrt_build import build_engine, make_profile

    onnx = tmp_path / "g.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(TensorRTStartError, match=r"trt.Builder returned nullptr"):
        build_engine(onnx, tmp_path / "g.engine", make_profile()[0], timing_cache=None, trt=FakeTensorRT(cuda_fails=True))
    assert not (tmp_path / "g.engine").exists()


def test_deserialisation_failure_says_what_tensorrt_said(tmp_path):
    with pytest.raises(EngineLoadError, match="could not deserialise the engine: .*the plan is not an engine") as e:
        _open(tmp_path, FakeTensorRT(engine=None))
    assert "deblur-export" in e.value.line()


@pytest.mark.parametrize("tensors,said", [
    ((("images", "INPUT", "FLOAT"), ("output", "OUTPUT", "FLOAT")), "inputs images (float32)"),
    ((("input", "INPUT", "HALF"), ("output", "OUTPUT", "FLOAT")), "inputs input (float16)"),
    ((("input", "INPUT", "FLOAT"), ("output", "OUTPUT", "FLOAT"), ("aux", "OUTPUT", "FLOAT")), "outputs output (float32), aux"),
    ((("input", "INPUT", "FLOAT"), ("output", "OUTPUT", "INT8")), "outputs output (int8)"),
], ids=["name", "dtype", "two-outputs", "int8"])
def test_engine_io_must_match_the_manifest(tmp_path, tensors, said):
    with pytest.raises(EngineMismatchError, match="the engine's I/O tensors are") as e:
        _open(tmp_path, FakeTensorRT(engine=EngineIO(tensors=tensors)))
    assert said in e.value.line() and "manifest says inputs input (float32); outputs output (float32)" in e.value.line()


def test_fp16_io_engine_matches_a_manifest_that_says_so(tmp_path):
    tensors = (("input", "INPUT", "HALF"), ("output", "OUTPUT", "HALF"))
    s = _open(tmp_path, FakeTensorRT(engine=EngineIO(tensors=tensors)), io={"input": "float16", "output": "float16"})
    assert (s.in_dtype, s.out_dtype) == ("float16", "float16")


def test_engine_profile_must_match_the_manifest(tmp_path):
    io = EngineIO(profile=((1, 3, 64, 64), (1, 3, 720, 1280), (1, 3, 720, 1280)))
    with pytest.raises(EngineMismatchError, match=r"profile is 1x3x64x64 \.\. 1x3x720x1280, its manifest says"):
        _open(tmp_path, FakeTensorRT(engine=io))


def test_shapes_outside_the_profile_are_refused(tmp_path):
    s = _open(tmp_path, FakeTensorRT())
    with pytest.raises(ProfileError, match="a batch of 2 is above the engine profile's maximum of 1"):
        s.set_shape(2, 360, 640)
    with pytest.raises(ProfileError, match=r"input 1x3x1200x640 is outside the engine profile 1x3x64x64 \.\. 1x3x1088x1920"):
        s.set_shape(1, 1200, 640)
    with pytest.raises(ProfileError, match=r"TensorRT refused the input shape 1x3x360x640"):
        _open(tmp_path, FakeTensorRT(shape_fails=True)).set_shape(1, 360, 640)


BLOCK_TORCH = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
"""

SCRIPT = BLOCK_TORCH + """
import json
from pathlib import Path
sys.path[:0] = [{tests!r}, {nvinfer!r}]
from fakes.tensorrt_standin import FakeTensorRT, FAKE_ENGINE
from deblur.runtime import Deblurrer
from deblur.runtime.backends import tensorrt_backend
from deblur.runtime.backends.tensorrt_engine import collecting_logger, open_engine
from deblur.runtime.contract import read_manifest
from deblur.runtime.errors import DeblurError
engine = Path({engine!r})
said = {{}}
try:
    Deblurrer(engine, device="cuda:0")
except DeblurError as e:
    said["deblurrer"] = e.line()
fake = FakeTensorRT()
s = open_engine(fake, engine, read_manifest(engine), FAKE_ENGINE, collecting_logger(fake))
s.set_shape(1, 368, 640); s.bind(1, 2); s.enqueue(3)
said["standin"] = fake.calls.executions
if {real!r}:
    import build
    build.load(build.build({major}, Path({libs!r})))
    import tensorrt_bindings
    sys.modules["tensorrt"] = tensorrt_bindings
    try:
        tensorrt_backend.TensorRTBackend(engine, "cuda:0")
    except DeblurError as e:
        said["backend"] = e.line()
    try:
        open_engine(tensorrt_bindings, engine, read_manifest(engine), FAKE_ENGINE, collecting_logger(tensorrt_bindings))
    except DeblurError as e:
        said["real"] = type(e).__name__ + ": " + e.line()
said["torch"] = "torch" in sys.modules
print(json.dumps(said))
"""


@pytest.mark.parametrize("major", [10, 11])
def test_engine_path_without_torch(tmp_path, major):
    """torch blocked: the Deblurrer refuses cuda:0 here in one line; the engine session runs on the stand-in;
    with NVIDIA's real bindings, the backend stops at the missing driver and the real trt.Runtime at CUDA."""
    engine = tmp_path / "g_fp16.engine"
    engine.write_bytes(FAKE_ENGINE)
    write_manifest(_manifest(), engine)
    bindings = trt_surface.bindings_folder(major)
    real = (bindings / "tensorrt_bindings").is_dir()
    code = SCRIPT.format(tests=str(REPO / "tests"), nvinfer=str(REPO / "tests/fakes/nvinfer"), engine=str(engine),
                         real=real, major=major, libs=str(tmp_path / "lib"))
    env = {**os.environ, "PYTHONPATH": str(bindings) if real else ""}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    said = json.loads(r.stdout)
    assert said["torch"] is False, "the engine path imported torch"
    assert "no CUDA GPU visible" in said["deblurrer"]
    assert said["standin"] == [3]
    if not real:
        pytest.skip(f"NVIDIA's TensorRT {major} bindings not installed at {bindings} (see test_tensorrt_real_api.py)")
    assert "no NVIDIA driver on this machine" in said["backend"]
    assert said["real"].startswith("TensorRTStartError: ") and "could not start CUDA (trt.Runtime returned nullptr)" in said["real"]


def test_an_output_shape_other_than_the_input_is_refused(tmp_path, monkeypatch):
    trt = FakeTensorRT()
    s = _open(tmp_path, trt)
    monkeypatch.setattr(type(s.context), "get_tensor_shape", lambda self, name: (1, 3, 180, 320))
    with pytest.raises(EngineMismatchError, match=r"output is 1x3x180x320 for input 1x3x360x640"):
        s.set_shape(1, 360, 640)


def test_the_manifest_digest_is_of_the_bytes_tensorrt_gets(tmp_path):
    """The backend reads the plan once: check_manifest hashes those bytes, not the file a second time."""
    from deblur.runtime.contract import check_manifest
    from deblur.runtime.errors import ManifestError

    engine = tmp_path / "g_fp16.engine"
    engine.write_bytes(FAKE_ENGINE)
    check_manifest(_manifest(), engine, tensorrt_version="10.3.0", compute_capability="8.7", plan=FAKE_ENGINE)
    with pytest.raises(ManifestError, match="engine file changed since its manifest was written"):
        check_manifest(_manifest(), engine, tensorrt_version="10.3.0", compute_capability="8.7", plan=FAKE_ENGINE + b"x")
