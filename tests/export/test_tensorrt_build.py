"""Engine build logic, tested against a stand-in (tests/fakes/tensorrt_standin.py: NOT TensorRT) plus one real-GPU test."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from fakes.tensorrt_standin import FAKE_ENGINE, FakeTensorRT

from deblur.export import tensorrt_build as tb
from deblur.export.tensorrt_build import (
    EngineBuildError,
    Profile,
    build_engine,
    make_profile,
    parse_shape,
    round_shape,
    tensorrt_unavailable_reason,
)
from deblur.runtime.contract import build_command
from deblur.runtime.errors import DeblurError, InputError

FAKE_DEVICE = {"gpu_name": "Fake Orin", "compute_capability": "8.7", "cuda_version": "12.6",
               "driver_version": "CUDA 12.6"}


TRT_REASON = tensorrt_unavailable_reason()
_REAL_DEVICE_INFO = tb.device_info


@pytest.fixture(autouse=True)
def _no_device_probe(request, monkeypatch):
    """build_engine asks cuda-python/torch about the GPU; the stand-in runs have none to ask."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(tb, "device_info", lambda: dict(FAKE_DEVICE))


def _onnx(tmp_path: Path) -> Path:
    p = tmp_path / "g_fp16.onnx"
    p.write_bytes(b"not parsed by the stand-in")
    return p


# ---- shapes and profiles ------------------------------------------------------------------------

def test_parse_shape():
    assert parse_shape("1x3x64x64") == (1, 3, 64, 64)
    assert parse_shape("1X3X720X1280") == (1, 3, 720, 1280)
    for bad in ["", "1x3x64", "1x3x64x64x1", "ax3x64x64", "1x3x-4x64", "1x3x64.5x64"]:
        with pytest.raises(InputError, match="NxCxHxW"):
            parse_shape(bad)


def test_round_shape_warns_with_both_shapes():
    assert round_shape((1, 3, 720, 1280)) == ((1, 3, 720, 1280), None)
    shape, warning = round_shape((1, 3, 1081, 1920), name="--max-shape")
    assert shape == (1, 3, 1084, 1920)
    assert warning == "--max-shape 1x3x1081x1920 rounded up to 1x3x1084x1920: H and W must be multiples of 4"
    assert round_shape((1, 3, 5, 7), multiple=8)[0] == (1, 3, 8, 8)


def test_make_profile_defaults_and_static():
    p, warnings = make_profile()
    assert p == Profile((1, 3, 64, 64), (1, 3, 720, 1280), (1, 3, 1088, 1920)) and warnings == []
    assert p.as_dict() == {"min": [1, 3, 64, 64], "opt": [1, 3, 720, 1280], "max": [1, 3, 1088, 1920]}
    p, warnings = make_profile(static_hw=(720, 1280))
    assert p.min == p.opt == p.max == (1, 3, 720, 1280) and warnings == []


def test_make_profile_rounds_and_reports():
    p, warnings = make_profile(max_shape="1x3x1081x1920", opt_shape=(1, 3, 718, 1280))
    assert p.max == (1, 3, 1084, 1920) and p.opt == (1, 3, 720, 1280)
    assert warnings == ["--opt-shape 1x3x718x1280 rounded up to 1x3x720x1280: H and W must be multiples of 4",
                        "--max-shape 1x3x1081x1920 rounded up to 1x3x1084x1920: H and W must be multiples of 4"]


@pytest.mark.parametrize("kwargs, message", [
    ({"min_shape": "1x3x800x64", "opt_shape": "1x3x720x1280"}, "H must satisfy min <= opt <= max, got 800, 720"),
    ({"opt_shape": "1x3x720x2000"}, "W must satisfy min <= opt <= max, got 64, 2000, 1920"),
    ({"min_shape": "2x3x64x64"}, "N must satisfy min <= opt <= max"),
    ({"max_shape": "1x1x1088x1920"}, "3 channels"),
    ({"min_shape": "0x3x64x64"}, "4 positive sizes"),
    ({"static_hw": (720, 1280), "max_shape": "1x3x720x1280"}, "not both"),
    ({"max_shape": "1x3x100000x100000"}, "at most N 64 and H, W 8192"),  # #17 defect 19: accepted without a bound
    ({"max_shape": "65x3x720x1280"}, "at most N 64 and H, W 8192"),
    ({"static_hw": (720, 9000)}, "at most N 64 and H, W 8192"),
])
def test_make_profile_rejects(kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        make_profile(**kwargs)


def test_build_command():
    assert build_command("out/g_fp16.onnx", True) == "deblur-export --onnx out/g_fp16.onnx --fp16 --require-engine"
    assert build_command(Path("my model.onnx"), False) == "deblur-export --onnx 'my model.onnx' --require-engine"
    dynamic = {"min": [1, 3, 64, 64], "opt": [2, 3, 720, 1280], "max": [2, 3, 1088, 1920]}
    assert build_command("g.onnx", True, dynamic) == ("deblur-export --onnx g.onnx --fp16 --min-shape 1x3x64x64 "
                                                      "--opt-shape 2x3x720x1280 --max-shape 2x3x1088x1920 --require-engine")
    static = Profile((1, 3, 360, 640), (1, 3, 360, 640), (1, 3, 360, 640))
    assert build_command("g.onnx", False, static) == "deblur-export --onnx g.onnx --static 360x640 --require-engine"


def test_unavailable_reason_without_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    assert "TensorRT is not installed" in tensorrt_unavailable_reason()


def test_unavailable_reason_without_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT())  # imports, but is not TensorRT
    monkeypatch.setattr(tb, "_gpu_count", lambda: 0)
    assert tensorrt_unavailable_reason() == "no CUDA GPU visible"
    monkeypatch.setattr(tb, "_gpu_count", lambda: 1)
    assert tensorrt_unavailable_reason() is None


def test_device_info_from_cuda_runtime(monkeypatch):
    """cuda-python's (error, value) tuples, with a stand-in runtime (NOT cuda-python)."""
    prop = SimpleNamespace(name=b"Orin\x00\x00", major=8, minor=7)
    rt = SimpleNamespace(cudaGetDeviceProperties=lambda i: (0, prop), cudaRuntimeGetVersion=lambda: (0, 12060),
                         cudaDriverGetVersion=lambda: (0, 12080), cudaGetDeviceCount=lambda: (100, 0))
    monkeypatch.setattr(tb, "_cuda_runtime", lambda: rt)
    assert _REAL_DEVICE_INFO() == {"gpu_name": "Orin", "compute_capability": "8.7", "cuda_version": "12.6",
                                   "driver_version": "CUDA 12.8"}
    assert tb._gpu_count() == 0  # cudaErrorNoDevice


# ---- build_engine against the stand-in ----------------------------------------------------------

@pytest.mark.parametrize("version, flags", [("10.3.0", 1 << 1), ("11.0.0", 0)])
def test_strongly_typed_network_per_version(tmp_path, version, flags):
    trt = FakeTensorRT(version)
    info = build_engine(_onnx(tmp_path), tmp_path / "g.engine", make_profile()[0], timing_cache=None, trt=trt)
    assert trt.calls.network_flags == [flags]  # 10.x: STRONGLY_TYPED only (no EXPLICIT_BATCH); 11.x: none
    assert trt.calls.flags_set == []  # never FP16, never VERSION_COMPATIBLE / EXCLUDE_LEAN_RUNTIME
    assert trt.calls.flags_cleared == ["VERSION_COMPATIBLE"]
    assert trt.calls.memory_pools == {}
    assert info["tensorrt_version"] == version and info["strongly_typed"] is True
    assert info["gpu_name"] == "Fake Orin" and info["compute_capability"] == "8.7"
    assert info["engine_bytes"] == len(FAKE_ENGINE) and info["build_seconds"] >= 0


def test_profile_shapes_and_workspace_reach_the_builder(tmp_path):
    trt = FakeTensorRT("11.0.0")
    profile, _ = make_profile("1x3x64x64", "1x3x480x640", "1x3x1084x1920")
    info = build_engine(_onnx(tmp_path), tmp_path / "g.engine", profile, timing_cache=None, workspace_gib=1.5,
                        trt=trt)
    assert trt.calls.profiles == [{"name": "input", "min": (1, 3, 64, 64), "opt": (1, 3, 480, 640),
                                   "max": (1, 3, 1084, 1920)}]
    assert trt.calls.memory_pools == {"WORKSPACE": int(1.5 * 2**30)}
    assert info["profile"] == profile.as_dict()


def test_engine_bytes_written_untouched(tmp_path):
    engine = tmp_path / "out" / "g_fp16.engine"
    build_engine(_onnx(tmp_path), engine, make_profile()[0], timing_cache=None, trt=FakeTensorRT())
    assert engine.read_bytes() == FAKE_ENGINE  # no header, byte for byte what TensorRT serialized
    assert sorted(p.name for p in engine.parent.iterdir()) == ["g_fp16.engine"]  # no temp left behind


def test_timing_cache_created_then_loaded(tmp_path):
    cache = tmp_path / "trt.timing"
    trt = FakeTensorRT()
    info = build_engine(_onnx(tmp_path), tmp_path / "g.engine", make_profile()[0], timing_cache=cache, trt=trt)
    assert trt.calls.caches_created == [b""] and trt.calls.cache_set == [(b"", False)]
    assert cache.read_bytes() == b"|timed" and info["timing_cache"] == str(cache)
    trt = FakeTensorRT()
    build_engine(_onnx(tmp_path), tmp_path / "g.engine", make_profile()[0], timing_cache=cache, trt=trt)
    assert trt.calls.cache_set == [(b"|timed", False)]  # loaded, ignore_mismatch=False
    assert cache.read_bytes() == b"|timed|timed"


def test_mismatched_timing_cache_is_replaced(tmp_path, caplog):
    cache = tmp_path / "trt.timing"
    cache.write_bytes(b"from another GPU")
    trt = FakeTensorRT(cache_mismatch=True)
    with caplog.at_level(logging.WARNING, logger="deblur"):
        build_engine(_onnx(tmp_path), tmp_path / "g.engine", make_profile()[0], timing_cache=cache, trt=trt)
    assert trt.calls.cache_set == [(b"from another GPU", False), (b"", False)]
    assert "another GPU or TensorRT version" in caplog.text
    assert cache.read_bytes() == b"|timed"


def test_parser_errors_become_one_error_with_all_messages(tmp_path):
    trt = FakeTensorRT(parser_errors=("Unsupported operator Foo", "Invalid weights for Conv"))
    engine, cache = tmp_path / "g.engine", tmp_path / "trt.timing"
    with pytest.raises(EngineBuildError) as e:
        build_engine(_onnx(tmp_path), engine, make_profile()[0], timing_cache=cache, trt=trt)
    msg = str(e.value)
    assert isinstance(e.value, DeblurError) and "cannot parse the ONNX graph" in msg and "g_fp16.onnx" in msg
    assert "node_0 (Conv): Unsupported operator Foo" in msg and "node_1 (Conv): Invalid weights for Conv" in msg
    assert trt.calls.builds == 0 and not engine.exists() and not cache.exists()


def test_wrong_input_name(tmp_path):
    with pytest.raises(EngineBuildError, match="expected one named 'input'"):
        build_engine(_onnx(tmp_path), tmp_path / "g.engine", make_profile()[0], timing_cache=None,
                     trt=FakeTensorRT(input_name="images"))


def test_failed_build_reports_tensorrt_log_and_writes_nothing(tmp_path):
    engine = tmp_path / "g.engine"
    trt = FakeTensorRT("11.0.0", build_log=("Could not find any implementation for node conv1",
                                            "Out of memory: 2 GiB requested"))
    with pytest.raises(EngineBuildError) as e:
        build_engine(_onnx(tmp_path), engine, make_profile()[0], timing_cache=tmp_path / "trt.timing", trt=trt)
    msg = str(e.value)
    assert "could not build an engine" in msg and "TensorRT 11.0.0" in msg
    assert "[ERROR] Could not find any implementation for node conv1" in msg and "Out of memory" in msg
    assert "fake build started" not in msg  # INFO lines stay in the debug log
    assert list(tmp_path.iterdir()) == [tmp_path / "g_fp16.onnx"]  # no engine, no temp, no cache


# ---- real TensorRT (skips without it) -----------------------------------------------------------

def _tiny_onnx(path: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.ones(4, np.float32), "scale"),
             numpy_helper.from_array(np.zeros(4, np.float32), "bias")]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("InstanceNormalization", ["c", "scale", "bias"], ["output"], epsilon=1e-5)]
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


@pytest.mark.gpu
@pytest.mark.skipif(TRT_REASON is not None, reason=f"real TensorRT engine build: {TRT_REASON}")
def test_real_tensorrt_builds_tiny_engine(tmp_path):
    import tensorrt as trt

    onnx_path, engine, cache = tmp_path / "tiny.onnx", tmp_path / "tiny.engine", tmp_path / "trt.timing"
    _tiny_onnx(onnx_path)
    profile, _ = make_profile("1x3x16x16", "1x3x32x32", "1x3x64x64")
    info = build_engine(onnx_path, engine, profile, timing_cache=cache, workspace_gib=0.5)
    assert info["tensorrt_version"] == trt.__version__ and info["compute_capability"] != "unknown"
    assert cache.stat().st_size > 0
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    loaded = runtime.deserialize_cuda_engine(engine.read_bytes())  # stock loader reads our file as is
    assert loaded is not None and loaded.get_tensor_name(0) == "input"
