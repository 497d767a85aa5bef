"""Bundle a trained generator as the package's ``default`` model (maintainers, after a training run).

    python docs/bundle_default.py --ckpt runs/default/g.pth

Writes ``train/models/default.safetensors`` (the EMA generator's weights and spec) and
``train/models/default.onnx`` (the ONNX export with the CPU graph rewrites of
``export/onnx_optimize.py``, since the bundled ONNX is what ONNX Runtime runs on the CPU), after
checking the ONNX against PyTorch on the parity photos (the export gate's FP32 bar). Both files are
written atomically. For TensorRT, export from the ``.safetensors`` with ``deblur-export``: the
rewrites only help ONNX Runtime's CPU provider.
"""
from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import onnx

from deblur.export.onnx_export import contract, export_onnx
from deblur.export.onnx_optimize import optimize
from deblur.export.pipeline import load_parity_images
from deblur.runtime import Deblurrer
from deblur.train.checkpoint import load_generator, save_generator
from deblur.train.fileio import atomic_write_bytes
from deblur.train.zoo import MODELS_DIR


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True, help="g.pth or a training checkpoint (its EMA generator)")
    ap.add_argument("--out", type=Path, default=MODELS_DIR)
    a = ap.parse_args()
    model, weights = load_generator(a.ckpt)
    spec = weights.spec
    st = a.out / "default.safetensors"
    save_generator(st, model, spec, {"source": Path(a.ckpt).name})
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "default.onnx"
        sha = hashlib.sha256(st.read_bytes()).hexdigest()
        export_onnx(model, plain, metadata=contract(spec, None, {"checkpoint": st.name, "checkpoint_sha256": sha,
                                                                 "layout": weights.layout}, 17))
        fast = Path(tmp) / "default_cpu.onnx"
        onnx.save(optimize(onnx.load(str(plain))), str(fast))
        worst = 0.0
        with Deblurrer(st, backend="torch") as ref, Deblurrer(fast) as ort:
            for name, rgb in load_parity_images(None):
                x = _x(rgb, ref)
                d = float(np.abs((ref.backend.infer(x) - ort.backend.infer(x)) / 2).max())  # in [0, 1] units
                worst = max(worst, d)
                print(f"parity {name}: max |d| {d:.2e}")
        if worst > 1e-3:
            raise SystemExit(f"ONNX (with rewrites) differs from PyTorch by {worst:.2e} > 1e-3: not bundled")
        atomic_write_bytes(a.out / "default.onnx", fast.read_bytes())
    for p in (st, a.out / "default.onnx"):
        print(f"wrote {p} ({p.stat().st_size / 1e3:.0f} kB, sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]})")
    print(f"spec {spec.name}: ngf {spec.ngf}, {spec.n_blocks} blocks, {spec.n_downsampling} downsamplings")
    return 0


def _x(rgb: np.ndarray, d: Deblurrer) -> np.ndarray:
    from deblur.runtime.frames import preprocess

    return preprocess(rgb, d.backend.multiple, d.backend.min_size, rgb=True)[0]


if __name__ == "__main__":
    raise SystemExit(main())
