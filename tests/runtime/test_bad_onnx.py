"""#17 defect 3: one ONNX loader for every tool. Random bytes, a truncated file, a checkpoint renamed .onnx and
external data outside the model's folder were "internal error: DecodeError" (exit 1, no file named) in
deblur-video, deblur-bench and Deblurrer, while deblur-export handled them; now all say it in one line, exit 2."""
import shutil
import subprocess
import sys

import pytest

onnx = pytest.importorskip("onnx")

from deblur.runtime import Deblurrer
from deblur.runtime.errors import InputError
from deblur.runtime.zoo import MODELS_DIR

MODEL = MODELS_DIR / "default.onnx"
CASES = ["random bytes", "truncated", "checkpoint renamed", "external data outside"]


def _make(tmp_path, case):
    path = tmp_path / "m.onnx"
    if case == "random bytes":
        path.write_bytes(bytes(range(256)) * 20)
    elif case == "truncated":
        path.write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 2])
    elif case == "checkpoint renamed":
        shutil.copy(MODELS_DIR / "default.safetensors", path)
    else:
        model = onnx.load(str(MODEL))
        init = model.graph.initializer[0]
        init.data_location = onnx.TensorProto.EXTERNAL
        entry = init.external_data.add()
        entry.key, entry.value = "location", "../../etc/passwd"
        init.ClearField("raw_data")
        onnx.save(model, str(path))
    return path


def _needle(case):
    return "outside the model's folder" if case == "external data outside" else "is not a readable ONNX model"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("backend", [None, "onnxruntime", "openvino"])
def test_deblurrer(tmp_path, case, backend):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO not installed")
    path = _make(tmp_path, case)
    with pytest.raises(InputError, match=_needle(case)) as e:
        Deblurrer(path, backend=backend)
    assert str(path) in e.value.line()


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tool", ["deblur-bench", "deblur-video"])
def test_clis_one_line_exit_2(tmp_path, case, tool):
    path = _make(tmp_path, case)
    args = {"deblur-bench": ["deblur.runtime.bench_cli", "--model", str(path), "--sizes", "64x64", "--no-peak"],
            "deblur-video": ["deblur.video.cli", "--demo", "--headless", "--model", str(path)]}[tool]
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert _needle(case) in last and str(path) in last and "internal error" not in r.stderr
