"""Bundle a trained generator as one of the package's bundled models (maintainers, after a training run).

    python docs/bundle_default.py --ckpt runs/default/g.pth              # the new ``default``
    python docs/bundle_default.py --ckpt old_default.safetensors --name pico

Builds ``NAME.safetensors`` (the EMA generator's weights and spec) and ``NAME.onnx`` (the
ONNX export with the CPU graph rewrites, since the bundled ONNX is what ONNX Runtime runs on the
CPU) in a temp folder, runs the export's FP32 parity gate on the parity photos (ONNX Runtime
against PyTorch), and only then moves both into ``runtime/models/``. For TensorRT, export from the
``.safetensors`` with ``deblur-export``: the rewrites only help ONNX Runtime's CPU provider.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from deblur.export.onnx_export import export_cpu_onnx
from deblur.export.parity import first_failure, table
from deblur.export.pipeline import Candidate, load_parity_images, run_parity
from deblur.runtime.backends.onnx_backend import OnnxBackend
from deblur.runtime.backends.torch_backend import TorchBackend
from deblur.runtime.fileio import sha256_file
from deblur.runtime.zoo import BUNDLED, MODELS_DIR
from deblur.train.checkpoint import load_generator, save_generator


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True, help="g.pth or a training checkpoint (its EMA generator)")
    ap.add_argument("--name", default="default", choices=sorted(BUNDLED), help="which bundled model to replace")
    ap.add_argument("--out", type=Path, default=MODELS_DIR)
    a = ap.parse_args()
    model, weights = load_generator(a.ckpt)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=a.out, prefix=".bundle-") as tmp:
        st, onnx_path = Path(tmp) / f"{a.name}.safetensors", Path(tmp) / f"{a.name}.onnx"
        save_generator(st, model, weights.spec, {"source": Path(a.ckpt).name})
        sha = sha256_file(st)
        export_cpu_onnx(model, onnx_path, source={
            "checkpoint": st.name, "checkpoint_sha256": sha, "layout": weights.layout})
        gate = Candidate(onnx_path.name, OnnxBackend(onnx_path, cpu_rewrites=False), "fp32", "onnxruntime-cpu")
        results = run_parity(TorchBackend(model), [gate], load_parity_images(None))
        print(table(results))
        if (why := first_failure(results)) is not None:
            raise SystemExit(f"the ONNX export failed the FP32 parity gate, nothing bundled: {why}")
        for p in (st, onnx_path):
            os.replace(p, a.out / p.name)
    for p in (a.out / st.name, a.out / onnx_path.name):
        print(f"wrote {p} ({p.stat().st_size / 1e3:.0f} kB, sha256 {sha256_file(p)[:16]})")
    s = weights.spec
    print(f"spec {s.name} ({s.family}): {s.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
