"""The OpenVINO backend with a real OpenVINO runtime: our ONNX read as it is, IR written by save_ir,
parity with ONNX Runtime under the gate's bounds, precision reported as compiled, shapes, errors."""
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'deblur-edge[openvino]')")
pytest.importorskip("onnxruntime")

from deblur.runtime import Deblurrer
from deblur.runtime.backends import openvino_backend as ovb
from deblur.runtime.backends.onnx_backend import OnnxBackend
from deblur.runtime.compare import compare
from deblur.runtime.contract import METADATA_KEY, read_onnx_contract
from deblur.runtime.errors import InputError
from deblur.runtime.images import list_images, read_rgb
from deblur.runtime.prepost import to_float_image, to_tensor
from deblur.runtime.zoo import MODELS_DIR, PARITY_IMAGES

ONNX = MODELS_DIR / "default.onnx"


@pytest.fixture(scope="module")
def ir(tmp_path_factory) -> Path:
    xml = tmp_path_factory.mktemp("ir") / "default.xml"
    ovb.save_ir(ONNX, xml)
    return xml


@pytest.fixture(scope="module")
def photos():
    return [read_rgb(p) for p in list_images(PARITY_IMAGES)]


def _outputs(backend, photos):
    s = backend.spec
    return [to_float_image(backend.infer(to_tensor(p, s.pad_multiple, s.min_size)), *p.shape[:2]) for p in photos]


@pytest.mark.parametrize("source", ["onnx", "ir"])
def test_f32_passes_the_fp32_gate_against_onnxruntime(source, ir, photos):
    """The bundled model on OpenVINO f32, from our ONNX and from IR, within the export gate's FP32 bounds."""
    path = ONNX if source == "onnx" else ir
    with OnnxBackend(ONNX) as ref, ovb.OpenVinoBackend(path, precision="f32") as b:
        assert b.precision == "fp32" and b.spec == ref.spec and b.name == "openvino"
        for r, o in zip(_outputs(ref, photos), _outputs(b, photos), strict=True):
            result = compare("photo", r, o, "fp32")
            assert not result.failures, result
            assert result.max > 0 or source == "ir"  # a different runtime: not the same bits, but inside the bounds


def test_ir_carries_the_contract(ir):
    _, props = ovb.read_model(ir)
    assert METADATA_KEY in props
    with ovb.OpenVinoBackend(ir) as b:
        assert b.contract.spec == read_onnx_contract(ONNX).spec
    onnx = pytest.importorskip("onnx")
    weights = sum(onnx.numpy_helper.to_array(t).nbytes for t in onnx.load(str(ONNX)).graph.initializer if t.data_type == 1)
    assert ir.with_suffix(".bin").stat().st_size >= 0.95 * weights  # FP32 weights, not compressed to FP16


def test_precision_is_what_openvino_compiled(ir):
    """auto is the native low precision or f32; a hint the CPU cannot honour is reported as what ran."""
    native = ovb.native_low_precision()
    with ovb.OpenVinoBackend(ir, precision="auto") as b:
        assert b.precision == {"bf16": "bf16", "f16": "fp16", None: "fp32"}[native]
    with ovb.OpenVinoBackend(ir, precision="bf16") as b:
        assert b.precision == ("bf16" if "BF16" in ovb.cpu_capabilities() else "fp32")
        assert ("not native here" in b.note) == (b.precision != "bf16")


@pytest.mark.skipif(ovb.available() and "BF16" not in ovb.cpu_capabilities(), reason="this CPU has no native bf16 "
                    "(AVX512-BF16/AMX); the f32 twin above runs the same gate")
def test_bf16_passes_the_fp16_gate_and_is_really_bf16(ir, photos):
    """Where the CPU computes bf16: inside the FP16 bounds, and outside the FP32 ones (so it really ran in bf16)."""
    with OnnxBackend(ONNX) as ref, ovb.OpenVinoBackend(ir, precision="bf16") as b:
        results = [compare("p", r, o, "fp16") for r, o in zip(_outputs(ref, photos), _outputs(b, photos), strict=True)]
    assert all(not r.failures for r in results), results
    assert max(r.max for r in results) > 1e-3


def test_any_shape_runs_and_a_frame_gives_the_same_bits_whatever_ran_before(ir):
    """Each shape gets its own compile, the last few kept: the output of a frame does not depend on which
    shapes ran before it or whether its compile was evicted (a recording equals Deblurrer frame by frame)."""
    rng = np.random.default_rng(0)
    shapes = [(64, 64), (32, 48), (128, 96), (48, 48), (48, 80), (64, 64)]  # more than STATIC_COMPILES: evictions
    xs = {hw: rng.uniform(-1, 1, (1, 3, *hw)).astype(np.float32) for hw in shapes}
    with ovb.OpenVinoBackend(ir, threads=1) as a, ovb.OpenVinoBackend(ir, threads=1) as b:
        assert a.threads == 1 and all(h % a.spec.pad_multiple == 0 == w % a.spec.pad_multiple for h, w in shapes)
        first = {hw: a.infer(xs[hw]) for hw in shapes}
        assert len(a._static) == ovb.STATIC_COMPILES
        for hw in reversed(shapes):
            assert first[hw].shape == xs[hw].shape
            assert np.array_equal(b.infer(xs[hw]), first[hw])  # another history, the same bits
            assert np.array_equal(a.infer(xs[hw]), first[hw])


def test_two_threads_at_once_do_not_deadlock(ir):
    """The video pipeline's two workers: a fresh process, two backends built in the main thread, then
    run concurrently from two threads (OpenVINO 2026.4's binding deadlocked here without the guard)."""
    import subprocess
    import sys

    code = f"""
import threading, numpy as np
from deblur.runtime.backends.openvino_backend import OpenVinoBackend
bs = [OpenVinoBackend({str(ir)!r}, threads=1) for _ in range(2)]
x = np.zeros((1, 3, 16, 16), np.float32)
for b in bs:
    b._request_for(x.shape)  # compiled here: both threads then reach their first output read together
go = threading.Barrier(2)
def work(b):
    go.wait()
    for _ in range(20):
        b.infer(x)
ts = [threading.Thread(target=work, args=(b,)) for b in bs]
[t.start() for t in ts]; [t.join() for t in ts]
print("ok")
"""
    for _ in range(5):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_output_is_not_a_view_of_the_request_buffer(ir):
    rng = np.random.default_rng(1)
    with ovb.OpenVinoBackend(ir) as b:
        a = rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
        ya = b.infer(a)
        kept = ya.copy()
        b.infer(-a)
        assert np.array_equal(ya, kept)


def test_deblurrer_with_openvino_matches_onnxruntime_frames(ir):
    frame = cv2.imread(str(PARITY_IMAGES / "srn01_241x319.png"))
    with Deblurrer(ONNX, backend="onnxruntime") as a, Deblurrer(ir) as b, Deblurrer("default", backend="openvino") as c:
        assert b.backend_name == "openvino" and c.backend_name == "openvino"
        assert b.info["precision"] in ("fp32", "bf16", "fp16") and b.info["backend"] == "openvino"
        ya, yb, yc = a(frame), b(frame), c(frame)
    assert yb.shape == frame.shape and yb.dtype == np.uint8
    tol = 1 if b.info["precision"] == "fp32" else 3
    assert np.abs(ya.astype(int) - yb.astype(int)).max() <= tol
    assert np.abs(ya.astype(int) - yc.astype(int)).max() <= tol


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing.xml", "model not found"),
    (lambda d: _write(d / "junk.xml", b"\x00\x01garbage"), "OpenVINO IR weights missing"),
    (lambda d: _write(d / "junk.onnx", b"\x00\x01garbage" * 50), "is not a readable ONNX model"),  # the one ONNX loader
])
def test_bad_files_are_one_clear_error(tmp_path, make, needle):
    path = make(tmp_path)
    with pytest.raises(InputError) as e:
        ovb.OpenVinoBackend(path)
    assert needle in e.value.line() and path.stem in e.value.line()


def test_bad_arguments(ir):
    with pytest.raises(InputError, match="unknown OpenVINO precision"):
        ovb.OpenVinoBackend(ir, precision="int4")
    with pytest.raises(InputError, match="runs on the CPU"):
        ovb.OpenVinoBackend(ir, device="cuda:0")
    with pytest.raises(InputError, match="applies to the openvino and torch backends"):
        Deblurrer(ONNX, backend="onnxruntime", precision="bf16")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
