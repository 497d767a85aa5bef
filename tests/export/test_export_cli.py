"""deblur-export end to end on CPU: real ONNX Runtime sessions, real photos, a real parity gate."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from deblur.export.cli import main
from deblur.runtime.contract import read_onnx_contract
from deblur.runtime.fileio import sha256_file
from deblur.runtime.ort_options import session as ort_session
from deblur.runtime.spec import ModelSpec
from deblur.train.checkpoint import save_generator
from deblur.train.networks import Generator

SPEC = ModelSpec("t", ngf=8, n_blocks=2)


def _trained_like(spec=SPEC, seed=0):
    """Random init scaled so the residual is not tiny: parity must hold on a non-trivial output."""
    torch.manual_seed(seed)
    g = Generator(spec)
    with torch.no_grad():
        for p in g.parameters():
            p.mul_(3.0)
    return g


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    work = tmp_path_factory.mktemp("export")
    ckpt = save_generator(work / "g.pth", _trained_like(), SPEC)
    rc = main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(work)])
    return rc, work, ckpt


def test_export_end_to_end(exported, capsys):
    rc, work, _ = exported
    assert rc == 0
    names = sorted(p.name for p in work.iterdir())
    assert names == ["g.onnx", "g.pth", "g_fp16.onnx", "parity.json", "parity.md"], names  # no temp folder left
    report = json.loads((work / "parity.json").read_text())
    assert report["passed"] is True and report["engine_skipped"]
    arts = {a["artifact"]: a for a in report["artifacts"]}
    assert arts["g.onnx"]["passed"] and arts["g_fp16.onnx"]["passed"]
    assert arts["g.onnx + CPU rewrites (phase_tail)"]["passed"]  # what Deblurrer runs on a CPU is gated too
    assert any("half() proxy" in k for k in arts)
    sizes = {r["size"] for r in arts["g.onnx"]["images"]}
    assert {"319x241", "47x33"} <= sizes  # odd sizes are padded and cropped
    md = (work / "parity.md").read_text()
    assert "p99.9" in md and "srn01_241x319.png" in md


def test_metadata_round_trip(exported):
    _, work, ckpt = exported
    c = read_onnx_contract(work / "g.onnx")
    meta = json.loads(c.to_json())  # what the file holds, as other tools (C++, Netron) see it
    assert c.spec.ngf == 8 and meta["spec"]["pad_multiple"] == 4 and meta["input"]["color_order"] == "RGB"
    assert meta["input"]["range"] == [-1.0, 1.0] and meta["dynamic"] is True and c.static_hw is None
    assert c.source["checkpoint_sha256"] == sha256_file(ckpt)
    assert c.exporter["opset"] == "17"
    proto = onnx.load(str(work / "g.onnx"))
    assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in proto.graph.initializer)
    ops = {n.op_type for n in proto.graph.node}
    assert "InstanceNormalization" in ops and "Dropout" not in ops
    fp16 = onnx.load(str(work / "g_fp16.onnx"))
    assert {p.key for p in fp16.metadata_props} >= {"deblur", "deblur.fp16"}
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 36, 52), (1, 3, 128, 20)])
def test_dynamic_shapes_one_onnx(exported, shape):
    _, work, ckpt = exported
    from deblur.train.checkpoint import load_generator

    model, _ = load_generator(ckpt)
    x = torch.rand(*shape) * 2 - 1
    ref = model(x).detach().numpy()
    out = ort_session(work / "g.onnx").run(["output"], {"input": x.numpy()})[0]
    assert out.shape == shape
    np.testing.assert_allclose(out, ref, atol=2e-4, rtol=1e-3)


def test_authors_2018_layout_exports(tmp_path, authors_generator):
    torch.manual_seed(2)
    state = {"module." + k: v for k, v in authors_generator(ngf=8, n_blocks=2, track=True).state_dict().items()}
    torch.save(state, tmp_path / "latest_net_G.pth")
    assert main(["--ckpt", str(tmp_path / "latest_net_G.pth"), "--workdir", str(tmp_path / "w")]) == 0
    layout = read_onnx_contract(tmp_path / "w" / "latest_net_G.onnx").source["layout"]
    assert "authors' 2018" in layout and "module." in layout


def _flip_weight(src, dst):
    model = onnx.load(str(src))
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4)
    w = numpy_helper.to_array(init).copy()
    w.flat[0] = -w.flat[0] * 50.0  # one weight, wrong sign and scale
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(dst))
    return init.name


def test_gate_refuses_a_corrupted_graph(exported, tmp_path, capsys):
    _, work, ckpt = exported
    bad = tmp_path / "bad.onnx"
    _flip_weight(work / "g.onnx", bad)
    rc = main(["--ckpt", str(ckpt), "--onnx", str(bad), "--fp16", "--workdir", str(tmp_path), "--debug-parity"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3
    assert not (tmp_path / "bad_fp16.onnx").exists()  # nothing published
    assert not list(tmp_path.glob(".deblur-export-*"))
    line = err[-1]
    assert "parity gate failed: bad.onnx" in line and ".png" in line and ("|d|" in line or "PSNR" in line)
    assert "first divergence at node" in line
    report = json.loads((tmp_path / "parity.json").read_text())
    assert report["passed"] is False and "bad.onnx" in report["first_failure"]


def test_external_data_outside_folder_is_refused(exported, tmp_path, capsys):
    _, work, _ = exported
    model = onnx.load(str(work / "g.onnx"))
    init = model.graph.initializer[0]
    init.data_location = onnx.TensorProto.EXTERNAL
    entry = init.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    init.ClearField("raw_data")
    evil = tmp_path / "evil.onnx"
    onnx.save(model, str(evil))
    assert main(["--onnx", str(evil), "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside the model's folder" in err[0]


def test_bad_inputs_exit_2_one_line(exported, tmp_path, capsys):
    _, work, ckpt = exported
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    html = tmp_path / "page.pth"
    html.write_bytes(b"<!DOCTYPE html><html></html>")
    cases = [
        ["--ckpt", str(ckpt), "--workdir", str(blocker / "sub")],
        ["--ckpt", str(html), "--workdir", str(tmp_path)],
        ["--ckpt", str(tmp_path / "missing.pth")],
        ["--ckpt", str(ckpt), "--static", "big", "--workdir", str(tmp_path)],
        ["--ckpt", str(ckpt), "--min-shape", "1x3x64", "--workdir", str(tmp_path)],
        [],
    ]
    for args in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deblur-export: error:"), (args, err)


def test_require_engine_without_tensorrt(exported, tmp_path, capsys):
    from deblur.export.tensorrt_build import tensorrt_unavailable_reason

    if tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are present: the refusal path does not apply")
    _, _, ckpt = exported
    assert main(["--ckpt", str(ckpt), "--require-engine", "--workdir", str(tmp_path)]) == 4
    assert not list(tmp_path.iterdir())


def test_static_shape_rounds_up_with_warning(exported, tmp_path, capsys):
    _, _, ckpt = exported
    assert main(["--ckpt", str(ckpt), "--static", "66x98", "--workdir", str(tmp_path)]) == 0
    assert "rounded up to 68x100" in capsys.readouterr().err
    assert read_onnx_contract(tmp_path / "g.onnx").static_hw == (68, 100)


def test_sigkill_mid_export_leaves_no_final_file(tmp_path):
    ckpt = save_generator(tmp_path / "big.pth", _trained_like(ModelSpec("b", ngf=32, n_blocks=6)), ModelSpec("b", ngf=32, n_blocks=6))
    work = tmp_path / "w"
    work.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "deblur.export.cli", "--ckpt", str(ckpt), "--fp16", "--workdir", str(work)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(work.glob(".deblur-export-*/*.onnx")):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    finals = [f.name for f in work.iterdir() if not f.name.startswith(".")]
    assert finals == [], finals


def use_tensorrt_standin(monkeypatch) -> None:
    """The engine stage on CPU: ``fakes.tensorrt_standin`` builds placeholder bytes (NOT TensorRT), and the
    "engine" runs as the ONNX graph it was built from on ONNX Runtime."""
    from fakes import tensorrt_standin as fake_tensorrt

    from deblur.export import pipeline, tensorrt_build
    from deblur.runtime.backends.onnx_backend import OnnxBackend

    sources = []
    real_build = tensorrt_build.build_engine

    def build(onnx_path, engine_path, profile, **kw):
        sources.append(onnx_path)
        return real_build(onnx_path, engine_path, profile, trt=fake_tensorrt.FakeTensorRT("10.3.0"), **kw)

    monkeypatch.setattr(tensorrt_build, "tensorrt_unavailable_reason", lambda: None)
    monkeypatch.setattr(tensorrt_build, "build_engine", build)
    monkeypatch.setattr(pipeline, "open_engine", lambda path, device: OnnxBackend(sources[-1], cpu_rewrites=False))


def test_engine_stage_publishes_engine_and_manifest_with_stand_in(exported, tmp_path, monkeypatch):
    """The pipeline's engine path (build, parity, publish, manifest) on CPU.

    NOT TensorRT: ``fakes.tensorrt_standin`` builds placeholder bytes, and the "engine" is executed as the
    ONNX graph it was built from on ONNX Runtime. What this checks is the pipeline's logic; real
    engines are checked by the GPU tests, which skip here.
    """
    from fakes import tensorrt_standin as fake_tensorrt

    from deblur.runtime.contract import check_manifest, read_manifest

    _, work, ckpt = exported
    use_tensorrt_standin(monkeypatch)
    assert main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(tmp_path), "--require-engine"]) == 0
    engine = tmp_path / "g_fp16.engine"
    assert engine.read_bytes() == fake_tensorrt.FAKE_ENGINE  # written untouched, no header
    m = read_manifest(engine)
    assert m.precision == "fp16" and m.source_onnx == "g_fp16.onnx"
    assert m.source_onnx_sha256 == sha256_file(tmp_path / "g_fp16.onnx")
    assert m.profile == {"min": [1, 3, 64, 64], "opt": [1, 3, 720, 1280], "max": [1, 3, 1088, 1920]}
    assert any(a["artifact"] == "g_fp16.engine" and a["passed"] for a in m.parity["artifacts"])  # the gate's real results
    check_manifest(m, engine, tensorrt_version=m.tensorrt_version, compute_capability=m.compute_capability)
    report = json.loads((tmp_path / "parity.json").read_text())
    assert any(a["artifact"] == "g_fp16.engine" and a["passed"] for a in report["artifacts"])
    assert (tmp_path / "g.timing.cache").is_file()
