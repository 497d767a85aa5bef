"""Our TensorRT usage against NVIDIA's real Python bindings, 10.x (JetPack 6) and 11.x, without a GPU.

The real ``tensorrt_bindings`` module of each version (``tensorrt-cu12-bindings==10.3.0`` and
``tensorrt-cu13-bindings==11.1.0.106``, installed with ``pip --target`` into ``.venv/trt10`` and
``.venv/trt11``: the README's test command does it) imports in a subprocess against our stand-in
libraries (tests/fakes/nvinfer: every factory returns NULL, as TensorRT does when CUDA cannot start).
Checked there: every ``trt.`` name our sources use exists; the surface of ``tests/fakes/trt_surface.py``
``USED`` (enums with values, properties vs methods, parameter names of every overload) equals the
snapshot the stand-in is built from; and ``trt.Runtime``/``trt.Builder`` fail as our typed error expects.
Without the bindings those tests skip with the command (CI sets DEBLUR_REQUIRE_TRT_BINDINGS=1: fail instead).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import trt_surface
from fakes.tensorrt_standin import FakeTensorRT

REPO = Path(__file__).resolve().parents[2]
BINDINGS = {10: ("tensorrt-cu12-bindings==10.3.0", "10.3.0"), 11: ("tensorrt-cu13-bindings==11.1.0.106", "11.1.0.106")}


@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_standin_claims_nothing_the_real_module_contradicts(version):
    assert trt_surface.standin_problems(FakeTensorRT(version)) == []


def test_standin_check_catches_a_false_claim(monkeypatch):
    """The check can fail: an invented method, a wrong parameter name, and a missing enum are each reported."""
    fake = FakeTensorRT("11.1.0")
    config = next(c for c in fake.standin_classes() if c.REAL == "IBuilderConfig")
    monkeypatch.setattr(config, "set_memory_pool_limit", lambda self, pool, size: None, raising=True)
    monkeypatch.setattr(config, "set_fp16", lambda self: None, raising=False)
    del fake.NetworkDefinitionCreationFlag  # what the old stand-in claimed for TensorRT 11
    problems = "\n".join(trt_surface.standin_problems(fake))
    assert "IBuilderConfig.set_memory_pool_limit" in problems
    assert "IBuilderConfig.set_fp16" in problems
    assert "NetworkDefinitionCreationFlag: stand-in lacks it, TensorRT 11 has" in problems


def test_tensorrt_11_has_no_fp16_flag_but_keeps_the_creation_flag():
    assert "FP16" in FakeTensorRT("10.3.0").BuilderFlag.__members__
    eleven = FakeTensorRT("11.1.0")
    assert "FP16" not in eleven.BuilderFlag.__members__
    assert "STRONGLY_TYPED" in eleven.NetworkDefinitionCreationFlag.__members__


def test_every_trt_name_we_use_is_in_the_snapshot_standin():
    for version in ("10.3.0", "11.1.0"):
        fake = FakeTensorRT(version)
        for name in trt_surface.project_trt_names():
            if name.endswith("?") or name == "trt.__version__":
                continue
            obj = fake
            for part in name.split(".")[1:]:
                obj = getattr(obj, part)


def _bindings(major: int) -> Path:
    folder = trt_surface.bindings_folder(major)
    if not (folder / "tensorrt_bindings").is_dir():
        why = (f"NVIDIA's TensorRT {major} bindings are not installed at {folder}: "
               f".venv/bin/pip install -q --no-deps --target {folder} '{BINDINGS[major][0]}'")
        if os.environ.get("DEBLUR_REQUIRE_TRT_BINDINGS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return folder


SCRIPT = """
import json, sys
from pathlib import Path
sys.path[:0] = [{fakes!r}, {tests!r}]
import build
build.load(build.build({major}, Path({libs!r})))
import tensorrt_bindings as trt
import trt_surface
used = trt_surface.project_trt_names()
fails = {{}}
for cls in ("Runtime", "Builder"):
    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
        def log(self, severity, msg):
            pass
    try:
        getattr(trt, cls)(Logger())
        fails[cls] = None
    except TypeError as e:
        fails[cls] = str(e)
print(json.dumps({{"surface": trt_surface.surface(trt), "used": used, "missing": trt_surface.missing_names(trt, used),
                  "fails": fails}}))
"""


@pytest.mark.parametrize("major", [10, 11])
def test_real_bindings_match_what_we_use(major, tmp_path):
    folder = _bindings(major)
    code = SCRIPT.format(fakes=str(REPO / "tests/fakes/nvinfer"), tests=str(REPO / "tests/fakes"), major=major,
                         libs=str(tmp_path / "lib"))
    env = {**os.environ, "PYTHONPATH": str(folder)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout)
    assert got["surface"]["version"] == BINDINGS[major][1]
    print(f"TensorRT {got['surface']['version']}: checked {len(got['used'])} trt. names: {', '.join(got['used'])}; "
          f"{sum(len(m) for m in got['surface']['classes'].values() if m)} members of "
          f"{len(got['surface']['classes'])} classes; enums {', '.join(got['surface']['enums'])}")
    assert got["missing"] == [], f"our sources use names TensorRT {major} lacks"
    assert got["surface"] == trt_surface.snapshot(major), (
        "the real module differs from tests/fakes/tensorrt_surface.json: regenerate it (python tests/fakes/trt_surface.py "
        "with the bindings importable) and re-run the stand-in tests")
    # What our typed CUDA-cannot-start error (runtime.errors.TensorRTStartError) recognises:
    assert got["fails"] == {"Runtime": "pybind11::init(): factory function returned nullptr",
                            "Builder": "pybind11::init(): factory function returned nullptr"}
