"""How many multiply-adds per second this CPU reaches at most: dense probes, timed in the same run as
the models (``deblur-bench``), so each backend's achieved GMAC/s can be read as a share of it.

Probes: an FP32 GEMM through NumPy's BLAS (2048^3), and, where OpenVINO is installed, a stack of
four dense 3x3 convolutions (256 -> 256 channels on 64x128; on this 2-core CPU 256 channels reach
about 1.25x the GMAC/s of 64, and 2048^3 GEMMs 1.1x those of 1024^3) compiled at f32 and at the CPU's native low precision (bf16 or f16) if it has one. The
peak of a precision is the best probe of it. A precision the CPU does not compute natively has no
peak (OpenVINO would quietly run it in f32).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from deblur.runtime.timing import time_step

log = logging.getLogger("deblur")

GEMM_N = 2048
CONV_SHAPE = (1, 256, 64, 128)  # the widest 3x3 layers of our specs (the paper's ResBlocks): the most efficient shape here
CONV_LAYERS = 4


def _best_gmacs(step: Callable[[], Any], macs: float, runs: int = 5) -> float:
    """GMAC/s of the fastest of ``runs`` timed calls after one warm-up (a peak: the best, not the median)."""
    return macs / (min(time_step(step, runs, 1)) / 1e3) / 1e9


def gemm_probe() -> dict[str, Any]:
    a = np.random.default_rng(0).standard_normal((GEMM_N, GEMM_N)).astype(np.float32)
    return {"probe": f"NumPy GEMM {GEMM_N}^3", "precision": "fp32", "gmacs": _best_gmacs(lambda: a @ a, GEMM_N**3)}


def conv_probe(precision: str, threads: int) -> dict[str, Any]:
    """The dense-conv stack on OpenVINO's CPU plugin at ``precision`` (f32 | bf16 | f16)."""
    import openvino as ov
    import openvino.opset13 as ops

    from deblur.runtime.backends.openvino_backend import REPORTED, core, latency_config

    rng = np.random.default_rng(0)
    x = ops.parameter(list(CONV_SHAPE), np.float32, name="x")
    y = x
    c = CONV_SHAPE[1]
    for _ in range(CONV_LAYERS):
        w = ops.constant((rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32))
        y = ops.convolution(y, w, [1, 1], [1, 1], [1, 1], [1, 1])
    request = core().compile_model(ov.Model([y], [x]), "CPU", latency_config(threads, precision)).create_infer_request()
    feed = {0: rng.standard_normal(CONV_SHAPE).astype(np.float32)}
    macs = CONV_LAYERS * CONV_SHAPE[2] * CONV_SHAPE[3] * c * c * 9
    return {"probe": f"OpenVINO {CONV_LAYERS}x conv3x3 {c}ch {CONV_SHAPE[3]}x{CONV_SHAPE[2]}", "precision": REPORTED[precision],
            "gmacs": _best_gmacs(lambda: request.infer(feed), macs)}


def probes(threads: int | None = None) -> list[dict[str, Any]]:
    """Every probe this install can run with ``threads`` (None: the backends' default), logged as it goes."""
    from deblur.runtime.backends import openvino_backend as ovb
    from deblur.runtime.errors import InputError
    from deblur.runtime.ort_options import default_threads

    rows = [gemm_probe()] if threads is None else []  # NumPy's BLAS runs on every core: a peak for the default only
    if ovb.available():
        try:
            for precision in ("f32", ovb.native_low_precision()):
                if precision:
                    rows.append(conv_probe(precision, threads or default_threads()))
        except InputError as e:
            log.warning("peak probe: OpenVINO skipped: %s", e.line())
    for r in rows:
        log.info("peak probe: %s, %s: %.1f GMAC/s", r["probe"], r["precision"], r["gmacs"])
    return rows


def peaks(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Precision -> the best probe's GMAC/s."""
    out: dict[str, float] = {}
    for r in rows:
        out[r["precision"]] = max(out.get(r["precision"], 0.0), r["gmacs"])
    return out
