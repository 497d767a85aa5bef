"""The parity gate: every artifact against the PyTorch FP32 reference, on real photos, in [0, 1].

Thresholds (from the survey of trusted exporters behind this project's design):
- FP32 (ONNX Runtime): every element |d| <= 1e-4 + 1e-3 |ref|, and max |d| <= 1e-3;
- FP16 (graph on ONNX Runtime, PyTorch half proxy, TensorRT engine): PSNR >= 50 dB per image,
  p99.9 |d| <= 2/255, max |d| <= 0.02;
- no NaN or Inf anywhere.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deblur.runtime.compare import psnr_from_mse
from deblur.runtime.fileio import atomic_write_text

FP32_ATOL, FP32_RTOL, FP32_MAX = 1e-4, 1e-3, 1e-3
FP16_PSNR, FP16_P999, FP16_MAX = 50.0, 2 / 255, 0.02


@dataclass
class ImageResult:
    image: str
    size: str
    max: float
    mean: float
    p999: float
    psnr: float
    nonfinite: int
    within_tol: bool  # FP32 elementwise tolerance
    failures: list[str] = field(default_factory=list)


@dataclass
class ArtifactResult:
    artifact: str
    precision: str  # fp32 | fp16
    backend: str
    images: list[ImageResult] = field(default_factory=list)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return self.skipped is None and all(not r.failures for r in self.images)


def compare(name: str, ref: np.ndarray, out: np.ndarray, precision: str) -> ImageResult:
    """Difference statistics of two HxWx3 float images in [0, 1], and which limits they break."""
    nonfinite = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
    d = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    finite = np.isfinite(d)
    d[~finite] = np.inf
    mse = float(np.mean(np.square(np.where(finite, d, 1.0))))  # a NaN counts as the worst error, 1
    over = int(np.count_nonzero(d > FP32_ATOL + FP32_RTOL * np.abs(ref)))
    r = ImageResult(
        image=name, size=f"{ref.shape[1]}x{ref.shape[0]}", max=float(d.max()),
        mean=float(d[finite].mean()) if finite.any() else math.inf, p999=float(np.percentile(d, 99.9)),
        psnr=psnr_from_mse(mse), nonfinite=nonfinite, within_tol=over == 0,
    )
    if nonfinite:
        r.failures.append(f"{nonfinite} NaN/Inf values")
    if precision == "fp32":
        if not r.within_tol:
            r.failures.append(f"|d| > {FP32_ATOL:g} + {FP32_RTOL:g}|ref| at {over} values")
        if r.max > FP32_MAX:
            r.failures.append(f"max |d| {r.max:.3g} > {FP32_MAX:g}")
    else:
        if r.psnr < FP16_PSNR:
            r.failures.append(f"PSNR {r.psnr:.2f} dB < {FP16_PSNR:g} dB")
        if r.p999 > FP16_P999:
            r.failures.append(f"p99.9 |d| {r.p999:.4f} > 2/255")
        if r.max > FP16_MAX:
            r.failures.append(f"max |d| {r.max:.4f} > {FP16_MAX:g}")
    return r


def summary(a: ArtifactResult) -> dict[str, Any]:
    """One artifact's result in a line of JSON (the engine manifest keeps these)."""
    finite = [r.psnr for r in a.images]
    return {"artifact": a.artifact, "backend": a.backend, "precision": a.precision, "passed": a.passed,
            "worst_psnr_db": min(finite) if finite and math.isfinite(min(finite)) else None,
            "max_abs_diff": max((r.max for r in a.images), default=None)}


def first_failure(results: list[ArtifactResult]) -> str | None:
    """One line naming the first failing artifact, image and metric, or None when all pass."""
    for a in results:
        for r in a.images:
            if r.failures:
                return f"{a.artifact} ({a.backend}, {a.precision}) on {r.image} ({r.size}): {'; '.join(r.failures)}"
    return None


def _fmt(v: float, digits: int = 2) -> str:
    return "inf" if math.isinf(v) else f"{v:.{digits}e}" if v and abs(v) < 1e-2 else f"{v:.{digits}f}"


def table(results: list[ArtifactResult]) -> str:
    """Markdown: one row per artifact (worst image) for the console summary."""
    lines = ["| artifact | backend | precision | worst PSNR (dB) | max abs diff | p99.9 abs diff | NaN/Inf | result |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for a in results:
        if a.skipped:
            lines.append(f"| {a.artifact} | {a.backend} | {a.precision} | | | | | skipped: {a.skipped} |")
            continue
        worst = min(a.images, key=lambda r: r.psnr)
        lines.append(
            f"| {a.artifact} | {a.backend} | {a.precision} | {_fmt(worst.psnr)} | {_fmt(max(r.max for r in a.images))} | "
            f"{_fmt(max(r.p999 for r in a.images))} | {sum(r.nonfinite for r in a.images)} | {'pass' if a.passed else 'FAIL'} |"
        )
    return "\n".join(lines)


def write_reports(results: list[ArtifactResult], folder: Path, header: dict) -> tuple[Path, Path]:
    """``parity.json`` (everything) and ``parity.md`` (per image: max, mean, p99.9, PSNR, NaN count)."""
    data = {**header, "passed": all(a.passed or a.skipped for a in results), "first_failure": first_failure(results),
            "thresholds": {"fp32": {"atol": FP32_ATOL, "rtol": FP32_RTOL, "max": FP32_MAX},
                           "fp16": {"psnr_db": FP16_PSNR, "p999": FP16_P999, "max": FP16_MAX}},
            "artifacts": [{**asdict(a), "passed": a.passed} for a in results]}
    js = folder / "parity.json"
    atomic_write_text(js, json.dumps(data, indent=2, default=str) + "\n")
    md = [f"# Parity report: {header.get('checkpoint') or header.get('onnx')}", "",
          "Reference: " + header.get("reference", "PyTorch FP32") + ". Outputs compared in [0, 1].", "", table(results), ""]
    for a in results:
        if a.skipped:
            continue
        md += [f"## {a.artifact} ({a.backend}, {a.precision})", "",
               "| image | size | max abs diff | mean abs diff | p99.9 abs diff | PSNR (dB) | NaN/Inf | result |", "|---|---|---:|---:|---:|---:|---:|---|"]
        md += [f"| {r.image} | {r.size} | {_fmt(r.max)} | {_fmt(r.mean)} | {_fmt(r.p999)} | {_fmt(r.psnr)} | {r.nonfinite} | "
               f"{'pass' if not r.failures else 'FAIL: ' + '; '.join(r.failures)} |" for r in a.images]
        md.append("")
    mdp = folder / "parity.md"
    atomic_write_text(mdp, "\n".join(md))
    return js, mdp
