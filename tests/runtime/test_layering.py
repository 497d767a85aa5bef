"""The package layering: ``deblur.runtime`` is the base and imports nothing of ours; ``deblur.video``
imports only the runtime. Each check runs in a fresh interpreter with the forbidden packages blocked."""
from __future__ import annotations

import ast
import subprocess
import sys

# A meta-path finder that refuses the named top-level packages and deblur packages, and records who asked.
BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"layering: import of {{name}} is not allowed here")
        return None
sys.meta_path.insert(0, Block())
"""
HEAVY = ["torch", "onnxruntime", "tensorrt", "openvino", "safetensors", "onnx"]
# the one documented exception: the torch backend opens checkpoints through deblur.train
LAZY_EXCEPTIONS = {"deblur.runtime.backends.torch_backend"}


def _run(blocked: list[str], code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=blocked) + code], capture_output=True, text=True,
                          timeout=120)


def _all_modules(package: str) -> str:
    """Code that imports every module of ``package`` except the lazy exceptions, printing each name."""
    return f"""
import importlib, pkgutil
pkg = importlib.import_module({package!r})
names = [{package!r}]
for m in pkgutil.walk_packages(pkg.__path__, {package!r} + "."):
    if m.name in {sorted(LAZY_EXCEPTIONS)!r}:
        continue
    importlib.import_module(m.name)
    names.append(m.name)
print(len(names), "modules")
ours = sorted(k for k in sys.modules if k.startswith("deblur."))
print("loaded:", ours)
"""


def test_every_runtime_module_imports_without_train_export_or_heavy_packages():
    r = _run(["deblur.train", "deblur.export", "deblur.video", *HEAVY], _all_modules("deblur.runtime"))
    assert r.returncode == 0, r.stderr
    count = int(r.stdout.split()[0])
    assert count >= 20, r.stdout  # the walk really found the modules
    assert "deblur.train" not in r.stdout and "deblur.export" not in r.stdout


def test_every_video_module_imports_with_only_the_runtime():
    r = _run(["deblur.train", "deblur.export", *HEAVY], _all_modules("deblur.video"))
    assert r.returncode == 0, r.stderr


def test_runtime_and_video_load_no_train_module_and_no_torch():
    r = subprocess.run([sys.executable, "-c", "import sys, deblur.runtime, deblur.video\n"
                        "print(sorted(k for k in sys.modules if k.startswith(('deblur', 'torch'))))"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = ast.literal_eval(r.stdout)
    assert not [m for m in loaded if m.startswith(("deblur.train", "deblur.export", "torch"))], loaded


def test_the_blocker_is_real():
    r = _run(["deblur.train"], "import deblur.train.networks")
    assert r.returncode != 0 and "layering: import of deblur.train" in r.stderr
    r = _run(["deblur.train"], "import deblur.runtime.backends.torch_backend as t\nt.load('x.pth', 'cpu')")
    assert r.returncode != 0  # the torch backend's lazy import is the documented exception, and it is really blocked
