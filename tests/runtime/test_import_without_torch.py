"""``deblur.runtime`` (and the torch-free parts of deblur.train) import on a robot without torch."""
import subprocess
import sys

BLOCK = "import sys\nfor m in ('torch', 'onnxruntime', 'tensorrt', 'safetensors'):\n    sys.modules[m] = None\n"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=60)


def test_runtime_imports_without_torch_onnxruntime_tensorrt():
    r = _run("import deblur.runtime\nfrom deblur.runtime import Deblurrer\nimport deblur.runtime.frames, deblur.runtime.tiling, deblur.runtime.contract\nimport deblur.runtime.errors, deblur.runtime.spec, deblur.train.metrics, deblur.runtime.zoo, deblur.train.psf, deblur.train.shake, deblur.train.blur_io\n"
             "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\nprint('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_block_is_real():
    r = _run("import torch")
    assert r.returncode != 0 and "import of torch halted" in r.stderr
