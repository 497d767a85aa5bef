"""Engine manifests: round trip, and the checks that stop an engine from running where it cannot."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deblur.runtime.contract import (
    EngineManifest,
    ManifestError,
    check_manifest,
    manifest_path,
    read_manifest,
    write_manifest,
)
from deblur.runtime.errors import DeblurError, InputError

ENGINE_BYTES = b"\x00engine bytes\xff" * 10

PROFILE = "--min-shape 1x3x64x64 --opt-shape 1x3x720x1280 --max-shape 1x3x1088x1920"  # the rebuild keeps the profile


def _engine(tmp_path: Path, source_onnx: str | None = "g_fp16.onnx") -> tuple[Path, EngineManifest]:
    engine = tmp_path / "g_fp16.engine"
    engine.write_bytes(ENGINE_BYTES)
    m = EngineManifest(engine_sha256=hashlib.sha256(ENGINE_BYTES).hexdigest(), engine_file=engine.name,
                       tensorrt_version="10.3.0", cuda_version="12.6", driver_version="CUDA 12.6",
                       gpu_name="Orin", compute_capability="8.7",
                       profile={"min": [1, 3, 64, 64], "opt": [1, 3, 720, 1280], "max": [1, 3, 1088, 1920]},
                       precision="fp16", spec={"name": "deblurgan", "ngf": 64}, source_onnx=source_onnx,
                       source_onnx_sha256="ab" * 32, parity={"psnr_db": 55.1})
    return engine, m


def test_manifest_path():
    assert manifest_path("out/g_fp16.engine") == Path("out/g_fp16.engine.json")


def test_round_trip(tmp_path):
    engine, m = _engine(tmp_path)
    path = write_manifest(m, engine)
    assert path == tmp_path / "g_fp16.engine.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g_fp16.engine", "g_fp16.engine.json"]  # no temp left
    back = read_manifest(engine)
    assert back == m and back.format_version == 1 and back.created.endswith("+00:00")
    assert json.loads(path.read_text())["profile"]["max"] == [1, 3, 1088, 1920]
    assert engine.read_bytes() == ENGINE_BYTES  # the engine itself is never touched


def test_unknown_keys_are_ignored(tmp_path):
    engine, m = _engine(tmp_path)
    d = json.loads(m.to_json()) | {"added_in_a_later_minor": 1}
    assert EngineManifest.from_json(json.dumps(d)) == m


def test_check_passes(tmp_path):
    engine, m = _engine(tmp_path)
    check_manifest(m, engine, tensorrt_version="10.3.0.26", compute_capability="8.7")  # patch level may differ


def test_check_sha_mismatch(tmp_path):
    engine, m = _engine(tmp_path)
    engine.write_bytes(ENGINE_BYTES + b"x")
    with pytest.raises(ManifestError) as e:
        check_manifest(m, engine, tensorrt_version="10.3.0", compute_capability="8.7")
    msg = str(e.value)
    actual = hashlib.sha256(ENGINE_BYTES + b"x").hexdigest()
    assert "engine file changed" in msg and m.engine_sha256[:12] in msg and actual[:12] in msg
    assert "deblur-export --onnx g_fp16.onnx --fp16 " + PROFILE + " --require-engine" in msg


def test_check_tensorrt_version_mismatch(tmp_path):
    engine, m = _engine(tmp_path)
    with pytest.raises(ManifestError) as e:
        check_manifest(m, engine, tensorrt_version="10.7.0", compute_capability="8.7")
    msg = str(e.value)
    assert "TensorRT 10.3.0 (manifest)" in msg and "this machine has TensorRT 10.7.0" in msg
    assert "only run on the TensorRT version that built them" in msg
    assert "rebuild on this machine: deblur-export --onnx g_fp16.onnx --fp16 " + PROFILE + " --require-engine" in msg
    assert "SHA-256" not in msg and "compute capability" not in msg


def test_check_compute_capability_mismatch(tmp_path):
    engine, m = _engine(tmp_path, source_onnx=None)
    m.precision = "fp32"
    with pytest.raises(ManifestError) as e:
        check_manifest(m, engine, tensorrt_version="10.3.1", compute_capability="8.9")
    msg = str(e.value)
    assert "compute capability 8.7 (Orin, manifest)" in msg and "this GPU is 8.9" in msg
    assert msg.endswith("rebuild on this machine: deblur-export --onnx g_fp16.onnx " + PROFILE + " --require-engine")  # name guessed


def test_check_reports_all_mismatches_at_once(tmp_path):
    engine, m = _engine(tmp_path)
    with pytest.raises(ManifestError, match="TensorRT 10.3.0 .*compute capability 8.7"):
        check_manifest(m, engine, tensorrt_version="11.0.0", compute_capability="9.0")


def test_check_missing_engine(tmp_path):
    engine, m = _engine(tmp_path)
    engine.unlink()
    with pytest.raises(ManifestError, match="engine file not found.*deblur-export --onnx g_fp16.onnx"):
        check_manifest(m, engine, tensorrt_version="10.3.0", compute_capability="8.7")


def test_missing_manifest(tmp_path):
    engine, _ = _engine(tmp_path)
    with pytest.raises(ManifestError) as e:
        read_manifest(engine)
    assert isinstance(e.value, DeblurError)
    assert "no manifest beside the engine" in str(e.value) and "g_fp16.engine.json" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ("{}", "no integer format_version"),
    ('{"format_version": 1, "engine_file": "g.engine"}', "manifest lacks compute_capability, cuda_version"),
    ('{"format_version": 2}', "format_version 2 is newer than this deblur-edge reads"),
])
def test_corrupt_manifest(tmp_path, text, message):
    engine, _ = _engine(tmp_path)
    manifest_path(engine).write_text(text)
    with pytest.raises(ManifestError, match=message) as e:
        read_manifest(engine)
    assert "g_fp16.engine.json" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("field, value, message", [
    ("engine_sha256", "abc", "not a SHA-256"),
    ("profile", {"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64]}, "exactly min, opt and max"),
    ("profile", {"min": [1, 3, 64], "opt": [1, 3, 64, 64], "max": [1, 3, 64, 64]}, "4 positive integers"),
    ("precision", "int8", "precision must be"),
])
def test_invalid_field_values(tmp_path, field, value, message):
    engine, m = _engine(tmp_path)
    d = json.loads(m.to_json()) | {field: value}
    with pytest.raises(ManifestError, match=message):
        EngineManifest.from_json(json.dumps(d), source="x.engine.json")


def test_imports_without_torch_or_tensorrt():
    """Robots import the manifest (and the build module's helpers) with neither torch nor TensorRT."""
    code = ("import sys\nfor m in ('torch', 'tensorrt', 'cuda', 'onnx', 'onnxruntime'):\n    sys.modules[m] = None\n"
            "import deblur.runtime.contract, deblur.export.tensorrt_build as tb\n"
            "print(tb.tensorrt_unavailable_reason())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("TensorRT is not installed"), r.stderr


# ------------------------------------------------------------------------------------ ONNX contract


def test_onnx_contract_round_trips_through_props():
    from deblur.runtime.contract import FP16_KEY, METADATA_KEY, OnnxContract, is_fp16
    from deblur.runtime.spec import get_spec

    c = OnnxContract(get_spec("deblurgan-pico-d3"), (64, 104), {"checkpoint": "g.pth"}, {"opset": "17"}, ("phase_tail",))
    props = c.to_props()
    assert list(props) == [METADATA_KEY] and not is_fp16(props) and is_fp16({**props, FP16_KEY: "{}"})
    back = OnnxContract.from_props(props, "g.onnx")
    assert back == c and back.spec.pad_multiple == 8
    meta = json.loads(props[METADATA_KEY])
    assert meta["spec"]["pad_multiple"] == 8 and meta["spec"]["min_size"] == 16  # derived, for readers without the spec class
    assert meta["input"]["color_order"] == "RGB" and meta["input"]["range"] == [-1.0, 1.0]


@pytest.mark.parametrize("props,expect", [
    ({}, "without deblur-edge metadata"),
    ({"deblur": "{not json"}, "unreadable deblur-edge metadata"),
    ({"deblur": '{"format_version": 1}'}, "unreadable deblur-edge metadata"),
    ({"deblur": '{"format_version": 9, "spec": {"name": "x"}}'}, "newer than this deblur-edge"),
])
def test_onnx_contract_refuses_bad_metadata(props, expect):
    from deblur.runtime.contract import OnnxContract

    with pytest.raises(InputError, match=expect) as e:
        OnnxContract.from_props(props, "m.onnx")
    assert "m.onnx" in str(e.value)


@pytest.mark.parametrize("name,spec,pad,rewrites", [
    ("default", "deblurgan-unet-s", 16, ()),
    ("pico", "deblurgan-pico", 4, ("phase_tail",)),
])
def test_the_bundled_onnx_files_read_with_the_contract(name, spec, pad, rewrites):
    """Both shipped files carry the contract the runtime derives everything from (pad multiple, graph rewrites)."""
    from deblur.runtime.contract import read_onnx_contract
    from deblur.runtime.zoo import MODELS_DIR

    c = read_onnx_contract(MODELS_DIR / f"{name}.onnx")
    assert c.spec.name == spec and c.spec.pad_multiple == pad and c.graph_rewrites == rewrites
