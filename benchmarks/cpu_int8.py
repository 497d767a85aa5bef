"""Why the runtime has no INT8 path on CPUs: ONNX Runtime static INT8 (QDQ) against FP32, speed and parity.

Quantises an ONNX model (default: the bundled one) with ONNX Runtime's static quantiser (QDQ format,
per-channel int8 weights, uint8 activations, MinMax calibration on the bundled parity photos and
``--calib`` photos), then times FP32 and INT8 round-robin in one run at 640x360 and compares both
on the parity photos in [0, 1] (PSNR, max |d|; the export gate wants >= 50 dB for reduced precision).

    python benchmarks/cpu_int8.py [--model g.onnx] [--calib DIR] [--runs 15]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from deblur.runtime.compare import compare
from deblur.runtime.contract import read_onnx_contract
from deblur.runtime.images import list_images, read_rgb
from deblur.runtime.ort_options import session
from deblur.runtime.prepost import to_float_image, to_tensor
from deblur.runtime.timing import round_robin
from deblur.runtime.zoo import MODELS_DIR, PARITY_IMAGES


def _calibration(spec, folders: list[Path], n: int) -> list[np.ndarray]:
    photos = [read_rgb(p) for f in folders for p in list_images(f)][:n]
    return [to_tensor(cv2.resize(p, (320, 192), interpolation=cv2.INTER_AREA), spec.pad_multiple, spec.min_size)
            for p in photos if p is not None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=MODELS_DIR / "default.onnx")
    ap.add_argument("--calib", type=Path, action="append", default=[], help="more calibration photos (folder)")
    ap.add_argument("--calib-count", type=int, default=32)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    spec = read_onnx_contract(args.model).spec
    feeds = _calibration(spec, [PARITY_IMAGES, *args.calib], args.calib_count)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    with tempfile.TemporaryDirectory() as tmp:
        int8 = Path(tmp) / "int8.onnx"
        t0 = time.perf_counter()
        quantize_static(str(args.model), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        print(f"quantised {args.model.name} with {len(feeds)} calibration images in {time.perf_counter() - t0:.1f} s")
        fp32, q = session(args.model), session(int8)
        worst_psnr, worst_max = float("inf"), 0.0
        for p in list_images(PARITY_IMAGES):
            rgb = read_rgb(p)
            x = to_tensor(rgb, spec.pad_multiple, spec.min_size)
            ref = to_float_image(fp32.run(None, {"input": x})[0], *rgb.shape[:2])
            out = to_float_image(q.run(None, {"input": x})[0], *rgb.shape[:2])
            r = compare(p.name, ref, out, "fp16")
            worst_psnr, worst_max = min(worst_psnr, r.psnr), max(worst_max, r.max)
        feed = {"input": np.zeros((1, 3, 360, 640), np.float32)}
        samples = round_robin({"fp32": lambda: fp32.run(None, feed), "int8": lambda: q.run(None, feed)}, args.runs)
    f, i = (float(np.median(samples[k])) for k in ("fp32", "int8"))
    print("| ONNX Runtime | p50 ms 640x360 | vs FP32 | worst PSNR dB vs FP32 (parity photos) | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    print(f"| FP32 | {f:.1f} | 1.00x | ref | - |")
    print(f"| INT8 static QDQ | {i:.1f} | {f / i:.2f}x | {worst_psnr:.1f} | {worst_max:.3f} |")


if __name__ == "__main__":
    main()
