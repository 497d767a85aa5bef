"""OpenVINO CPU settings for the generator (``runtime/backends/openvino_backend.py``), against ONNX Runtime.

Times, round-robin in one run (one call of each in turn, so a load that comes and goes hits all
alike): ONNX Runtime with the runtime's session options; OpenVINO as the backend runs it (latency
hint, one stream, no pinning) with the dynamic-shape compile and with a static compile for the
size; and the static compile with one setting changed at a time (not cumulative). Median ms and the ratio to ONNX Runtime.

    python benchmarks/openvino_tuning.py [--model g.onnx] [--size 360x640] [--threads 2] [--runs 15]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deblur.runtime.backends.onnx_backend import OnnxBackend
from deblur.runtime.backends.openvino_backend import core, latency_config, resolve_precision
from deblur.runtime.ort_options import default_threads
from deblur.runtime.shapes import parse_hw
from deblur.runtime.timing import round_robin
from deblur.runtime.zoo import MODELS_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=MODELS_DIR / "default.onnx")
    ap.add_argument("--size", default="360x640")
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    h, w = parse_hw(args.size, "--size")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, h, w)).astype(np.float32)
    base = latency_config(args.threads, resolve_precision("auto"))
    variants = {
        "backend's settings, dynamic shapes": (base, False),
        "backend's settings, static compile": (base, True),
        "static, with CPU pinning": ({**base, "ENABLE_CPU_PINNING": True}, True),
        "static, denormals flushed": ({**base, "CPU_DENORMALS_OPTIMIZATION": True}, True),
        "OpenVINO defaults (no hints)": ({}, True),
        "f32 forced": ({**base, "INFERENCE_PRECISION_HINT": "f32"}, True),
    }
    steps = {"onnxruntime (runtime options)": OnnxBackend(args.model, threads=args.threads).prepare(x)}
    for name, (config, static) in variants.items():
        model = core().read_model(str(args.model))
        if static:
            model.reshape([1, 3, h, w])
        request = core().compile_model(model, "CPU", config).create_infer_request()
        feed = {0: x}
        steps[name] = lambda r=request, f=feed: r.infer(f)
    samples = round_robin(steps, args.runs)
    ref = float(np.median(samples["onnxruntime (runtime options)"]))
    print(f"| {args.model.name} {w}x{h}, {args.threads} threads | median ms | vs onnxruntime |")
    print("|---|---:|---:|")
    for name, ms in samples.items():
        print(f"| {name} | {np.median(ms):.1f} | {ref / float(np.median(ms)):.2f}x |")


if __name__ == "__main__":
    main()
