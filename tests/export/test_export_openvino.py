"""deblur-export --openvino: IR written beside the ONNX, gated with a real OpenVINO runtime, published
atomically with the others (or not at all)."""
import json
import shutil

import cv2
import numpy as np
import pytest

pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'deblur-edge[openvino]')")

from test_export_cli import _flip_weight

from deblur.export.cli import main
from deblur.runtime import Deblurrer
from deblur.runtime.backends import openvino_backend as ovb
from deblur.runtime.contract import read_onnx_contract
from deblur.runtime.zoo import PARITY_IMAGES, resolve_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The bundled model's real weights: on a CPU with native bf16 the IR is also gated at bf16, whose
    8-bit mantissa keeps a trained model within the FP16 bounds (46.8 dB on chelsea with the random-ish
    ``_trained_like`` weights, which would fail the gate there and nowhere else)."""
    work = tmp_path_factory.mktemp("export_ov")
    ckpt = work / "g.safetensors"
    shutil.copyfile(resolve_model("default", "torch"), ckpt)
    rc = main(["--ckpt", str(ckpt), "--openvino", "--workdir", str(work)])
    return rc, work, ckpt


def test_ir_published_and_gated(exported, capsys):
    rc, work, _ = exported
    assert rc == 0
    assert sorted(p.name for p in work.iterdir()) == ["g.bin", "g.onnx", "g.safetensors", "g.xml", "parity.json", "parity.md"]
    arts = {a["artifact"]: a for a in json.loads((work / "parity.json").read_text())["artifacts"]}
    ov = arts["g.xml (fp32)"]
    assert ov["passed"] and ov["precision"] == "fp32" and ov["backend"].startswith("openvino")
    low = ovb.native_low_precision()
    if low:  # gated against the FP16 bounds where the CPU computes it natively
        assert arts[f"g.xml ({ovb.REPORTED[low]})"]["precision"] == "fp16"
    else:
        assert len([a for a in arts if a.startswith("g.xml")]) == 1


def test_ir_runs_in_deblurrer_like_the_onnx(exported):
    _, work, _ = exported
    frame = cv2.imread(str(PARITY_IMAGES / "plate_120x161.png"))
    with Deblurrer(work / "g.xml", threads=1) as ir, Deblurrer(work / "g.onnx", backend="onnxruntime", threads=1) as ref:
        assert ir.backend_name == "openvino" and ir.spec == read_onnx_contract(work / "g.onnx").spec
        assert np.abs(ir(frame).astype(int) - ref(frame).astype(int)).max() <= 1


def test_failed_gate_publishes_no_ir(exported, tmp_path, capsys):
    _, work, ckpt = exported
    bad = tmp_path / "bad.onnx"
    _flip_weight(work / "g.onnx", bad)
    assert main(["--ckpt", str(ckpt), "--onnx", str(bad), "--openvino", "--workdir", str(tmp_path)]) == 3
    assert not list(tmp_path.glob("*.xml")) and not list(tmp_path.glob("*.bin"))
    assert not list(tmp_path.glob(".deblur-export-*"))


def test_an_ir_that_disagrees_blocks_publication(exported, tmp_path, monkeypatch):
    """The gate runs the IR itself: a conversion that went wrong (here: the IR made from a graph with one
    weight flipped, the ONNX itself intact) fails the gate and nothing is published, the good ONNX included."""
    _, work, ckpt = exported
    bad = tmp_path / "src" / "bad.onnx"
    bad.parent.mkdir()
    _flip_weight(work / "g.onnx", bad)
    real_save_ir = ovb.save_ir
    monkeypatch.setattr(ovb, "save_ir", lambda onnx_path, xml, extra=None: real_save_ir(bad, xml, extra))
    out = tmp_path / "out"
    out.mkdir()
    assert main(["--ckpt", str(ckpt), "--openvino", "--workdir", str(out)]) == 3
    assert sorted(p.name for p in out.iterdir()) == ["parity.json", "parity.md"]
    arts = {a["artifact"]: a for a in json.loads((out / "parity.json").read_text())["artifacts"]}
    assert arts["g.onnx"]["passed"] and not arts["g.xml (fp32)"]["passed"]
